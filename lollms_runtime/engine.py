"""The pipeline engine: runs a personality's steps for one user message and yields events.

A step kind's runner is a generator ``run(ctx, body)`` that yields events and *returns* the step's
output (``output = yield from kind.run(ctx, body)``); the engine handles ids, ``when``, retries,
``on_error``, limits, cancellation and the trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .backends.base import ChatMessage, ImageBackend, Sampling, TextBackend
from .contracts import StepKind
from .errors import LollmsError
from .events import (
    Done,
    Event,
    Reply,
    Status,
    StepFinished,
    StepStarted,
    Token,
    TurnError,
)
from .knowledge.variables import TurnLore
from .personality import Personality
from .plugins import PluginHost
from .templating import TemplateError, evaluate, render, render_value

log = logging.getLogger(__name__)

StepGen = Generator[Event, None, Any]

# A personality without a pipeline is a chat: one generate, one reply.
DEFAULT_PIPELINE: tuple[Mapping[str, Any], ...] = (
    {"generate": {"id": "answer"}},
    {"reply": {"text": "{{ answer }}"}},
)


class StepError(LollmsError):
    """A step that failed in a way the user can act on; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class StepFailed(StepError):
    """A step failed and was reported; the steps around it pass it on without re-wrapping it."""


class Cancelled(Exception):
    """The turn was cancelled (Stop button, Ctrl-C)."""


class LimitExceeded(StepError):
    """A turn went past one of its limits (steps, loop iterations, tokens, time)."""


@dataclass(frozen=True)
class Limits:
    max_steps: int = 200
    max_loop_iterations: int = 100
    max_tokens: int = 32768
    step_timeout: float = 600.0
    max_call_depth: int = 4


@dataclass
class Turn:
    """What a turn runs on: the personality, the message, the discussion so far and the settings."""

    personality: Personality
    message: str
    history: Sequence[ChatMessage] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    sampling: Mapping[str, Any] = field(default_factory=dict)  # user overrides from the app/CLI
    discussion_id: str | None = None
    artifacts_dir: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # Values the steps' templates see from the start (as data, never as template source);
    # ``message``, ``history``, ``settings``, ``personality`` and ``now`` take precedence.
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Counters:
    steps: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0


