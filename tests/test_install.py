"""`lollms install` / `lollms uninstall` really run pip, into a throwaway virtual environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from lollms_runtime.cli import main
from lollms_runtime.importers import import_source
from lollms_runtime.scaffold import create_package

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "lollms"


@pytest.fixture
def throwaway_python(tmp_path: Path) -> Path:
    """A bare venv that sees this environment's packages (pip, hatchling, pluggy) through a .pth,
    so pip runs offline while installing into, and uninstalling from, the throwaway venv only."""
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_outer_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def lollms(python: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOLLMS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [python, "-m", "lollms_runtime.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_install_and_uninstall_a_new_and_an_imported_package(
    tmp_path: Path, throwaway_python: Path
) -> None:
    home = tmp_path / "home"
    made = create_package("Chef Bot", tmp_path / "src")
    imported = import_source(DATA / "arthur_remond", tmp_path / "src").package
    offline = ("--no-deps", "--no-build-isolation")
    for package in (made, imported):
        done = lollms(throwaway_python, "install", str(package), *offline, home=home)
        assert done.returncode == 0, done.stderr + done.stdout
        assert f"-m pip install {package.resolve()} --no-deps --no-build-isolation" in done.stdout
    listed = lollms(throwaway_python, "list", "--json", home=home)
    assert listed.returncode == 0, listed.stderr
    ids = {entry["id"]: entry["origin"] for entry in json.loads(listed.stdout)}
    assert ids["chef_bot"].startswith("plugin")
    assert ids["arthur_remond"].startswith("plugin")

    # By personality id or by distribution name.
    done = lollms(throwaway_python, "uninstall", "chef_bot", home=home)
    assert done.returncode == 0, done.stderr
    assert "pip uninstall -y lollms-personality-chef-bot" in done.stdout
    done = lollms(throwaway_python, "uninstall", "lollms-personality-arthur-remond", home=home)
    assert done.returncode == 0, done.stderr
    listed = lollms(throwaway_python, "list", "--json", home=home)
    assert {e["id"] for e in json.loads(listed.stdout)}.isdisjoint({"chef_bot", "arthur_remond"})
    done = lollms(throwaway_python, "uninstall", "chef_bot", home=home)
    assert done.returncode == 1
    assert "no installed distribution named 'chef_bot'" in done.stderr


def test_install_refuses_what_pip_cannot_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", str(DATA / "tester")]) == 1
    assert "it is a LoLLMs personality: lollms import" in capsys.readouterr().err
    assert main(["install", str(tmp_path / "missing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["uninstall", "pip", "--dry-run"]) == 1
    assert "refusing to uninstall pip: lollms needs it" in capsys.readouterr().err


def test_dry_run_prints_the_pip_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = create_package("dry", tmp_path)
    target = tmp_path / "target"
    assert main(["install", str(package), "--target", str(target), "-U", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{sys.executable} -m pip install {package.resolve()} --upgrade --target {target.resolve()}"
    )
    assert not target.exists()
    assert main(["install", "lollms-personality-chef", "--dry-run"]) == 0
    assert capsys.readouterr().out.split()[-1] == "lollms-personality-chef"
