"""`lollms test`: run the ``tests:`` examples a personality declares and check their expectations.

A test with ``scripted`` answers (and ``choices`` for model-judged conditions) runs on the scripted
backends: a deterministic check of the pipeline, no model. A test without them runs on the real
default model with its ``seed``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import patterns
from .backends.base import BackendUnavailable, ChatMessage, GenerationRequest
from .contracts import StepKind
from .engine import Engine, Turn
from .errors import LollmsError
from .events import Done, Event, ImageProduced, Reply, StepFinished, TurnError
from .personality import Personality
from .plugins import PluginHost
from .testing import ScriptedImageBackend, ScriptedTextBackend

Status = Literal["passed", "failed", "skipped"]
Mode = Literal["scripted", "model"]

NO_TEXT_BACKEND = "no text backend installed"
SCRIPTED_ONLY = "needs the real model (--scripted-only)"


@dataclass(frozen=True)
class TestResult:
    """The outcome of one test: ``reasons`` say why it failed or was skipped."""

    __test__ = False  # not a pytest test class

    personality: str
    name: str
    mode: Mode
    status: Status
    reasons: tuple[str, ...] = ()
    reply: str = ""
    duration: float = 0.0

    @property
    def title(self) -> str:
        return f"{self.personality}::{self.name}"


@dataclass
class Outcome:
    """What a turn did, as far as expectations can tell."""

    reply: str = ""
    branches: dict[str, str] = field(default_factory=dict)
    images: int = 0
    error: TurnError | None = None
    status: str = ""


class _TestTextBackend(ScriptedTextBackend):
    """The scripted backend, with errors that point at the test's ``scripted:``/``choices:``."""

    def stream(self, request: GenerationRequest, cancel: Any = None) -> Any:
        if not self.answers:
            raise RuntimeError(
                f"the test's scripted: list has no answer left for this generate step "
                f"(it had {len(self.history)}); add one"
            )
        return super().stream(request, cancel)

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> Any:
        if not self.choices:
            raise RuntimeError(
                f"the test's choices: list has no answer left for this question "
                f"(options: {', '.join(choices)}); add one"
            )
        return super().choose(request, choices)


def test_name(test: Mapping[str, Any], index: int) -> str:
    """The test's ``name``, or its position and input."""
    name = test.get("name")
    return str(name) if name else f"test {index + 1}: {str(test.get('input', ''))[:40]!r}"


def is_scripted(test: Mapping[str, Any]) -> bool:
    return "scripted" in test or "choices" in test


def collect(events: Iterable[Event], kinds: Mapping[str, StepKind]) -> Outcome:
    """Read a turn's events into an :class:`Outcome` (``kinds``: the registered step kinds)."""
    outcome = Outcome()
    reply: Reply | None = None
    for event in events:
        kind = kinds.get(event.kind) if isinstance(event, StepFinished) else None
        if isinstance(event, StepFinished) and kind and kind.branches and event.status == "ok":
            outcome.branches[event.step_id] = str(event.output)
        elif isinstance(event, ImageProduced):
            outcome.images += 1
        elif isinstance(event, Reply):
            reply = event
        elif isinstance(event, TurnError):
            outcome.error = event
        elif isinstance(event, Done):
            outcome.status = event.status
            outcome.reply = reply.text if reply is not None else event.text
    return outcome


def _texts(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or ()]


def check(expect: Mapping[str, Any], outcome: Outcome) -> list[str]:
    """Every expectation the outcome misses, each as one sentence."""
    problems: list[str] = []
    wants_error = bool(expect.get("error", False))
    if outcome.error is not None and not wants_error:
        hint = f" (hint: {outcome.error.hint})" if outcome.error.hint else ""
        problems.append(f"the turn failed: {outcome.error.message}{hint}")
    elif outcome.error is None and wants_error:
        problems.append("the turn succeeded, but the test expects it to fail")
    if outcome.status == "cancelled":
        problems.append("the turn was cancelled")
    text = outcome.reply
    lowered = text.lower()
    for wanted in _texts(expect.get("contains")):
        if wanted.lower() not in lowered:
            problems.append(f"the reply does not contain {wanted!r}")
    for unwanted in _texts(expect.get("not_contains")):
        if unwanted.lower() in lowered:
            problems.append(f"the reply contains {unwanted!r}")
    if "regex" in expect:
        try:
            found = patterns.search(expect["regex"], text, patterns.MULTILINE)
        except patterns.PatternError as exc:
            problems.append(f"the regex /{expect['regex']}/ is invalid: {exc}")
        except patterns.PatternTimeout as exc:
            problems.append(str(exc))
        else:
            if found is None:
                problems.append(f"the reply does not match /{expect['regex']}/")
    if "min_length" in expect and len(text) < expect["min_length"]:
        problems.append(
            f"the reply has {len(text)} characters, fewer than min_length {expect['min_length']}"
        )
    if "max_length" in expect and len(text) > expect["max_length"]:
        problems.append(
            f"the reply has {len(text)} characters, more than max_length {expect['max_length']}"
        )
    for step_id, label in (expect.get("branch") or {}).items():
        taken = outcome.branches.get(step_id)
        if taken is None:
            problems.append(f"condition '{step_id}' did not run")
        elif taken != str(label):
            problems.append(f"condition '{step_id}' took '{taken}', expected '{label}'")
    if "image" in expect:
        if expect["image"] and not outcome.images:
            problems.append("no image was produced")
        elif not expect["image"] and outcome.images:
            problems.append(f"{outcome.images} image(s) were produced, expected none")
    return problems


