"""The runtime: a catalog of personalities, the engine, and the backends they share."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .backends.base import ChatMessage, ImageBackend, TextBackend
from .catalog import Catalog
from .engine import Engine, Limits, Turn
from .errors import LollmsError
from .events import Event, Token
from .loader import default_host
from .personality import Personality
from .plugins import PluginHost

DEFAULT_TEXT_BACKEND = "mlx"
DEFAULT_IMAGE_BACKEND = "mlx-diffusion"

# Continuing an answer: one generate that picks up where the answer stopped. The message and the
# answer so far are variables, so braces in them stay literal text.
CONTINUE_PIPELINE: tuple[Mapping[str, Any], ...] = (
    {
        "generate": {
            "id": "answer",
            "prompt": "{{ continue_message }}",
            "answer_prefix": "{{ continue_text }}",
        }
    },
    {"reply": {"text": "{{ answer }}"}},
)


class Runtime:
    """Everything a front end needs to run turns; backends are created on first use and shared."""

    def __init__(
        self,
        *,
        host: PluginHost | None = None,
        personalities: Iterable[str | Path] = (),
        model: str | None = None,
        text_backend: str = DEFAULT_TEXT_BACKEND,
        image_backend: str = DEFAULT_IMAGE_BACKEND,
        limits: Limits | None = None,
    ) -> None:
        self.host = host or default_host()
        self.catalog = Catalog(self.host, personalities)
        self.model = model or "default"
        self.text_backend_name = text_backend
        self.image_backend_name = image_backend
        self._lock = threading.Lock()
        self._text: dict[tuple[str, str], TextBackend] = {}
        self._claimed: dict[str, str] = {}
        self._image: dict[tuple[str, str | None], ImageBackend] = {}
        self.engine = Engine(
            self.host,
            self.text_backend,
            self.image_backend,
            limits=limits,
            resolve_personality=self.catalog.get,
        )
        self.host.pm.hook.lollms_startup(runtime=self)

    def text_backend(
        self, personality: Personality | None = None, model: str | None = None
    ) -> TextBackend:
        """The shared text backend for ``model`` (default: the runtime's model)."""
        key = (self.text_backend_for(model or self.model), model or self.model)
        with self._lock:
            if key not in self._text:
                factory = self.host.text_backends.get(key[0])
                if factory is None:
                    known = ", ".join(sorted(self.host.text_backends)) or "none"
                    raise LollmsError(f"no text backend named '{key[0]}' (installed: {known})")
                self._text[key] = factory.create(model=key[1])
            return self._text[key]

    def text_backend_for(self, model: str) -> str:
        """The backend that serves ``model``: one that claims the spec, else the selected one."""
        if model not in self._claimed:  # asked on every generate step: decided once per spec
            self._claimed[model] = next(
                (
                    f.name
                    for f in self.host.text_backends.values()
                    if f.claims is not None and f.claims(model)
                ),
                self.text_backend_name,
            )
        return self._claimed[model]

    def image_backend(self, name: str | None = None, model: str | None = None) -> ImageBackend:
        key = (name or self.image_backend_name, model)
        with self._lock:
            if key not in self._image:
                factory = self.host.image_backends.get(key[0])
                if factory is None:
                    known = ", ".join(sorted(self.host.image_backends)) or "none"
                    raise LollmsError(f"no image backend named '{key[0]}' (installed: {known})")
                self._image[key] = factory.create(model=model) if model else factory.create()
            return self._image[key]

    def run(
        self,
        personality: str | Personality,
        message: str,
        *,
        history: Sequence[ChatMessage] = (),
        settings: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        discussion_id: str | None = None,
        artifacts_dir: Path | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Run one turn and yield its events (the last one is always ``Done``)."""
        turn = self._turn(
            personality, message, history, settings, sampling, discussion_id, artifacts_dir, cancel
        )
        return self.engine.run_turn(turn)

    def continue_answer(
        self,
        personality: str | Personality,
        message: str,
        answer: str,
        *,
        history: Sequence[ChatMessage] = (),
        settings: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        discussion_id: str | None = None,
        artifacts_dir: Path | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Extend ``answer`` (to ``message``, after ``history``): the model goes on from its last
        word. Tokens are only the new text; the ``Reply`` is the whole answer."""
        turn = self._turn(
            personality, message, history, settings, sampling, discussion_id, artifacts_dir, cancel
        )
        turn.personality = dataclasses.replace(turn.personality, pipeline=CONTINUE_PIPELINE)
        turn.variables = {"continue_message": message, "continue_text": answer}
        return _new_text_only(self.engine.run_turn(turn), answer)

    def _turn(
        self,
        personality: str | Personality,
        message: str,
        history: Sequence[ChatMessage],
        settings: Mapping[str, Any] | None,
        sampling: Mapping[str, Any] | None,
        discussion_id: str | None,
        artifacts_dir: Path | None,
        cancel: threading.Event | None,
    ) -> Turn:
        target = (
            personality
            if isinstance(personality, Personality)
            else self.catalog.resolve(personality)
        )
        try:
            resolved = target.resolve_settings(settings)
        except ValueError as exc:
            raise LollmsError(str(exc)) from None
        return Turn(
            personality=target,
            message=message,
            history=tuple(history),
            settings=resolved,
            sampling=dict(sampling or {}),
            discussion_id=discussion_id,
            artifacts_dir=artifacts_dir,
            cancel=cancel or threading.Event(),
        )


def _new_text_only(events: Iterator[Event], prefix: str) -> Iterator[Event]:
    """Drop the echo of the answer prefix (generate streams it first): it is already shown."""
    pending = bool(prefix)
    for event in events:
        if pending and isinstance(event, Token) and event.visible:
            pending = False
            if event.text == prefix:
                continue
        yield event
