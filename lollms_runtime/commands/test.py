"""`lollms test [ID|PATH]...`: run personalities' declared tests and report like pytest."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from ..errors import PersonalityError


def cmd_test(args: argparse.Namespace) -> int:
    from ..catalog import Catalog
    from ..loader import default_host
    from ..personality_tests import TestRunner, summary

    host = default_host()
    catalog = Catalog(host, args.personalities)
    targets = args.targets or catalog.ids()
    # One personality that cannot be loaded is reported and the others are still tested.
    errors = [] if args.targets else [(str(e.path), e.error) for e in catalog.broken]
    personalities = []
    for target in targets:
        try:
            personalities.append(catalog.resolve(target))
        except PersonalityError as exc:  # an unknown id stays an error of the command line
            errors.append((target, str(exc)))

    def runtime() -> Any:
        from ..runtime import runtime_from_args

        return runtime_from_args(args, host=host)

    runner = TestRunner(
        host,
        resolve_personality=catalog.get,
        runtime=runtime,
        scripted_only=args.scripted_only,
    )
    started = time.monotonic()
    results = []
    for personality in personalities:
        for result in runner.run(personality, args.keyword or ""):
            results.append(result)
            if not args.json:
                _print_result(result, args.verbose)
    line = summary(results, time.monotonic() - started)
    if errors:
        line += f", {len(errors)} error{'s' if len(errors) > 1 else ''}"
    failed = any(r.status == "failed" for r in results) or bool(errors)
    if not args.json:
        for target, error in errors:
            print(f"{target} ERROR (cannot be loaded)")
            print("    " + error.replace("\n", "\n    "))
    if args.json:
        counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "skipped")}
        json.dump(
            {
                "results": [asdict(r) for r in results],
                **counts,
                "errors": [{"target": t, "error": e} for t, e in errors],
                "summary": line,
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        if not results and not errors:
            line = "no tests: the personalities declare no tests: (or none matched -k)"
        print(f"{'=' * 10} {line} {'=' * 10}")
    return 1 if failed else 0


def _print_result(result: Any, verbose: bool) -> None:
    mode = "" if result.mode == "scripted" else " [model]"
    if result.status == "skipped":
        print(f"{result.title}{mode} SKIPPED ({'; '.join(result.reasons)})")
        return
    print(f"{result.title}{mode} {result.status.upper()} ({result.duration:.2f}s)")
    for reason in result.reasons:
        print(f"    {reason}")
    if result.status == "failed" or verbose:
        reply = result.reply if len(result.reply) <= 300 else result.reply[:300] + "…"
        print("    reply: " + (reply.replace("\n", "\n           ") or "(empty)"))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "test",
        parents=[common],
        help="run the tests: declared by personalities",
        description="Run the tests: examples of personalities. Tests with scripted answers check "
        "the pipeline without a model; the others run on the real default model with their seed. "
        "Exits 1 when a test fails.",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="ID|PATH",
        help="personality ids or paths (default: every personality found)",
    )
    p.add_argument(
        "--scripted-only", action="store_true", help="skip the tests that need the real model"
    )
    p.add_argument("-k", dest="keyword", help="only tests whose name contains this text")
    p.add_argument("-v", "--verbose", action="store_true", help="show every reply")
    p.add_argument("--json", action="store_true", help="machine-readable results")
    p.set_defaults(handler=cmd_test)
