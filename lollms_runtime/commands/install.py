"""`lollms install` / `lollms uninstall`: pip, run by the user, is the only way anything gets installed."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import LollmsError

PROTECTED = {"lollms-runtime", "pip"}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``lollms install`` and ``lollms uninstall``."""
    p = subparsers.add_parser(
        "install",
        help="install a personality or plugin distribution with pip",
        description="Install a personality or plugin into this runtime's Python environment "
        "(pip install). This is the only moment lollms installs anything.",
        parents=[common],
    )
    p.add_argument("spec", metavar="NAME|PATH|URL", help="PyPI name, package folder or URL")
    p.add_argument("-e", "--editable", action="store_true", help="editable install of a folder")
    p.add_argument("--upgrade", "-U", action="store_true", help="upgrade if already installed")
    p.add_argument("--target", metavar="DIR", help="install into DIR instead (pip --target)")
    p.add_argument("--no-deps", action="store_true", help="do not install dependencies")
    p.add_argument(
        "--no-build-isolation", action="store_true", help="build with what is installed (offline)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the pip command, run nothing")
    p.set_defaults(handler=cmd_install)
    p = subparsers.add_parser(
        "uninstall",
        help="uninstall a personality or plugin distribution with pip",
        description="Remove a distribution (or the package of a personality id) with pip.",
        parents=[common],
    )
    p.add_argument("name", metavar="NAME", help="distribution name or personality id")
    p.add_argument("--dry-run", action="store_true", help="print the pip command, run nothing")
    p.set_defaults(handler=cmd_uninstall)


def _is_url(spec: str) -> bool:
    return "://" in spec or spec.startswith("git+")


def install_command(args: argparse.Namespace) -> list[str]:
    """The pip command line for ``lollms install``."""
    spec: str = args.spec
    if not _is_url(spec) and (Path(spec).exists() or spec.startswith((".", "/", "~"))):
        folder = Path(spec).expanduser()
        spec = str(folder.resolve())
        if folder.is_dir() and not (folder / "pyproject.toml").is_file():
            if (folder / "config.yaml").is_file():
                hint = f"it is a LoLLMs personality: lollms import '{folder}' first"
            elif (folder / "personality.yaml").is_file():
                hint = "it is a bare personality folder: use --personalities DIR, or `lollms new`"
            else:
                hint = "give a package folder (with pyproject.toml), a wheel, a name or a URL"
            raise LollmsError(f"{folder} is not an installable package: {hint}")
        if not folder.exists():
            raise LollmsError(f"{folder}: no such file or folder")
    elif args.editable:
        raise LollmsError("--editable needs a local package folder")
    command = [sys.executable, "-m", "pip", "install"]
    if args.editable:
        command.append("-e")
    command.append(spec)
    for flag in ("upgrade", "no_deps", "no_build_isolation"):
        if getattr(args, flag):
            command.append("--" + flag.replace("_", "-"))
    if args.target:
        command += ["--target", str(Path(args.target).resolve())]
    return command


def distribution_for(name: str) -> str:
    """The installed distribution named ``name``, or the package of personality id ``name``."""
    candidates = [name, f"lollms-personality-{name.replace('_', '-')}"]
    for candidate in candidates:
        try:
            return str(metadata.distribution(candidate).metadata["Name"])
        except metadata.PackageNotFoundError:
            continue
    raise LollmsError(
        f"no installed distribution named '{name}' (tried: {', '.join(candidates)}); "
        "see `pip list` or `lollms list`"
    )


def _run(command: list[str], dry_run: bool) -> int:
    print(shlex.join(command))
    if dry_run:
        return 0
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise LollmsError(f"pip failed (exit {done.returncode}); its messages are above")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """Run ``lollms install``."""
    code = _run(install_command(args), args.dry_run)
    if not args.dry_run:
        print("Installed. `lollms list` shows its personalities, `lollms plugins` its plugins.")
    return code


def cmd_uninstall(args: argparse.Namespace) -> int:
    """Run ``lollms uninstall``."""
    dist = distribution_for(args.name)
    if dist.lower().replace("_", "-") in PROTECTED:
        raise LollmsError(f"refusing to uninstall {dist}: lollms needs it (use pip directly)")
    return _run([sys.executable, "-m", "pip", "uninstall", "-y", dist], args.dry_run)
