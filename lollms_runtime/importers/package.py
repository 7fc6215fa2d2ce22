"""Write a pip-installable personality package, atomically, never outside its parent folder.

Shared by ``lollms new`` and ``lollms import``: pyproject with an entry point in the
``lollms_runtime`` group, and a module ``lollms_personality_<id>/`` holding ``__init__.py``,
``personality.yaml`` and ``assets/``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import LollmsError
from .common import make_id

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "lollms-personality-{dash}"
version = {version}
description = {description}
requires-python = ">=3.11"
dependencies = ["lollms-runtime"]

[project.entry-points.lollms_runtime]
{ident} = "{module}"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""

MODULE = '''\
"""A lollms-runtime personality: registers its folder (data only, no code runs)."""

from collections.abc import Callable
from pathlib import Path

from lollms_runtime.plugins import hookimpl


@hookimpl
def register_personalities(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent)
'''

README = """\
# {title}

A [lollms-runtime](https://pypi.org/project/lollms-runtime/) personality.
{extra}
    pip install -e .          # or: lollms install .
    lollms validate {module}
    lollms run {ident} "What can you do?"
"""

# Longest file name most file systems accept; longer names are refused rather than cut silently.
NAME_LIMIT = 255


@dataclass(frozen=True)
class PackageNames:
    """The names derived from a personality id."""

    ident: str
    dash: str
    module: str
    folder: str

    @classmethod
    def for_id(cls, ident: str) -> PackageNames:
        """Names for ``ident``, which must already be a valid id."""
        if not ident or make_id(ident) != ident:
            raise LollmsError(f"{ident!r} is not a valid personality id")
        dash = ident.replace("_", "-")
        module = f"lollms_personality_{ident.replace('-', '_')}"
        return cls(ident, dash, module, f"lollms-personality-{dash}")


def safe_join(base: Path, relative: str) -> Path:
    """``base / relative``, refusing anything that could land outside ``base``."""
    if not relative or "\x00" in relative or "\\" in relative:
        raise LollmsError(f"refusing to write {relative!r}: not a plain relative path")
    parts = PurePosixPath(relative).parts
    if PurePosixPath(relative).is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise LollmsError(f"refusing to write {relative!r}: it would leave {base}")
    if any(len(p.encode()) > NAME_LIMIT for p in parts):
        raise LollmsError(f"refusing to write {relative[:60]!r}...: a name is too long")
    target = base.joinpath(*parts)
    root = base.resolve()
    # Resolve the parent that exists so far: a symlink planted in the tree cannot redirect a write.
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not (probe.resolve() == root or probe.resolve().is_relative_to(root)):
        raise LollmsError(f"refusing to write {relative!r}: it resolves outside {base}")
    return target


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes), whatever the text holds.
    return json.dumps(text, ensure_ascii=False)


def write_package(
    parent: Path,
    ident: str,
    title: str,
    personality_yaml: str,
    assets: Mapping[str, bytes] | None = None,
    *,
    version: str = "0.1.0",
    readme_extra: str = "",
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``lollms-personality-<id>/`` under ``parent`` and return it.

    Everything is written into a temporary folder first; ``check`` (given the personality folder)
    runs there, and only when it passes is the folder renamed into place. On any failure nothing
    is left behind.
    """
    names = PackageNames.for_id(ident)
    if parent.exists() and not parent.is_dir():
        raise LollmsError(f"{parent} is not a folder: give a folder to write packages in")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LollmsError(f"cannot create {parent}: {exc.strerror}") from None
    final = safe_join(parent, names.folder)
    if final.exists() or final.is_symlink():
        raise LollmsError(f"{final} already exists: remove it or choose another --to folder")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".lollms-package-", dir=parent))
    except OSError as exc:
        raise LollmsError(f"cannot write in {parent}: {exc.strerror}") from None
    try:
        values = {
            "ident": names.ident,
            "dash": names.dash,
            "module": names.module,
            "title": " ".join(title.split()),
            "version": _toml_string(version),
            "description": _toml_string(f"{' '.join(title.split())}: a lollms-runtime personality"),
            "extra": f"\n{readme_extra.strip()}\n" if readme_extra.strip() else "",
        }
        files: dict[str, bytes] = {
            "pyproject.toml": PYPROJECT.format(**values).encode(),
            "README.md": README.format(**values).encode(),
            f"{names.module}/__init__.py": MODULE.encode(),
            f"{names.module}/personality.yaml": personality_yaml.encode(),
        }
        for relative, content in (assets or {}).items():
            files[f"{names.module}/{relative}"] = content
        safe_join(staging, f"{names.module}/assets").mkdir(parents=True)
        for relative, content in files.items():
            path = safe_join(staging, relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL + O_NOFOLLOW: never write through a link or over a file we did not create.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(path, flags, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
        if check is not None:
            check(staging / names.module)
        staging.chmod(0o755)  # mkdtemp made it private
        os.rename(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise LollmsError(f"cannot write the package in {parent}: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
