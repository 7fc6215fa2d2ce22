"""The pipeline engine: runs a personality's steps for one user message and yields events.

A step kind's runner is a generator ``run(ctx, body)`` that yields events and *returns* the step's
output (``output = yield from kind.run(ctx, body)``), using only the public contract of
:mod:`lollms_runtime.context`; the engine handles ids, ``when``, retries, ``on_error``, limits,
cancellation and the trace. It knows step kinds only through their ``StepKind`` declarations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .backends.base import BackendBusy, ImageBackend, TextBackend
from .context import (
    Cancelled,
    Counters,
    LimitExceeded,
    Limits,
    StepContext,
    StepError,
    StepFailed,
    StepGen,
    Turn,
)
from .contracts import PostProcessor, StepKind
from .errors import LollmsError
from .events import Done, Event, Reply, Status, StepFinished, StepStarted, Token, TurnError
from .personality import Personality
from .pipeline import default_pipeline, defined_names, streamed_ids
from .plugins import PluginFailure, PluginHost
from .templating import TemplateError

log = logging.getLogger(__name__)

# The public names step runners and front ends import from here (their home is .context).
__all__ = [
    "Cancelled",
    "Counters",
    "Engine",
    "LimitExceeded",
    "Limits",
    "StepContext",
    "StepError",
    "StepFailed",
    "StepGen",
    "Turn",
    "streamed_ids",
]


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
        model_note: Callable[[Personality], str] | None = None,
    ) -> None:
        self.host = host
        self._text = text_backend
        self._image = image_backend
        # Decided once: isinstance() against a runtime-checkable Protocol is slow on the hot path.
        self._text_is_backend = isinstance(text_backend, TextBackend)
        self._image_is_backend = isinstance(image_backend, ImageBackend)
        self.limits = limits or Limits()
        self.resolve_personality = resolve_personality
        # Why a personality runs on the model it does, when that is not the user's choice.
        self.model_note = model_note or (lambda personality: "")
        self.kinds: Mapping[str, StepKind] = host.step_kinds
        self.postprocessors: Mapping[str, PostProcessor] = host.postprocessors
        self._plans: dict[int, tuple[Sequence[Mapping[str, Any]], dict[str, Any], set[str]]] = {}

    def text_backend(self, personality: Personality) -> TextBackend:
        if self._text_is_backend:
            return self._text  # type: ignore[return-value]
        return self._text(personality)  # type: ignore[operator]

    def find_personality(self, personality_id: str) -> Personality:
        if self.resolve_personality is None:
            raise StepError("this runtime cannot call other personalities")
        return self.resolve_personality(personality_id)

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
            pipeline = turn.personality.pipeline or default_pipeline()
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
            busy = _busy_cause(exc)
            retry = busy.retry_after if busy is not None else None
            yield TurnError(str(exc), ctx.step_id, exc.hint, retry_after=retry)
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

    def _plan(self, pipeline: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], set[str]]:
        """The ids a pipeline declares and the ids it streams, worked out once per pipeline."""
        entry = self._plans.get(id(pipeline))
        if entry is None or entry[0] is not pipeline:  # the entry keeps its pipeline alive
            # Every name exists from the start (None until set): a reply may mention the output
            # of a branch that did not run.
            declared = dict.fromkeys(defined_names(pipeline, self.kinds))
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
    def run_step(self, ctx: StepContext, step: Mapping[str, Any], path: str) -> StepGen:
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
            """The step's StepFinished, also handed to the lollms_step_finished observers."""
            event = StepFinished(
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
                answer=bool(kind.answer),
            )
            self._hook("lollms_step_finished", turn=ctx.turn, step=step, result=event)
            return event

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
        if isinstance(output, str) and kind.text_output:
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
    return PluginFailure(name="(observer)", stage=name, error=f"{type(exc).__name__}: {exc}")


def _busy_cause(exc: BaseException) -> BackendBusy | None:
    """The model's "busy, try again" refusal behind a step's failure, if that is what it was."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BackendBusy):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
