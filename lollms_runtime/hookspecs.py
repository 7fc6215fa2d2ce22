"""The whole plugin contract of lollms-runtime: every built-in and third-party plugin uses these hooks."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("lollms_runtime")


@hookspec
def register_personalities(register: Any) -> None:
    """Register personality folders (or personality.yaml files): ``register(path)``."""


@hookspec
def register_step_kinds(register: Any) -> None:
    """Register pipeline step kinds with their schema fragment: ``register(StepKind(...))``."""


@hookspec
def register_postprocessors(register: Any) -> None:
    """Register post_process operations: ``register(PostProcessor(...))``."""


@hookspec
def register_text_backends(register: Any) -> None:
    """Register text backend factories: ``register(TextBackendFactory(...))``."""


@hookspec
def register_image_backends(register: Any) -> None:
    """Register image backend factories: ``register(ImageBackendFactory(...))``."""


@hookspec
def register_embedding_backends(register: Any) -> None:
    """Register embedding backends (dense retrieval): ``register(EmbeddingBackendFactory(...))``."""


@hookspec
def register_commands(subparsers: Any, common: Any) -> None:
    """Add ``lollms`` subcommands: ``subparsers.add_parser(NAME, parents=[common])`` (the shared options)."""


@hookspec
def describe_plugin(report: Any) -> None:
    """Add a section to ``lollms plugins`` with ``report(title, lines)``: quick, offline (MCP servers)."""


@hookspec
def lollms_startup(runtime: Any) -> None:
    """Called once when a runtime (engine, store and backends) has been created."""


@hookspec
def lollms_turn_started(turn: Any) -> None:
    """Called when a turn starts, before its first step runs."""


@hookspec
def lollms_step_finished(turn: Any, step: Any, result: Any) -> None:
    """Called when a step ends, however it ends, with its ``StepFinished`` (status, duration, tokens)."""


@hookspec
def lollms_turn_finished(turn: Any, result: Any) -> None:
    """Called when a turn ends, whether it succeeded, failed or was cancelled."""
