"""The `lollms` command line. Each subcommand is a small function; heavy imports happen inside them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import LollmsError

Handler = Callable[[argparse.Namespace], int]


def shared_options() -> argparse.ArgumentParser:
    """The options every command takes (a parent parser, handed to plugins' register_commands)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--personalities",
        action="append",
        metavar="DIR",
        default=[],
        help="also look for personalities in DIR (repeatable)",
    )
    common.add_argument(
        "--model",
        help="model: 'default' (embedded), a Hugging Face id, a folder, a .gguf file, "
        "openai:URL#MODEL (any OpenAI-compatible server) or an endpoint named in "
        "$LOLLMS_HOME/models.yaml (default: the personality's recommended_model when it names "
        "one, else 'default')",
    )
    common.add_argument(
        "--backend", metavar="NAME", help="text backend (see `lollms plugins`; default: mlx)"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The parser: every command, built-in or a plugin's, comes through register_commands."""
    from .loader import default_host

    parser = argparse.ArgumentParser(
        prog="lollms", description="Run AI personalities declared in YAML."
    )
    parser.add_argument("--version", action="version", version=f"lollms-runtime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    default_host().pm.hook.register_commands(subparsers=sub, common=shared_options())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()  # plugins' commands may already need $LOLLMS_HOME
    except LollmsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a warning at exit
    except LollmsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `lollms list | head`: the reader has what it wanted. Nothing more is written, and the
        # interpreter must not complain about stdout when it flushes it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"error: {message}", file=sys.stderr)
        return 1
    return code


def _user_error(exc: Exception) -> str | None:
    """The message for an expected error raised below the commands (the store's: an unknown
    discussion id, an unusable database file), or None for a bug."""
    store_errors = sys.modules.get("lollms_runtime.store.errors")
    if store_errors is not None and isinstance(exc, store_errors.StoreError):
        return str(exc)
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
