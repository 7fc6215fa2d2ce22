"""Test doubles for engine tests and `lollms test`: a scripted text backend and image backend.

They record what they were asked (``history``) and replay queued answers; they are never the proof
that generation works — the real mlx-lm backend is.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from .backends.base import (
    ChoiceResult,
    FinishReason,
    GeneratedImage,
    GenerationRequest,
    ImageRequest,
    ProgressCallback,
    TextChunk,
)


class ScriptedTextBackend:
    """Replays ``enqueue``-d answers token by token (one word per chunk) and queued choices."""

    name = "scripted"
    model_id = "scripted"
    parameters: int | None = None  # the model size templates see (model.parameters); set it

    def __init__(self, *answers: str) -> None:
        self.answers: deque[str] = deque(answers)
        self.choices: deque[str] = deque()
        self.history: list[GenerationRequest] = []
        self.choice_history: list[tuple[GenerationRequest, tuple[str, ...]]] = []
        self.on_chunk: Any = None  # test hook called after each chunk (e.g. to cancel)

    def enqueue(self, *answers: str) -> ScriptedTextBackend:
        self.answers.extend(answers)
        return self

    def enqueue_choice(self, *choices: str) -> ScriptedTextBackend:
        self.choices.extend(choices)
        return self

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[TextChunk]:
        self.history.append(request)
        if not self.answers:
            raise RuntimeError("the scripted backend has no answer left (enqueue one)")
        answer = self.answers.popleft()
        for stop in request.sampling.stop:
            if stop in answer:
                answer = answer[: answer.index(stop)]
        words = answer.split(" ")
        words = words[: request.sampling.max_tokens]
        emitted = 0
        for index, word in enumerate(words):
            if cancel is not None and cancel.is_set():
                yield TextChunk("", finish_reason="cancelled", generation_tokens=emitted)
                return
            emitted += 1
            yield TextChunk(word if index == 0 else " " + word, token=index)
            if self.on_chunk is not None:
                self.on_chunk(emitted)
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        reason: FinishReason = (
            "length" if len(answer.split(" ")) > request.sampling.max_tokens else "stop"
        )
        yield TextChunk(
            "", finish_reason=reason, prompt_tokens=prompt_tokens, generation_tokens=emitted
        )

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        self.choice_history.append((request, tuple(choices)))
        if not self.choices:
            raise RuntimeError("the scripted backend has no choice left (enqueue_choice one)")
        choice = self.choices.popleft()
        if choice not in choices:
            raise ValueError(f"scripted choice {choice!r} is not one of {list(choices)}")
        rest = (1.0 - 0.9) / max(1, len(choices) - 1)
        probabilities = {c: (0.9 if c == choice else rest) for c in choices}
        return ChoiceResult(choice, list(choices).index(choice), probabilities)


class ScriptedImageBackend:
    """Paints flat-colour PNGs whose colour depends on the seed; reports progress per step."""

    name = "scripted-image"
    model_id = "scripted-image"

    def __init__(self, fail_with: str | None = None) -> None:
        self.history: list[ImageRequest] = []
        self.fail_with = fail_with

    def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        from PIL import Image

        self.history.append(request)
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        for step in range(1, request.steps + 1):
            if cancel is not None and cancel.is_set():
                return []
            if progress is not None:
                progress(step, request.steps)
        images = []
        for index in range(request.count):
            seed = (request.seed or 0) + index
            colour = (seed * 37 % 256, seed * 91 % 256, seed * 151 % 256)
            buffer = io.BytesIO()
            Image.new("RGB", (request.width, request.height), colour).save(buffer, "PNG")
            params = {
                "prompt": request.prompt,
                "seed": seed,
                "steps": request.steps,
                "model": self.model_id,
            }
            images.append(GeneratedImage(buffer.getvalue(), request.width, request.height, params))
        return images