def _history(test: Mapping[str, Any]) -> tuple[ChatMessage, ...]:
    return tuple(ChatMessage(m["role"], m["content"]) for m in test.get("history", ()))


class TestRunner:
    """Runs personalities' tests; the real model is loaded only when a real-model test runs."""

    __test__ = False

    def __init__(
        self,
        host: PluginHost,
        *,
        resolve_personality: Callable[[str], Personality] | None = None,
        runtime: Callable[[], Any] | None = None,
        scripted_only: bool = False,
    ) -> None:
        self.host = host
        self.resolve_personality = resolve_personality
        self._runtime_factory = runtime
        self._runtime: Any = None
        self._unavailable = ""
        self.scripted_only = scripted_only

    def run(self, personality: Personality, keyword: str = "") -> list[TestResult]:
        """Every test of ``personality`` (those whose name contains ``keyword``)."""
        results = []
        for index, test in enumerate(personality.tests):
            name = test_name(test, index)
            if keyword and keyword.lower() not in name.lower():
                continue
            results.append(self.run_one(personality, test, name))
        return results

    def run_one(self, personality: Personality, test: Mapping[str, Any], name: str) -> TestResult:
        mode: Mode = "scripted" if is_scripted(test) else "model"
        started = time.monotonic()

        def result(status: Status, reasons: Sequence[str], reply: str = "") -> TestResult:
            duration = time.monotonic() - started
            return TestResult(personality.id, name, mode, status, tuple(reasons), reply, duration)

        try:
            settings = personality.resolve_settings(test.get("settings"))
        except ValueError as exc:
            return result("failed", [f"bad settings in the test: {exc}"])
        if mode == "scripted":
            outcome = self._run_scripted(personality, test, settings)
        else:
            if self.scripted_only:
                return result("skipped", [SCRIPTED_ONLY])
            runtime = self._real_runtime()
            if runtime is None:
                return result("skipped", [self._unavailable])
            outcome = self._run_real(runtime, personality, test, settings)
        problems = check(test.get("expect") or {}, outcome)
        return result("failed" if problems else "passed", problems, outcome.reply)

    def _run_scripted(
        self, personality: Personality, test: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> Outcome:
        backend = _TestTextBackend(*map(str, test.get("scripted", ())))
        backend.enqueue_choice(*map(str, test.get("choices", ())))
        engine = Engine(
            self.host,
            backend,
            ScriptedImageBackend(),
            resolve_personality=self.resolve_personality,
        )
        with tempfile.TemporaryDirectory(prefix="lollms-test-") as folder:
            turn = Turn(
                personality,
                str(test["input"]),
                history=_history(test),
                settings=settings,
                artifacts_dir=Path(folder),
            )
            return collect(engine.run_turn(turn), self.host.step_kinds)

    def _real_runtime(self) -> Any:
        """The runtime with its text backend loaded, or None (``_unavailable`` says why)."""
        if self._runtime is None and not self._unavailable:
            if self._runtime_factory is None:
                self._unavailable = NO_TEXT_BACKEND
                return None
            runtime = self._runtime_factory()
            try:
                runtime.text_backend()
            except LollmsError as exc:
                self._unavailable = (
                    NO_TEXT_BACKEND if "no text backend named" in str(exc) else str(exc)
                )
                return None
            except (BackendUnavailable, OSError) as exc:  # no weights here, unreadable files
                self._unavailable = f"the text backend cannot run here: {exc}"
                return None
            self._runtime = runtime
        return self._runtime

    def _run_real(
        self,
        runtime: Any,
        personality: Personality,
        test: Mapping[str, Any],
        settings: Mapping[str, Any],
    ) -> Outcome:
        sampling = {"seed": test["seed"]} if "seed" in test else {}
        with tempfile.TemporaryDirectory(prefix="lollms-test-") as folder:
            events = runtime.run(
                personality,
                str(test["input"]),
                history=_history(test),
                settings=settings,
                sampling=sampling,
                artifacts_dir=Path(folder),
            )
            return collect(events, self.host.step_kinds)


def summary(results: Sequence[TestResult], duration: float) -> str:
    """``3 passed, 1 failed, 1 skipped in 0.12s`` (only the counts that are not zero)."""
    counts = [
        f"{n} {status}"
        for status in ("passed", "failed", "skipped")
        if (n := sum(r.status == status for r in results))
    ]
    return f"{', '.join(counts) or 'no tests ran'} in {duration:.2f}s"
