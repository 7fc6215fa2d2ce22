"""Implements a real hook with a wrong argument name: pluggy refuses it at registration."""

from __future__ import annotations

from typing import Any

from lollms_runtime.plugins import hookimpl


@hookimpl
def register_step_kinds(registrar: Any) -> None:
    raise AssertionError("never called")
