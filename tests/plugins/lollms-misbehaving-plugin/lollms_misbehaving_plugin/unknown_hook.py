"""Implements a hook that does not exist (a typo): the host must refuse the plugin by name."""

from __future__ import annotations

from typing import Any

from lollms_runtime.contracts import PostProcessor
from lollms_runtime.plugins import hookimpl


@hookimpl
def register_stepkinds(register: Any) -> None:
    raise AssertionError("never called")


@hookimpl
def register_postprocessors(register: Any) -> None:
    register(PostProcessor("never_registered", lambda value, args, ctx: value))
