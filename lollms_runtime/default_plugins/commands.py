"""Built-in plugin: the `lollms` commands, registered through the same hook as a plugin's."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from ..plugins import hookimpl


@hookimpl
def register_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the built-in commands (list, show, validate, new, plugins, schema, run, serve, ...)."""
    from ..commands import MODULES

    for module in MODULES:
        importlib.import_module(module).register(subparsers, common)
