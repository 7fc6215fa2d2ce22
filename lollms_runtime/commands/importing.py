"""`lollms import SOURCE [--to DIR] [--all]`: LoLLMs folders and SillyTavern cards -> packages."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``lollms import``."""
    p = subparsers.add_parser(
        "import",
        help="import a LoLLMs personality or a SillyTavern card as a personality package",
        description="Write an installable personality package from a LoLLMs personality folder "
        "(config.yaml) or a SillyTavern character card (V1/V2/V3, JSON or PNG). Nothing in the "
        "source is executed.",
        parents=[common],
    )
    p.add_argument(
        "source", metavar="SOURCE", help="LoLLMs folder, card file, or with --all a tree"
    )
    p.add_argument(
        "--to", default=".", metavar="DIR", help="folder to write packages in (default: here)"
    )
    p.add_argument(
        "--all", action="store_true", help="import every personality and card found under SOURCE"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_import)


def _print_warnings(warnings: tuple[str, ...] | list[str], indent: str = "") -> None:
    for line in warnings:
        print(f"{indent}warning: {line}", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    """Run ``lollms import``."""
    from ..importers import import_source, import_tree

    source, to = Path(args.source), Path(args.to)
    if not args.all:
        result = import_source(source, to)
        if args.json:
            print(json.dumps(result.as_json(), indent=2))
        else:
            _print_warnings(result.warnings)
            print(f"Imported {result.name} ({result.id}) -> {result.package}")
            print(f"  next: lollms install {result.package}")
        return 0
    summary = import_tree(source, to)
    if args.json:
        print(
            json.dumps(
                {
                    "imported": [r.as_json() for r in summary.imported],
                    "failed": [{"source": str(s), "error": e} for s, e in summary.failed],
                    "skipped": [{"source": str(s), "reason": e} for s, e in summary.skipped],
                },
                indent=2,
            )
        )
    else:
        for result in summary.imported:
            print(f"imported {result.source} -> {result.package.name}")
            _print_warnings(result.warnings, "  ")
        for path, error in summary.failed:
            print(f"FAILED {path}: {error}", file=sys.stderr)
        print(
            f"{len(summary.imported)} imported ({summary.with_warnings} with warnings), "
            f"{len(summary.failed)} failed, {len(summary.skipped)} skipped"
        )
    return 1 if summary.failed else 0
