"""Registers one step kind, then raises: the half-registered kind must be dropped."""

from __future__ import annotations

from typing import Any

from lollms_runtime.contracts import StepKind
from lollms_runtime.plugins import hookimpl


@hookimpl
def register_step_kinds(register: Any) -> None:
    register(StepKind("half_registered", {"type": "object"}))
    raise ValueError("cannot register my step kinds")


@hookimpl
def register_personalities(register: Any) -> None:
    raise OSError("my personality folder is gone")
