"""Helpers for the engine tests: personalities written as YAML and turns run on scripted backends."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from lollms_runtime.backends.base import ChatMessage
from lollms_runtime.engine import Engine, Limits, Turn
from lollms_runtime.events import Done, Event, Reply, StepFinished, Token, TurnError
from lollms_runtime.loader import load_personality
from lollms_runtime.personality import Personality
from lollms_runtime.plugins import PluginHost, get_plugin_manager
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend


@lru_cache(maxsize=1)
def host() -> PluginHost:
    """Built-in plugins only: installed third-party plugins must not change what is tested."""
    return PluginHost(get_plugin_manager(load_entry_points=False))


_counter = [0]


def personality(
    tmp_path: Path, yaml_body: str, pid: str = "t", *, static_checks: bool = True
) -> Personality:
    """A personality validated by the real loader from ``yaml_body`` (identity keys added).

    ``static_checks=False`` skips the load-time name checks, to test what the engine does at run
    time with a template the loader would have refused."""
    _counter[0] += 1
    folder = tmp_path / f"{pid}-{_counter[0]}"
    folder.mkdir(parents=True)
    body = textwrap.dedent(yaml_body)
    head = f"schema: 1\nid: {pid}\nname: Test {pid}\n"
    if "conditioning:" not in body:
        head += "conditioning: You are a test.\n"
    (folder / "personality.yaml").write_text(head + body, encoding="utf-8")
    if static_checks:
        return load_personality(folder, host())
    from unittest import mock

    with mock.patch("lollms_runtime.checks.check_pipeline", return_value=[]):
        return load_personality(folder, host())


def run(
    p: Personality,
    message: str = "hi",
    text: ScriptedTextBackend | None = None,
    image: ScriptedImageBackend | None = None,
    *,
    limits: Limits | None = None,
    resolve: Callable[[str], Personality] | None = None,
    settings: dict[str, Any] | None = None,
    sampling: dict[str, Any] | None = None,
    history: Sequence[ChatMessage] = (),
    artifacts_dir: Path | None = None,
    turn: Turn | None = None,
) -> list[Event]:
    """Every event of one turn."""
    engine = Engine(
        host(),
        text or ScriptedTextBackend(),
        image,
        limits=limits,
        resolve_personality=resolve,
    )
    turn = turn or Turn(
        p,
        message,
        history=tuple(history),
        settings=p.resolve_settings(settings),
        sampling=sampling or {},
        artifacts_dir=artifacts_dir,
    )
    return list(engine.run_turn(turn))


def done(events: Sequence[Event]) -> Done:
    last = events[-1]
    assert isinstance(last, Done), last
    return last


def reply(events: Sequence[Event]) -> Reply:
    replies = [e for e in events if isinstance(e, Reply)]
    assert len(replies) == 1, replies
    return replies[0]


def error(events: Sequence[Event]) -> TurnError:
    errors = [e for e in events if isinstance(e, TurnError)]
    assert len(errors) == 1, events
    return errors[0]


def finished(events: Sequence[Event], step_id: str) -> StepFinished:
    found = [e for e in events if isinstance(e, StepFinished) and e.step_id == step_id]
    assert len(found) == 1, (step_id, found)
    return found[0]


def tokens(events: Sequence[Event], step_id: str | None = None) -> list[Token]:
    return [e for e in events if isinstance(e, Token) and step_id in (None, e.step_id)]
