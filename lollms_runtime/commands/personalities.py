"""`lollms list`, `show`, `validate` and `new`: the personalities this machine has, and new ones."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import PersonalityError, Problem
from .common import catalog as _catalog
from .common import host as _host
from .common import report_plugin_failures as _report_plugin_failures
from .common import warn as _warn

PERSONALITY_FILE = "personality.yaml"
# Looking for personalities under a folder stays bounded, whatever folder is given.
MAX_DEPTH = 8
MAX_FOLDERS = 20_000
SKIPPED = frozenset({"node_modules", "__pycache__", "site-packages", "dist", "build"})


def cmd_list(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    entries = catalog.entries
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": e.id,
                        "name": e.name,
                        "version": e.version,
                        "category": e.category,
                        "origin": e.origin,
                        "path": str(e.path),
                    }
                    for e in entries
                ]
                + [
                    {
                        "id": e.id,
                        "name": e.name,
                        "version": e.version,
                        "category": e.category,
                        "origin": e.origin,
                        "path": str(e.path),
                        "unavailable": e.unavailable,
                        "missing_step_kinds": list(e.missing_kinds),
                        "install": e.install,
                    }
                    for e in catalog.unavailable
                ],
                indent=2,
            )
        )
    else:
        if not entries and not catalog.unavailable:
            print(
                "No personalities found. Install one (pip install ...) or pass --personalities DIR."
            )
        widths = [
            max([len(x) for x in col] + [len(h)])
            for h, col in (
                ("ID", [e.id for e in entries]),
                ("NAME", [e.name for e in entries]),
                ("VERSION", [e.version for e in entries]),
                ("CATEGORY", [e.category for e in entries]),
            )
        ]
        if entries:
            header = ("ID", "NAME", "VERSION", "CATEGORY", "FROM")
            print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 0], strict=True)).rstrip())
            for e in entries:
                cells = (e.id, e.name, e.version, e.category, e.origin)
                print(
                    "  ".join(c.ljust(w) for c, w in zip(cells, [*widths, 0], strict=True)).rstrip()
                )
        if catalog.unavailable:
            # Their plugin was uninstalled (or not loaded): say what brings each one back.
            print("\nunavailable (a plugin they need is not loaded):")
            for e in catalog.unavailable:
                print(f"  {e.id}  {e.name}  {e.unavailable}")
    _warn(catalog.missing)
    _warn(catalog.conflicts)
    _warn([f"{e.path}: {e.error}" for e in catalog.broken])
    _report_plugin_failures()
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    personality = _catalog(args).resolve(args.id)
    if args.json:
        data = dict(personality.raw)
        data["_source"] = str(personality.source)
        print(json.dumps(data, indent=2, default=str))
        return 0
    p = personality
    print(f"{p.name} ({p.id}) {p.version}" + (f" by {p.author}" if p.author else ""))
    for label, value in (
        ("category", p.category),
        ("language", p.language),
        ("file", p.source),
        ("from", p.origin),
    ):
        if value:
            print(f"  {label}: {value}")
    if p.description:
        print(f"\n{p.description.strip()}")
    if p.settings:
        print("\nsettings:")
        for s in p.settings.values():
            print(_setting_line(s))
    from ..pipeline import default_pipeline

    steps = [next(iter(step)) for step in p.pipeline or default_pipeline()]
    print(f"\npipeline: {' -> '.join(steps)}")
    return 0


def personality_files(folder: Path) -> tuple[list[Path], str]:
    """The personality files under ``folder`` (itself, or found in its sub-folders: a package
    folder as `lollms new` and `lollms import` print it, a collection), and where it looked."""
    if (folder / PERSONALITY_FILE).is_file():
        return [folder / PERSONALITY_FILE], str(folder)
    found: list[Path] = []
    visited = 0
    for current, dirs, files in os.walk(folder):
        visited += 1
        depth = len(Path(current).relative_to(folder).parts)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in SKIPPED and depth < MAX_DEPTH
        )
        if PERSONALITY_FILE in files:
            found.append(Path(current) / PERSONALITY_FILE)
            dirs[:] = []  # a personality's own folders (knowledge/, assets/) hold no other
        if visited >= MAX_FOLDERS:
            return found, f"{folder} (stopped after {MAX_FOLDERS} folders)"
    where = f"{folder} and its sub-folders ({visited} folders, {MAX_DEPTH} levels deep at most)"
    return sorted(found), where


def _targets(raw: str) -> Iterator[tuple[str, str | None, str]]:
    """(shown path, what to load or None, where it looked) for one PATH argument."""
    path = Path(raw)
    if not path.is_dir():
        yield raw, raw, ""
        return
    files, where = personality_files(path)
    if not files:
        yield raw, None, where
    for file in files:
        if file.parent == path:
            yield raw, raw, where
        else:
            yield str(file.parent), str(file), where


def _problem_json(p: Problem) -> dict[str, Any]:
    return {
        "file": p.file,
        "line": p.line,
        "col": p.col,
        "path": p.path,
        "message": p.message,
        "hint": p.hint,
    }


def cmd_validate(args: argparse.Namespace) -> int:
    from ..loader import load_personality

    host = _host()
    failed = 0
    results = []
    for raw in args.paths:
        for shown, file, where in _targets(raw):
            try:
                if file is None:
                    raise PersonalityError(
                        [
                            Problem(
                                raw,
                                1,
                                1,
                                "",
                                f"no {PERSONALITY_FILE} found",
                                f"looked in {where}; give a personality.yaml, its folder, a "
                                "package folder or a folder of personalities",
                            )
                        ]
                    )
                personality = load_personality(file, host)
            except PersonalityError as exc:
                failed += 1
                results.append(
                    {
                        "path": shown,
                        "valid": False,
                        "problems": [_problem_json(p) for p in exc.problems],
                    }
                )
                if not args.json:
                    print(str(exc), file=sys.stderr)
            else:
                results.append({"path": shown, "valid": True, "id": personality.id})
                if not args.json and not args.quiet:
                    print(f"{shown}: ok ({personality.id})")
    if args.json:
        print(json.dumps(results, indent=2))
    elif len(results) > 1:
        print(
            f"{len(results) - failed} valid, {failed} invalid",
            file=sys.stderr if failed else sys.stdout,
        )
    _report_plugin_failures()
    return 1 if failed else 0


def cmd_new(args: argparse.Namespace) -> int:
    from ..scaffold import create_package

    root = create_package(args.name, Path(args.to), author=args.author)
    print(f"Created {root}\n  next: pip install -e {root}   (or: lollms install {root})")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    def add(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help, description=help, parents=[common]
        )
        p.set_defaults(handler=handler)
        return p

    p = add("list", cmd_list, "list installed personalities")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("show", cmd_show, "show one personality")
    p.add_argument("id", help="personality id, or the path of its file or folder")
    p.add_argument("--json", action="store_true", help="the validated document as JSON")
    p = add("validate", cmd_validate, "validate personality files (exit 1 if any is invalid)")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="personality.yaml files, their folders, package folders or folders of personalities",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p = add("new", cmd_new, "create a personality package")
    p.add_argument("name", help="name of the personality, e.g. 'Chef Bot'")
    p.add_argument("--to", default=".", help="folder to create it in (default: here)")
    p.add_argument("--author", default="you", help="author written into the file")


def _setting_line(s: Any) -> str:
    """One setting as `lollms show` lists it: type, what it accepts, default, then its help,
    e.g. ``  width (integer, one of 256 | 512 | 768, default 512): Image width``."""
    allowed = ""
    if s.enum is not None:
        allowed = "one of " + " | ".join(repr(v) if isinstance(v, str) else str(v) for v in s.enum)
    elif s.type in ("integer", "number") and s.minimum is not None and s.maximum is not None:
        allowed = f"{s.minimum} to {s.maximum}"
    elif s.type in ("integer", "number") and s.minimum is not None:
        allowed = f"at least {s.minimum}"
    elif s.type in ("integer", "number") and s.maximum is not None:
        allowed = f"at most {s.maximum}"
    kind = ", ".join(t for t in (s.type, allowed, f"default {s.default!r}") if t)
    named = s.label.lower() == s.name.replace("_", " ").lower()
    about = " — ".join(t for t in ("" if named else s.label, s.description) if t)
    return f"  {s.name} ({kind})" + (f": {about}" if about else "")
