"""Find what a source is, import it, write and validate the package; or walk a whole tree."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LollmsError, PersonalityError
from .common import Draft, ImportFailed, ImportResult, NotACard
from .lollms import CONFIG, is_lollms_folder, read_lollms
from .package import PackageNames, write_package
from .sillytavern import is_card_file, read_card
from .yamlout import dump_personality

# PEP 440 versions that pip and hatchling accept; other personality versions use 0.1.0 in pyproject.
_PEP440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")
MAX_TREE_ENTRIES = 100_000
KINDS = {"lollms": "LoLLMs personality", "sillytavern": "SillyTavern character card"}


def read_source(source: Path) -> Draft:
    """The draft for a LoLLMs folder (or its config.yaml) or a SillyTavern card file."""
    if source.is_dir():
        if is_lollms_folder(source):
            return read_lollms(source)
        raise ImportFailed(
            f"{source}: no {CONFIG} here; give a LoLLMs personality folder or a card file, "
            "or use --all to import every one under a folder"
        )
    if source.name == CONFIG and source.is_file():
        return read_lollms(source.parent)
    if is_card_file(source):
        return read_card(source)
    if not source.exists():
        raise ImportFailed(f"{source}: no such file or folder")
    raise ImportFailed(
        f"{source}: not something lollms can import; give a LoLLMs personality folder, "
        "a SillyTavern card (.json or .png) or a folder with --all"
    )


def write_draft(draft: Draft, to: Path, *, ident: str | None = None) -> ImportResult:
    """Write ``draft`` as a package under ``to`` once it validates; nothing is left on failure."""
    from ..loader import load_personality

    if ident:
        draft.data["id"] = ident
    data = draft.data
    header = [
        f"Imported from the {KINDS[draft.kind]} '{draft.source.name}' by `lollms import`.",
        *(["Not carried over or changed:"] if draft.warnings else []),
        *(f"- {w}" for w in draft.warnings),
    ]
    text = dump_personality(data, header)

    def check(folder: Path) -> None:
        try:
            load_personality(folder)
        except PersonalityError as exc:
            raise ImportFailed(
                f"{draft.source}: the imported personality does not validate, so nothing was "
                f"written (please report this importer bug):\n{exc}"
            ) from None

    version = str(data.get("version", "0.1.0"))
    package = write_package(
        to,
        data["id"],
        data["name"],
        text,
        draft.assets,
        version=version if _PEP440.match(version) else "0.1.0",
        readme_extra=f"Imported from the {KINDS[draft.kind]} `{draft.source.name}`.",
        check=check,
    )
    return ImportResult(
        draft.source, draft.kind, data["id"], data["name"], package, tuple(draft.warnings)
    )


def import_source(source: Path, to: Path) -> ImportResult:
    """Import one LoLLMs folder or SillyTavern card into a package under ``to``."""
    return write_draft(read_source(source), to)


@dataclass
class TreeSummary:
    """What ``--all`` did: imported packages, failures (source, message) and skipped files."""

    imported: list[ImportResult] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def with_warnings(self) -> int:
        """How many imported personalities carry warnings."""
        return sum(1 for r in self.imported if r.warnings)


def find_sources(root: Path) -> Iterator[Path]:
    """Every LoLLMs personality folder and candidate card file under ``root`` (links not followed)."""
    seen = 0
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs.sort()
        seen += len(dirs) + len(files)
        if seen > MAX_TREE_ENTRIES:
            raise ImportFailed(
                f"{root}: more than {MAX_TREE_ENTRIES} entries; import a smaller tree"
            )
        if CONFIG in files and not (here / CONFIG).is_symlink():
            yield here
            dirs[:] = []  # its assets are not cards
            continue
        if "personality.yaml" in files or "pyproject.toml" in files:
            dirs[:] = []  # already a personality or a package (an earlier import): its avatar
            continue  # is a card, but importing it again would only duplicate it
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(files):
            if is_card_file(here / name) and not (here / name).is_symlink():
                yield here / name


def import_tree(root: Path, to: Path) -> TreeSummary:
    """Import every personality found under ``root``; ids are made unique within this run."""
    if not root.is_dir():
        raise ImportFailed(f"{root}: --all needs a folder")
    if to.exists() and not to.is_dir():
        raise ImportFailed(f"{to} is not a folder: give a folder to write packages in")
    summary = TreeSummary()
    taken = {p.name for p in to.iterdir()} if to.is_dir() else set()
    # Listed before writing anything, so packages written into the tree are never walked.
    for source in list(find_sources(root)):
        try:
            draft = read_source(source)
        except NotACard as exc:
            summary.skipped.append((source, str(exc)))
            continue
        except ImportFailed as exc:
            summary.failed.append((source, str(exc)))
            continue
        except Exception as exc:  # an importer bug: report it with this source, go on
            summary.failed.append((source, _unexpected(exc)))
            continue
        ident = _unique(draft.data["id"], taken)
        if ident != draft.data["id"]:
            draft.warn(f"id '{draft.data['id']}' is already taken here; using '{ident}'")
        try:
            result = write_draft(draft, to, ident=ident)
        except LollmsError as exc:
            summary.failed.append((source, str(exc)))
            continue
        except Exception as exc:
            summary.failed.append((source, _unexpected(exc)))
            continue
        taken.add(result.package.name)
        summary.imported.append(result)
    return summary


def _unique(ident: str, taken: set[str]) -> str:
    candidate, n = ident, 2
    while PackageNames.for_id(candidate).folder in taken:
        suffix = f"_{n}"
        candidate, n = ident[: 64 - len(suffix)] + suffix, n + 1
    return candidate


def _unexpected(exc: Exception) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"unexpected {type(exc).__name__}{': ' + first[:200] if first else ''} "
        "(please report this importer bug)"
    )
