"""The bundled personalities end to end on the real MLX backend (the embedded SmolLM2 model).

Answers are kept short (max_tokens) so the file runs in about a minute on two CPU cores. What is
asserted is what a 135M model does reliably: the pipeline runs every step for real, streams, uses
the prompt cache across turns, paints with a real (tiny, random) diffusion model, and reports
model-judged decisions with their probabilities. Which branch the small model picks is not asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.events import Done, Event, ImageProduced, Reply, StepFinished, Token
from lollms_runtime.runtime import Runtime

pytestmark = pytest.mark.model
SHORT = {"max_tokens": 24, "seed": 3}


@pytest.fixture(scope="module")
def runtime(mlx_home: Path) -> Runtime:
    return Runtime()


@pytest.fixture(scope="module")
def tiny_painter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lollms_runtime.image.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("painter") / "tiny-sd")


def turn(runtime: Runtime, pid: str, message: str, **kwargs: Any) -> list[Event]:
    events = list(runtime.run(pid, message, sampling=kwargs.pop("sampling", SHORT), **kwargs))
    done = events[-1]
    assert isinstance(done, Done) and done.status == "ok", events
    return events


def step(events: list[Event], step_id: str) -> StepFinished:
    return next(e for e in events if isinstance(e, StepFinished) and e.step_id == step_id)


def reply(events: list[Event]) -> Reply:
    return next(e for e in events if isinstance(e, Reply))


def test_gpt_for_art_describes_paints_and_takes_a_follow_up(
    runtime: Runtime, tiny_painter: Path, tmp_path: Path
) -> None:
    settings = {
        "image_model": str(tiny_painter),
        "steps": 2,
        "width": 256,
        "height": 256,
        "seed": 5,
    }
    first = turn(
        runtime,
        "gpt_for_art",
        "Imagine something cool.",
        settings=settings,
        discussion_id="art",
        artifacts_dir=tmp_path,
    )
    streamed = "".join(e.text for e in first if isinstance(e, Token) and e.visible)
    description = reply(first).text
    assert (
        len(description) > 20
        and description in streamed.replace("Artbot:", "").strip() + description
    )
    assert step(first, "painting").output == "then"
    images = [e for e in first if isinstance(e, ImageProduced)]
    assert len(images) == 1 and images[0].path.is_file() and images[0].path.parent == tmp_path
    assert reply(first).images == (images[0].path,)
    assert images[0].params["prompt"] == description

    history = [("user", "Imagine something cool."), ("assistant", description)]
    from lollms_runtime.backends.base import ChatMessage

    second = turn(
        runtime,
        "gpt_for_art",
        "Add some street art to the scene.",
        settings={**settings, "paint": False},
        discussion_id="art",
        history=[ChatMessage(r, c) for r, c in history],
    )  # type: ignore[arg-type]
    assert step(second, "painting").output == "else"
    assert reply(second).text
    # The second turn re-used the first turn's KV cache instead of prefilling it again.
    assert step(second, "draft").cached_tokens > 20


def test_gpt_for_art_without_a_painter_still_answers(runtime: Runtime) -> None:
    events = turn(
        runtime,
        "gpt_for_art",
        "Imagine a quiet harbour.",
        settings={"image_model": "nobody/no-such-model", "steps": 2},
    )
    painting = step(events, "artwork")
    assert painting.status == "failed"
    assert "lollms models pull nobody/no-such-model" in painting.error
    assert reply(events).text and not reply(events).images


@pytest.mark.parametrize(
    ("pid", "message", "decision", "options"),
    [
        (
            "router",
            "Translate into French: the cat sleeps.",
            "intent",
            {"translate", "summarize", "chat"},
        ),
        (
            "code_buddy",
            "Write a Python function that adds two numbers.",
            "wants_code",
            {"then", "else"},
        ),
    ],
)
def test_model_judged_routing_runs_for_real(
    runtime: Runtime, pid: str, message: str, decision: str, options: set[str]
) -> None:
    events = turn(runtime, pid, message)
    judged = step(events, decision)
    assert judged.output in options
    assert "p=" in judged.detail  # the model's probability for its choice, shown in the trace
    assert reply(events).text.strip()


def test_haiku_poet_loops_for_real(runtime: Runtime) -> None:
    events = turn(runtime, "haiku_poet", "the sea", settings={"count": 1})
    poems = step(events, "poems")
    assert isinstance(poems.output, list) and len(poems.output) == 1 and poems.output[0]
    assert "iteration" in step(events, "titling").detail
    assert reply(events).text.startswith("**")
