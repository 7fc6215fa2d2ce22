"""Checked command-line values: argparse ``type=`` functions whose errors say what is allowed, and
whether the address given to `serve` or `api` can be listened on.

A bad value is a usage error (exit 2, one line from argparse). The sampling bounds come from the
personality schema, so the command line accepts exactly what a personality file may set.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from .errors import LollmsError

MAX_SEED = 2**32 - 1  # what the backends' random generators take


def _bounds(name: str) -> tuple[float | None, float | None]:
    from .schema import base_schema

    spec: dict[str, Any] = base_schema()["$defs"]["sampling"]["properties"][name]
    return spec.get("minimum"), spec.get("maximum")


def _number(text: str, kind: type[int] | type[float]) -> int | float:
    word = "an integer" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def sampling_value(name: str, kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """A parser for one sampling parameter, checked against the schema's bounds."""

    def parse(text: str) -> int | float:
        value = _number(text, kind)
        low, high = _bounds(name)
        if (low is not None and value < low) or (high is not None and value > high):
            shown = f"{low:g}" if low is not None else "any"
            shown += f" to {high:g}" if high is not None else " or more"
            raise argparse.ArgumentTypeError(f"{name} must be {shown}, got {text}")
        return value

    parse.__name__ = name  # argparse names the type in its own messages
    return parse


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2**32 - 1."""
    value = int(_number(text, int))
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is an integer from 0 to {MAX_SEED}, got {text}")
    return value


def port(text: str) -> int:
    """A TCP port to listen on: 1 to 65535."""
    value = int(_number(text, int))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {text}")
    return value


def positive_int(text: str) -> int:
    """A count that must be at least 1 (e.g. --limit)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {text}")
    return value


def check_port_free(host: str, port: int) -> None:
    """Raises LollmsError when ``host:port`` cannot be listened on (in use, or not an address of
    this machine); the web server would otherwise fail later with a traceback."""
    import socket

    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise LollmsError(
            f"cannot serve on {host!r}: not an address of this machine ({exc}); "
            "use --host 127.0.0.1 or one of this machine's addresses"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise LollmsError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): another program uses "
                "it; stop that program or pass --port with another number"
            ) from None