class StepContext:
    """What a step runner sees: the turn, the variables so far, the backends and helpers."""

    def __init__(self, engine: Engine, turn: Turn, depth: int = 0) -> None:
        self.engine = engine
        self.turn = turn
        self.personality = turn.personality
        self.depth = depth
        self.counters = _Counters()
        self.variables: dict[str, Any] = dict(turn.variables)
        self.reply: Reply | None = None
        self.last_text: str | None = None
        self.streamed_ids: set[str] = set()
        self.step_id = ""
        self.step_path = ""
        self.deadline = float("inf")
        self.usage: dict[str, int] = {}
        self.detail = ""  # what the running step wants the trace to say (branch taken, iterations)
        self.settings = turn.personality.resolve_settings(turn.settings)
        self.base: dict[str, Any] = {
            "message": turn.message,
            "history": [{"role": m.role, "content": m.content} for m in turn.history],
            "settings": self.settings,
            "personality": {
                "id": turn.personality.id,
                "name": turn.personality.name,
                "conditioning": turn.personality.conditioning,
                "language": turn.personality.language,
            },
            "now": datetime.now().astimezone(),
            "lore": TurnLore(self),  # the lorebook entries that fire, computed on first use
        }

    # -- templates -------------------------------------------------------------------------
    def context(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ctx = {**self.variables, **self.base}
        if extra:
            ctx.update(extra)
        return ctx

    def render(self, source: str, extra: Mapping[str, Any] | None = None) -> str:
        return render(source, self.context(extra))

    def value(self, source: Any, extra: Mapping[str, Any] | None = None) -> Any:
        return render_value(source, self.context(extra))

    def evaluate(self, expression: str, extra: Mapping[str, Any] | None = None) -> Any:
        return evaluate(expression, self.context(extra))

    def number(self, body: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> Any:
        """A numeric option that may be written as a template; ``None`` when absent."""
        if key not in body:
            return None
        raw = self.value(body[key])
        if raw is None or raw == "":
            return None
        try:
            return kind(raw)
        except (TypeError, ValueError):
            raise StepError(f"option '{key}' must be a {kind.__name__}, got {raw!r}") from None

    # -- backends --------------------------------------------------------------------------
    def text_backend(self) -> TextBackend:
        return self.engine.text_backend(self.personality)

    def image_backend(self, name: str | None = None, model: str | None = None) -> ImageBackend:
        return self.engine.image_backend(name, model)

    def sampling(self, overrides: Mapping[str, Any] | None = None) -> Sampling:
        sampling = self.personality.sampling.merged(self.turn.sampling).merged(overrides)
        return sampling

    def check_cancel(self) -> None:
        if self.turn.cancel.is_set():
            raise Cancelled()
        if time.monotonic() > self.deadline:
            raise StepError(
                f"step '{self.step_id}' took longer than its time limit",
                "raise its timeout: or simplify the step",
            )

    def count_tokens(self, prompt: int, generated: int, cached: int = 0) -> None:
        self.counters.prompt_tokens += prompt
        self.counters.generation_tokens += generated
        self.usage["prompt_tokens"] = self.usage.get("prompt_tokens", 0) + prompt
        self.usage["generation_tokens"] = self.usage.get("generation_tokens", 0) + generated
        self.usage["cached_tokens"] = self.usage.get("cached_tokens", 0) + cached
        total = self.counters.prompt_tokens + self.counters.generation_tokens
        if self.counters.generation_tokens > self.engine.limits.max_tokens:
            raise LimitExceeded(
                f"the turn generated more than {self.engine.limits.max_tokens} tokens (total {total})",
                "lower max_tokens in the pipeline, or raise the engine's token limit",
            )

    # -- nested steps ----------------------------------------------------------------------
    def run_steps(self, steps: Sequence[Mapping[str, Any]], path: str) -> StepGen:
        """Run a list of steps (used by condition, loop, for_each); returns the last output."""
        output: Any = None
        for index, step in enumerate(steps):
            output = yield from self.engine._run_step(self, step, f"{path}[{index}]")
        return output


class Engine:
    """Runs turns. Backends are resolved lazily through ``text_backends``/``image_backends``."""

    def __init__(
        self,
        host: PluginHost,
        text_backend: Callable[[Personality], TextBackend] | TextBackend,
        image_backend: Callable[[str | None, str | None], ImageBackend]
        | ImageBackend
        | None = None,
        *,
        limits: Limits | None = None,
        resolve_personality: Callable[[str], Personality] | None = None,
    ) -> None:
        self.host = host
        self._text = text_backend
        self._image = image_backend
        # Decided once: isinstance() against a runtime-checkable Protocol is slow on the hot path.
        self._text_is_backend = isinstance(text_backend, TextBackend)
        self._image_is_backend = isinstance(image_backend, ImageBackend)
        self.limits = limits or Limits()
        self.resolve_personality = resolve_personality
        self.kinds: Mapping[str, StepKind] = host.step_kinds
        self._plans: dict[int, tuple[Sequence[Mapping[str, Any]], dict[str, Any], set[str]]] = {}

    def text_backend(self, personality: Personality) -> TextBackend:
        if self._text_is_backend:
            return self._text  # type: ignore[return-value]
        return self._text(personality)  # type: ignore[operator]

    def image_backend(self, name: str | None, model: str | None) -> ImageBackend:
        if self._image is None:
            raise StepError(
                "no image backend is configured",
                "install one (see `lollms plugins`) or turn painting off in the settings",
            )
        if self._image_is_backend:
            return self._image  # type: ignore[return-value]
        return self._image(name, model)  # type: ignore[operator]

    # -- a turn ----------------------------------------------------------------------------
    def run_turn(self, turn: Turn) -> Iterator[Event]:
        """Run the personality's pipeline on ``turn.message``; always ends with a Done event."""
        ctx = StepContext(self, turn)
        started = time.monotonic()
        self._hook("lollms_turn_started", turn=turn)
        status = Status.OK
        try:
            pipeline = turn.personality.pipeline or DEFAULT_PIPELINE
            declared, ctx.streamed_ids = self._plan(pipeline)
            for name, value in declared.items():  # an initial variable beats a declared None
                ctx.variables.setdefault(name, value)
            yield from ctx.run_steps(pipeline, "pipeline")
            reply = ctx.reply or Reply(text=ctx.last_text or "")
            yield reply
        except Cancelled:
            status = Status.CANCELLED
            reply = Reply(text=ctx.last_text or "")
        except StepError as exc:
            status = Status.FAILED
            reply = Reply(text="")
            yield TurnError(str(exc), ctx.step_id, exc.hint)
        except TemplateError as exc:
            status = Status.FAILED
            reply = Reply(text="")
            yield TurnError(
                f"step '{ctx.step_id}': {exc}", ctx.step_id, "fix the template in the personality"
            )
        except Exception as exc:  # a bug in a step kind or backend: the turn still ends cleanly
            log.exception("step %r failed unexpectedly", ctx.step_id)
            status = Status.FAILED
            reply = Reply(text="")
            yield TurnError(
                f"step '{ctx.step_id}' failed unexpectedly: {type(exc).__name__}: {exc}",
                ctx.step_id,
                "this is a bug in the step kind or backend (see the log for the traceback); "
                "report it to the plugin's author",
            )
        done = Done(
            status=status,
            text=reply.text,
            duration=time.monotonic() - started,
            prompt_tokens=ctx.counters.prompt_tokens,
            generation_tokens=ctx.counters.generation_tokens,
            steps=ctx.counters.steps,
        )
        self._hook("lollms_turn_finished", turn=turn, result=done)
        yield done

    def run_nested(self, parent: StepContext, turn: Turn, *, visible: bool = False) -> StepGen:
        """Run another personality's pipeline inside a turn (the ``call`` step); returns its reply.

        ``visible``: the caller's reply shows this output, so the callee's answer streams visibly.
        """
        if parent.depth + 1 > self.limits.max_call_depth:
            raise LimitExceeded(
                f"calls nested deeper than {self.limits.max_call_depth} levels",
                "check for personalities that call each other in a cycle",
            )
        child = StepContext(self, turn, parent.depth + 1)
        child.counters = parent.counters
        pipeline = turn.personality.pipeline or DEFAULT_PIPELINE
        _declare_ids(pipeline, child.variables, self.kinds)
        if visible:
            child.streamed_ids = streamed_ids(pipeline, self.kinds)
        try:
            yield from child.run_steps(pipeline, f"{turn.personality.id}.pipeline")
        except Cancelled:
            parent.last_text = child.last_text or parent.last_text  # the partial answer shown
            raise
        return (child.reply.text if child.reply else child.last_text) or ""

    def _plan(self, pipeline: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], set[str]]:
        """The ids a pipeline declares and the ids it streams, worked out once per pipeline."""
        entry = self._plans.get(id(pipeline))
        if entry is None or entry[0] is not pipeline:  # the entry keeps its pipeline alive
            declared: dict[str, Any] = {}
            _declare_ids(pipeline, declared, self.kinds)
            entry = (pipeline, declared, streamed_ids(pipeline, self.kinds))
            if len(self._plans) >= 256:
                self._plans.clear()
            self._plans[id(pipeline)] = entry
        return entry[1], entry[2]

    def _hook(self, name: str, **kwargs: Any) -> None:
        hook = getattr(self.host.pm.hook, name)
        if not hook.get_hookimpls():  # nobody observes: skip pluggy's call machinery
            return
        try:
            hook(**kwargs)
        except Exception as exc:  # a plugin's observer must never break a turn
            self.host.failures.append(_hook_failure(name, exc))

    # -- one step --------------------------------------------------------------------------
    def _run_step(self, ctx: StepContext, step: Mapping[str, Any], path: str) -> StepGen:
        """Run one step. Once its StepStarted is out, a StepFinished always follows, however the
        step ends (done, skipped, failed, cancelled, stopped by a limit), so consumers never show a
        step running forever; nested steps close before the steps around them."""
        ((kind_name, body),) = step.items()
        body = body or {}
        kind = self.kinds.get(kind_name)
        if kind is None or kind.run is None:
            raise StepError(f"step kind '{kind_name}' is not available", "is its plugin installed?")
        ctx.check_cancel()
        ctx.counters.steps += 1
        if ctx.counters.steps > self.limits.max_steps:
            raise LimitExceeded(
                f"the turn ran more than {self.limits.max_steps} steps",
                "check loops and calls in the pipeline",
            )
        step_id = (
            str(body.get("id") or f"{kind_name}_{ctx.counters.steps}") if kind.common else kind_name
        )
        title = str(body.get("title") or step_id) if kind.common else kind_name
        outer_id, outer_path = ctx.step_id, ctx.step_path
        outer_usage, outer_detail, outer_text = ctx.usage, ctx.detail, ctx.last_text
        usage: dict[str, int] = {}
        parts: list[str] = []  # this step's streamed text: its output if it is cut short
        ctx.step_id, ctx.step_path = step_id, path
        ctx.usage, ctx.detail = usage, ""
        yield StepStarted(step_id, kind_name, title, path)
        started = time.monotonic()

        def finished(
            status: Status, output: Any = None, error: str = "", detail: str = ""
        ) -> StepFinished:
            return StepFinished(
                step_id,
                kind_name,
                title,
                path,
                status,
                output,
                time.monotonic() - started,
                usage.get("prompt_tokens", 0),
                usage.get("cached_tokens", 0),
                usage.get("generation_tokens", 0),
                detail,
                error,
            )

        def partial() -> Any:
            """What the step produced before it was cut short: its own tokens, else the text the
            user saw from its nested steps (a call or loop whose generate was stopped)."""
            if parts:
                return "".join(parts)
            return ctx.last_text if ctx.last_text != outer_text else None

        closed = False  # its StepFinished is out
        try:
            when = body.get("when") if kind.common else None
            if when is not None and not ctx.evaluate(when):
                closed = True
                yield finished(Status.SKIPPED, detail=f"when: {when} was false")
                ctx.step_id, ctx.step_path = outer_id, outer_path
                return None

            retries = int(body.get("retries", 0)) if kind.common else 0
            on_error = body.get("on_error", "fail") if kind.common else "fail"
            timeout = (
                float(body.get("timeout", self.limits.step_timeout))
                if kind.common
                else self.limits.step_timeout
            )
            attempt = 0
            while True:
                ctx.deadline = time.monotonic() + timeout
                parts.clear()
                try:
                    output = yield from _tee(kind.run(ctx, body), step_id, parts)
                    break
                except (Cancelled, LimitExceeded):
                    raise
                except (StepError, TemplateError, ValueError, OSError, RuntimeError) as exc:
                    attempt += 1
                    if attempt <= retries and not ctx.turn.cancel.is_set():
                        continue
                    message = str(exc)
                    if on_error == "continue":
                        closed = True
                        yield finished(Status.FAILED, error=message)
                        ctx.step_id, ctx.step_path = outer_id, outer_path
                        return None
                    if on_error == "fallback":
                        output = ctx.value(body.get("fallback", ""))
                        self._store_output(ctx, kind, body, output)
                        closed = True
                        yield finished(Status.FALLBACK, output, error=message)
                        ctx.step_id, ctx.step_path = outer_id, outer_path
                        return output
                    hint = getattr(exc, "hint", "") or (
                        "set on_error: continue (or fallback) on this step to go on without it"
                    )
                    closed = True
                    yield finished(Status.FAILED, partial(), error=message)
                    if isinstance(exc, StepFailed):  # a nested step's failure, already worded
                        raise exc
                    raise StepFailed(
                        f"step '{step_id}' ({kind_name}) failed: {message}", hint
                    ) from exc
                finally:
                    ctx.deadline = float("inf")
            self._store_output(ctx, kind, body, output)
            closed = True
            yield finished(Status.OK, output, detail=ctx.detail)
            result = StepFinished(step_id, kind_name, title, path, Status.OK, output)
            self._hook("lollms_step_finished", turn=ctx.turn, step=step, result=result)
            ctx.step_id, ctx.step_path = outer_id, outer_path
            return output
        except Cancelled:
            if not closed:
                yield finished(Status.CANCELLED, partial(), detail=ctx.detail)
            raise
        except Exception as exc:  # a limit, a template error in `when`, a bug in a step kind
            if not closed:
                error = (
                    str(exc)
                    if isinstance(exc, LollmsError | TemplateError)
                    else f"{type(exc).__name__}: {exc}"
                )
                yield finished(Status.FAILED, partial(), error=error, detail=ctx.detail)
            raise
        finally:
            # ctx.step_id stays on a failed step: the turn's error names it.
            ctx.usage, ctx.detail = outer_usage, outer_detail

    @staticmethod
    def _store_output(
        ctx: StepContext, kind: StepKind, body: Mapping[str, Any], output: Any
    ) -> None:
        if kind.common and body.get("id"):
            ctx.variables[str(body["id"])] = output
        if isinstance(output, str) and kind.name in ("generate", "post_process", "call"):
            ctx.last_text = output


def _tee(run: StepGen, step_id: str, parts: list[str]) -> StepGen:
    """Pass a runner's events on, keeping the text of the step's own tokens in ``parts``."""
    try:
        while True:
            try:
                event = next(run)
            except StopIteration as stop:
                return stop.value
            if type(event) is Token and event.step_id == step_id:
                parts.append(event.text)
            yield event
    finally:
        run.close()  # like ``yield from``: a consumer that stops early closes the runner too


def _hook_failure(name: str, exc: BaseException) -> Any:
    from .plugins import PluginFailure

    return PluginFailure(name="(observer)", stage=name, error=f"{type(exc).__name__}: {exc}")


def _walk(
    steps: Sequence[Any], kinds: Mapping[str, StepKind] | None = None
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (kind, body) of a pipeline, nested steps included, in document order.

    Nested steps are looked for only under the keys a kind declares in ``StepKind.nested``, so a
    plugin's body that merely looks like steps is never taken for steps. ``kinds``: the registered
    step kinds (default: the built-in ones); a kind not among them is not looked into.
    """
    if kinds is None:
        kinds = _builtin_kinds()
    for step in steps:
        if not (isinstance(step, Mapping) and len(step) == 1):
            continue
        ((name, body),) = step.items()
        if not isinstance(body, Mapping):
            continue
        yield name, body
        kind = kinds.get(name)
        if kind is None or not kind.nested:
            continue
        for key, value in body.items():
            if key in kind.nested:
                for nested in nested_step_lists(value):
                    yield from _walk(nested, kinds)


def nested_step_lists(value: Any) -> Iterator[Sequence[Any]]:
    """The step lists held by a value under a declared nested key: a list of steps, a list of
    branches each with its ``then`` steps (condition's elif), or a mapping of name -> steps."""
    if isinstance(value, list):
        yield value  # its items that are not steps (branches) are skipped by _walk
        for branch in value:
            if isinstance(branch, Mapping) and isinstance(branch.get("then"), list):
                yield branch["then"]
    elif isinstance(value, Mapping):  # cases: name -> steps
        for inner in value.values():
            if isinstance(inner, list):
                yield inner


_BUILTIN_KINDS: dict[str, StepKind] = {}


def _builtin_kinds() -> Mapping[str, StepKind]:
    """The built-in step kinds by name (for callers that have no plugin host at hand)."""
    if not _BUILTIN_KINDS:
        from .default_plugins.steps import BUILTIN_STEP_KINDS

        _BUILTIN_KINDS.update((kind.name, kind) for kind in BUILTIN_STEP_KINDS)
    return _BUILTIN_KINDS


def _declare_ids(
    steps: Sequence[Mapping[str, Any]],
    variables: dict[str, Any],
    kinds: Mapping[str, StepKind] | None = None,
) -> None:
    """Every id and variable of the pipeline exists from the start (None until set), so a reply may
    mention the output of a branch that did not run."""
    for kind, body in _walk(steps, kinds):
        if kind == "set":
            for name in body:
                variables.setdefault(str(name), None)
        elif isinstance(body.get("id"), str):
            variables.setdefault(body["id"], None)


def streamed_ids(
    steps: Sequence[Mapping[str, Any]], kinds: Mapping[str, StepKind] | None = None
) -> set[str]:
    """Generate steps whose output the reply shows, directly or through post_process, set and call
    steps: their tokens stream as the visible draft of the answer (``kinds``: as for _walk)."""
    import re

    names_in = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)")
    bodies = list(_walk(steps, kinds))
    replies = [body for kind, body in bodies if kind == "reply"]
    if not replies:
        generates = [body for kind, body in bodies if kind == "generate"]
        return {str(generates[-1].get("id", ""))} if generates else set()
    sources: dict[str, set[str]] = {}  # id -> the ids its value is made from
    for kind, body in bodies:
        if kind == "post_process" and body.get("id"):
            sources.setdefault(str(body["id"]), set()).update(
                names_in.findall(str(body.get("input", "")))
            )
        elif kind == "set":
            for name, value in body.items():
                sources.setdefault(str(name), set()).update(names_in.findall(str(value)))
    wanted: set[str] = set()
    pending = [name for body in replies for name in names_in.findall(str(body.get("text", "")))]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(sources.get(name, ()))
    return wanted
