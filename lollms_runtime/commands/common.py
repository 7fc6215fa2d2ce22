"""What the built-in commands share: the plugin host, the catalog, warnings on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def host() -> Any:
    from ..loader import default_host

    return default_host()


def catalog(args: argparse.Namespace) -> Any:
    from ..catalog import Catalog

    return Catalog(host(), getattr(args, "personalities", None) or ())


def warn(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def report_plugin_failures() -> None:
    warn([str(f) for f in host().failures])
