"""The `lollms` command line. Each subcommand is a small function; heavy imports happen inside them."""

from __future__ import annotations

import argparse
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
