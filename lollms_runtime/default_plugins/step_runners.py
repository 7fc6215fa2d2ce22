"""How the built-in step kinds run. Each runner is a generator: it yields events and returns the
step's output (see :mod:`lollms_runtime.engine`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..backends.base import ChatMessage, GenerationRequest, ImageRequest
from ..context import Cancelled, StepContext, StepError, StepGen
from ..events import Waiting
from ..knowledge.limits import KnowledgeError
from ..knowledge.turn import with_knowledge

INT_OPTIONS = ("top_k", "max_tokens", "seed")
FLOAT_OPTIONS = ("temperature", "top_p", "min_p", "repetition_penalty")


def _plain(fn: Callable[[StepContext, Mapping[str, Any]], Any]) -> Callable[..., StepGen]:
    """A runner that yields no events."""

    def run(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
        return fn(ctx, body)
        yield  # makes this a generator

    run.__name__ = fn.__name__
    return run


def _messages(
    ctx: StepContext, system: str, prompt: str, history: bool = True
) -> list[ChatMessage]:
    messages = [ChatMessage("system", system)] if system else []
    if history:
        messages.extend(ctx.turn.history)
    messages.append(ChatMessage("user", prompt))
    # The turn's lore, and in the default chat the passages it retrieves (lollms_runtime.knowledge).
    try:
        return with_knowledge(ctx, messages)
    except KnowledgeError as exc:
        hint = exc.hint or "fix lore: or knowledge: in the personality"
        raise StepError(str(exc), hint) from None


def run_generate(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
    personality = ctx.personality
    system = ctx.render(body["system"]) if "system" in body else personality.conditioning
    prompt = ctx.render(body["prompt"]) if "prompt" in body else ctx.turn.message
    overrides: dict[str, Any] = {k: ctx.number(body, k, int) for k in INT_OPTIONS}
    overrides.update({k: ctx.number(body, k, float) for k in FLOAT_OPTIONS})
    # A step's stop strings add to the personality's and the user's, never replace them.
    overrides["stop"] = (*ctx.sampling().stop, *body.get("stop", ()))
    sampling = ctx.sampling(overrides)
    remaining = ctx.tokens_left()
    if sampling.max_tokens > remaining:
        sampling = sampling.merged({"max_tokens": max(1, remaining)})
    answer_prefix = ctx.render(body.get("answer_prefix", ""))
    request = GenerationRequest(
        messages=_messages(ctx, system, prompt, bool(body.get("history", True))),
        sampling=sampling,
        prefixes=personality.prefixes,
        answer_prefix=answer_prefix,
        cache_key=ctx.turn.discussion_id,
        context_policy=personality.raw.get("context_policy", "drop_oldest"),
    )
    visible = bool(body.get("stream", ctx.visible))
    parts = [answer_prefix] if answer_prefix else []
    if visible and answer_prefix:
        yield ctx.token(answer_prefix, visible)
    last = None
    notes: list[str] = []
    stream = ctx.text_backend().stream(request, cancel=ctx.turn.cancel)
    try:
        for chunk in stream:
            last = chunk
            if chunk.note and chunk.note not in notes:
                notes.append(chunk.note)
            if chunk.waiting:  # queued behind other users' turns: front ends say so
                yield Waiting(chunk.waiting, ctx.step_id)
                continue
            if chunk.text:
                parts.append(chunk.text)
                yield ctx.token(chunk.text, visible)
            if not ctx.turn.cancel.is_set():
                ctx.check_cancel()  # the step's time limit
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        if last is not None:
            ctx.count_tokens(last.prompt_tokens, last.generation_tokens, last.cached_tokens)
        if notes:  # e.g. sampling fields a remote server refused, messages left out to fit
            ctx.detail = "; ".join([*([ctx.detail] if ctx.detail else []), *notes])
    text = "".join(parts)
    if ctx.turn.cancel.is_set() or (last is not None and last.finish_reason == "cancelled"):
        if visible:
            ctx.last_text = text
        raise Cancelled()
    return text.strip()


def judge_request(ctx: StepContext, question: str, options: Sequence[str]) -> GenerationRequest:
    """The context a model-judged condition is scored on: the conversation, then the question."""
    listed = ", ".join(options)
    prompt = (
        f"{ctx.turn.message}\n\n---\nQuestion about the message above: {question}\n"
        f"Answer with exactly one of: {listed}."
    )
    return GenerationRequest(
        messages=_messages(ctx, ctx.personality.conditioning, prompt),
        sampling=ctx.sampling(),
        prefixes=ctx.personality.prefixes,
        cache_key=ctx.turn.discussion_id,
        context_policy=ctx.personality.raw.get("context_policy", "drop_oldest"),
    )


def _choose(ctx: StepContext, question: str, options: Sequence[str]) -> tuple[str, str]:
    """The option the model picks, and how sure it is (and how it was asked) for the trace."""
    result = ctx.text_backend().choose(judge_request(ctx, question, options), options)
    how = f", {result.method}" if result.method else ""
    return result.choice, f"p={result.probability:.2f}{how}"


def _holds(ctx: StepContext, branch: Mapping[str, Any]) -> tuple[bool, str]:
    if "ask" in branch:
        question = ctx.render(branch["ask"])
        answer, sure = _choose(ctx, question, ("yes", "no"))
        return answer == "yes", f"asked {question!r}: {answer} ({sure})"
    value = ctx.evaluate(branch["if"])
    return bool(value), f"{branch['if']} -> {bool(value)}"


def run_condition(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
    path = ctx.step_path + ".condition"
    if "if" in body or "ask" in body:
        branches = [body, *body.get("elif", ())]
        details = []
        for index, branch in enumerate(branches):
            holds, detail = _holds(ctx, branch)
            details.append(detail)
            if holds:
                label = "then" if index == 0 else f"elif[{index - 1}]"
                ctx.detail = "; ".join(details) + f" => {label}"
                where = f"{path}.then" if index == 0 else f"{path}.elif[{index - 1}].then"
                yield from ctx.run_steps(branch["then"], where)
                return label
        ctx.detail = "; ".join(details) + " => else"
        yield from ctx.run_steps(body.get("else", ()), f"{path}.else")
        return "else"
    if "switch" in body:
        value = ctx.evaluate(body["switch"])
        key = str(value).lower() if isinstance(value, bool) else str(value)
        detail = f"{body['switch']} = {key!r}"
    else:
        options = [str(o) for o in body["choose"]]
        question = ctx.render(body.get("question", "Which of these fits the message best?"))
        key, sure = _choose(ctx, question, options)
        detail = f"asked {question!r}: {key} ({sure})"
    cases = body.get("cases", {})
    if key in cases:
        ctx.detail = f"{detail} => case {key}"
        yield from ctx.run_steps(cases[key], f"{path}.cases.{key}")
    else:
        ctx.detail = f"{detail} => default"
        yield from ctx.run_steps(body.get("default", ()), f"{path}.default")
    return key


@_plain
def run_post_process(ctx: StepContext, body: Mapping[str, Any]) -> Any:
    value = ctx.value(body["input"]) if "input" in body else ctx.last_text
    operations = ctx.postprocessors
    for op in body["ops"]:
        ((name, args),) = op.items()
        if name not in operations:
            raise StepError(f"unknown operation '{name}'", "is its plugin installed?")
        value = operations[name].apply(value, args, ctx)
    return value


def run_text_to_image(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
    backend_name = ctx.render(body["backend"]) if body.get("backend") else None
    model = ctx.render(body["model"]) if body.get("model") else None
    request = ImageRequest(
        prompt=ctx.render(body["prompt"]),
        negative_prompt=ctx.render(body.get("negative_prompt", "")),
        width=ctx.number(body, "width", int) or 512,
        height=ctx.number(body, "height", int) or 512,
        steps=ctx.number(body, "steps", int) or 20,
        guidance=g if (g := ctx.number(body, "guidance", float)) is not None else 7.5,
        seed=ctx.number(body, "seed", int),
        count=ctx.number(body, "count", int) or 1,
        model=model,
    )
    if not request.prompt.strip():
        raise StepError("the image prompt is empty", "check the template of prompt:")
    backend = ctx.image_backend(backend_name, model)
    events: queue.Queue[tuple[int, int] | None] = queue.Queue()
    result: dict[str, Any] = {}

    def paint() -> None:
        try:
            result["images"] = backend.generate(
                request,
                progress=lambda done, total: events.put((done, total)),
                cancel=ctx.turn.cancel,
            )
        except BaseException as exc:  # handed to the turn's thread below
            result["error"] = exc
        finally:
            events.put(None)

    worker = threading.Thread(target=paint, name=f"paint-{ctx.step_id}", daemon=True)
    worker.start()
    while (item := events.get()) is not None:
        yield ctx.progress(item[0], item[1], "painting")
    worker.join()
    if "error" in result:
        raise result["error"]
    if ctx.turn.cancel.is_set():
        raise Cancelled()
    from ..image.artifacts import save_png  # type: ignore[import-untyped,unused-ignore]

    folder = ctx.turn.artifacts_dir or _scratch_dir()
    paths: list[str] = []
    for index, image in enumerate(result.get("images", ())):
        path = save_png(image, folder, f"{ctx.step_id}-{index}")
        paths.append(str(path))
        yield ctx.image(Path(path), image.params)
    if not paths:
        raise StepError("the image backend returned no image")
    return paths[0] if len(paths) == 1 else paths


def _scratch_dir() -> Path:
    from ..home import artifacts_dir

    folder = artifacts_dir() / "unsaved"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _image_list(ctx: StepContext, sources: Sequence[Any]) -> tuple[Path, ...]:
    images: list[Path] = []
    for source in sources:
        value = ctx.value(source)
        for item in value if isinstance(value, list | tuple) else [value]:
            if item not in (None, "", "None"):
                images.append(Path(str(item)))
    return tuple(images)


@_plain
def run_reply(ctx: StepContext, body: Mapping[str, Any]) -> Any:
    text = ctx.render(body["text"]) if "text" in body else (ctx.last_text or "")
    images = _image_list(ctx, body.get("images", ()))
    shown = {name: ctx.variables.get(name) for name in body.get("show", ())}
    return ctx.set_reply(text.strip(), images, shown).text


@_plain
def run_set(ctx: StepContext, body: Mapping[str, Any]) -> Any:
    values = {name: ctx.value(value) for name, value in body.items()}
    for name, value in values.items():
        ctx.set(name, value)
    return values


def run_loop(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
    cap = min(int(body.get("max", 5)), ctx.limits.max_loop_iterations)
    iterations = 0
    output: Any = None
    while iterations < cap and ("while" not in body or ctx.evaluate(body["while"])):
        output = yield from ctx.run_steps(body["steps"], f"{ctx.step_path}.loop.steps")
        iterations += 1
    ctx.detail = f"{iterations} iteration(s)" + (" (cap reached)" if iterations == cap else "")
    return output


def run_for_each(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
    items = ctx.evaluate(body["items"])
    if isinstance(items, str | bytes) or not hasattr(items, "__iter__"):
        raise StepError(f"items must give a list, got {type(items).__name__}")
    items = list(items)
    cap = min(int(body.get("max", 10)), ctx.limits.max_loop_iterations)
    name = body.get("as", "item")
    outputs = []
    for index, item in enumerate(items[:cap]):
        ctx.set(name, item)
        ctx.set("loop_index", index)
        outputs.append((yield from ctx.run_steps(body["steps"], f"{ctx.step_path}.for_each.steps")))
    skipped = len(items) - min(len(items), cap)
    ctx.detail = f"{min(len(items), cap)} item(s)" + (
        f", {skipped} over the cap skipped" if skipped else ""
    )
    return outputs


def run_call(ctx: StepContext, body: Mapping[str, Any]) -> StepGen:
    message = ctx.render(body["message"]) if "message" in body else None
    if "pipeline" in body:
        name = body["pipeline"]
        steps = ctx.personality.pipelines.get(name)
        if steps is None:
            raise StepError(f"no sub-pipeline named '{name}'", "define it under pipelines:")
        return (yield from ctx.call(steps, f"pipelines.{name}", message=message))
    other = ctx.resolve_personality(ctx.render(body["personality"]))
    return (yield from ctx.call(message=message, personality=other))
