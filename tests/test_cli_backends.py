"""Choosing the text backend and the model: --backend, --model, a personality's recommended_model
(untrusted: only a Hugging Face id or a model of the runtime's folder), and the options the
register_commands hook hands to plugins. Runs the installed test plugin's echo backend, which
answers with the model it was created for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_lollms

from lollms_runtime.runtime import acceptable_model

ONLY_TEST_PLUGIN = {"LOLLMS_LOAD_PLUGINS": "test_plugin"}


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    folder = tmp_path / "personalities"
    for ident, extra in (
        ("chat", ""),
        ("recommends", "recommended_model: org/tuned-model\n"),
        ("sneaky", "recommended_model: /etc/passwd\n"),
        ("climber", "recommended_model: ../../outside\n"),
    ):
        (folder / ident).mkdir(parents=True)
        (folder / ident / "personality.yaml").write_text(
            f"schema: 1\nid: {ident}\nname: {ident.title()}\n{extra}", encoding="utf-8"
        )
    return folder


def lollms(site: Path, home: Path, *args: str) -> tuple[int, str, str]:
    env = {**ONLY_TEST_PLUGIN, "LOLLMS_HOME": str(home), "LOLLMS_MODELS_DIR": str(home / "m")}
    done = run_lollms(*args, pythonpath=[site], env=env)
    return done.returncode, done.stdout, done.stderr


def test_backend_by_name_and_the_recommended_model(
    test_plugins_site: Path, collection: Path, tmp_path: Path
) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        return lollms(
            test_plugins_site,
            tmp_path / "home",
            "run",
            *args,
            "--backend",
            "echo",
            "--no-save",
            "--personalities",
            str(collection),
        )

    assert run("chat", "hi")[:2] == (0, "[default] hi\n")
    assert run("chat", "hi", "--model", "mine")[:2] == (0, "[mine] hi\n")
    code, out, err = run("recommends", "hi", "--trace")
    assert (code, out.splitlines()[-1]) == (0, "[org/tuned-model] hi")
    assert "— model org/tuned-model (the personality's recommended_model)" in err
    assert run("recommends", "hi", "--model", "mine")[:2] == (0, "[mine] hi\n")  # the user's
    for ident, wanted in (("sneaky", "/etc/passwd"), ("climber", "../../outside")):
        code, out, err = run(ident, "hi", "--trace")
        assert (code, out.splitlines()[-1]) == (0, "[default] hi")
        assert f"recommended_model {wanted!r} ignored" in err


def test_an_unknown_backend_is_named_with_the_installed_ones(
    test_plugins_site: Path, tmp_path: Path
) -> None:
    code, out, err = lollms(test_plugins_site, tmp_path, "run", "x", "hi", "--backend", "nope")
    assert (code, out) == (1, "")
    assert err == "error: no text backend named 'nope' (installed: echo, mlx, openai)\n"


def test_register_commands_hands_plugins_the_shared_options(
    test_plugins_site: Path, tmp_path: Path
) -> None:
    code, out, _ = lollms(test_plugins_site, tmp_path, "test-hello", "you", "--model", "m1")
    assert (code, out) == (0, "hello, you (model m1)\n")
    code, out, _ = lollms(test_plugins_site, tmp_path, "test-hello", "--help")
    assert "--personalities DIR" in out and "--backend NAME" in out


def test_which_recommended_models_a_personality_may_pick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    (models / "local-one").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", models / "escape")
    monkeypatch.setenv("LOLLMS_MODELS_DIR", str(models))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)  # a relative path that looks like an id
    assert acceptable_model("default") == "default"
    assert acceptable_model("mlx-community/Qwen2.5-0.5B-Instruct-4bit") is not None
    assert acceptable_model("org/repo:Q8_0") == "org/repo:Q8_0"
    assert acceptable_model("local-one") == str((models / "local-one").resolve())
    for refused in (
        "org/name",
        "/etc/passwd",
        str(models / "local-one"),
        "../x",
        "./x",
        "~/x",
        "escape",
        "missing",
        "a\\b",
        "",
    ):
        assert acceptable_model(refused) is None, refused
