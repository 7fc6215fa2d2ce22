"""The `lollms` command line. Each subcommand is a small function; heavy imports happen inside them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import LollmsError, PersonalityError

Handler = Callable[[argparse.Namespace], int]


def _host() -> Any:
    from .loader import default_host

    return default_host()


def _catalog(args: argparse.Namespace) -> Any:
    from .catalog import Catalog

    return Catalog(_host(), getattr(args, "personalities", None) or ())


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _report_plugin_failures() -> None:
    _warn([str(f) for f in _host().failures])


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
                ],
                indent=2,
            )
        )
    else:
        if not entries:
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
    _warn(catalog.missing)
    _warn(catalog.conflicts)
    _warn([f"{e.path}: {e.error}" for e in catalog.broken])
    _report_plugin_failures()
    return 0


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
    steps = [next(iter(step)) for step in p.pipeline] or ["generate", "reply"]
    print(f"\npipeline: {' -> '.join(steps)}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .loader import load_personality

    host = _host()
    failed = 0
    results = []
    for raw in args.paths:
        try:
            personality = load_personality(raw, host)
        except PersonalityError as exc:
            failed += 1
            results.append(
                {
                    "path": raw,
                    "valid": False,
                    "problems": [
                        {
                            "file": p.file,
                            "line": p.line,
                            "col": p.col,
                            "path": p.path,
                            "message": p.message,
                            "hint": p.hint,
                        }
                        for p in exc.problems
                    ],
                }
            )
            if not args.json:
                print(str(exc), file=sys.stderr)
        else:
            results.append({"path": raw, "valid": True, "id": personality.id})
            if not args.json and not args.quiet:
                print(f"{raw}: ok ({personality.id})")
    if args.json:
        print(json.dumps(results, indent=2))
    elif len(args.paths) > 1:
        print(
            f"{len(args.paths) - failed} valid, {failed} invalid",
            file=sys.stderr if failed else sys.stdout,
        )
    _report_plugin_failures()
    return 1 if failed else 0


def cmd_new(args: argparse.Namespace) -> int:
    from .scaffold import create_package

    root = create_package(args.name, Path(args.to), author=args.author)
    print(f"Created {root}\n  next: pip install -e {root}   (or: lollms install {root})")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    host = _host()
    plugins = []
    for name, plugin in host.pm.list_name_plugin():
        hooks = sorted(impl.name for impl in host.pm.get_hookcallers(plugin) or [])
        dist = (
            host.pm.get_plugin_dist_info(plugin)
            if hasattr(host.pm, "get_plugin_dist_info")
            else None
        )
        plugins.append(
            {"name": name, "hooks": hooks, "distribution": getattr(dist, "project_name", None)}
        )
    registered = {
        "step_kinds": sorted(host.step_kinds),
        "postprocessors": sorted(host.postprocessors),
        "text_backends": sorted(host.text_backends),
        "image_backends": sorted(host.image_backends),
    }
    failures = [{"name": f.name, "stage": f.stage, "error": f.error} for f in host.failures]
    if args.json:
        print(json.dumps({"plugins": plugins, **registered, "failures": failures}, indent=2))
        return 0
    for p in plugins:
        print(f"{p['name']}: {', '.join(p['hooks'])}")
    print()
    for key, names in registered.items():
        print(f"{key.replace('_', ' ')}: {', '.join(names) or '-'}")
    for f in host.failures:
        print(f"FAILED {f.name} ({f.stage}): {f.error}", file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    host = _host()
    if args.markdown:
        from .docs_gen import reference_markdown

        sys.stdout.write(reference_markdown(host))
    else:
        from .schema import build_schema

        print(json.dumps(build_schema(host.step_kinds, host.postprocessors), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lollms", description="Run AI personalities declared in YAML."
    )
    parser.add_argument("--version", action="version", version=f"lollms-runtime {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--personalities",
        action="append",
        metavar="DIR",
        default=[],
        help="also look for personalities in DIR (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = add("list", cmd_list, "list installed personalities")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("show", cmd_show, "show one personality")
    p.add_argument("id", help="personality id, or the path of its file or folder")
    p.add_argument("--json", action="store_true", help="the validated document as JSON")
    p = add("validate", cmd_validate, "validate personality files (exit 1 if any is invalid)")
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="personality.yaml files or their folders"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p = add("new", cmd_new, "create a personality package")
    p.add_argument("name", help="name of the personality, e.g. 'Chef Bot'")
    p.add_argument("--to", default=".", help="folder to create it in (default: here)")
    p.add_argument("--author", default="you", help="author written into the file")
    p = add("plugins", cmd_plugins, "list plugins and what they register")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("schema", cmd_schema, "print the personality JSON Schema (with installed step kinds)")
    p.add_argument("--markdown", action="store_true", help="the format reference in Markdown")
    import importlib

    from .commands import MODULES

    for module in MODULES:
        importlib.import_module(module).register(sub, common)
    _host().pm.hook.register_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        code: int = args.handler(args)
    except LollmsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
