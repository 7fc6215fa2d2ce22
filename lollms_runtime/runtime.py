"""The runtime: a catalog of personalities, the engine, and the backends they share."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .backends.base import ChatMessage, ImageBackend, TextBackend
from .backends.shared import shared
from .catalog import Catalog
from .engine import Engine, Limits, Turn
from .errors import LollmsError
from .events import Event, Token
from .loader import default_host
from .personality import Personality
from .plugins import PluginHost

DEFAULT_TEXT_BACKEND = "mlx"
DEFAULT_IMAGE_BACKEND = "mlx-diffusion"
DEFAULT_MODEL = "default"


class Runtime:
    """Everything a front end needs to run turns; backends are created on first use and shared."""

    def __init__(
        self,
        *,
        host: PluginHost | None = None,
        personalities: Iterable[str | Path] = (),
        model: str | None = None,
        text_backend: str | None = None,
        image_backend: str = DEFAULT_IMAGE_BACKEND,
        limits: Limits | None = None,
    ) -> None:
        self.host = host or default_host()
        self.catalog = Catalog(self.host, personalities)
        self._model = model  # None: not chosen (a personality's recommended_model may apply)
        self._accepted: dict[str, str | None] = {}  # recommended_model -> what to load
        self.text_backend_name = text_backend or DEFAULT_TEXT_BACKEND
        self.image_backend_name = image_backend
        self._claimed: dict[str, str] = {}
        self.engine = Engine(
            self.host,
            self.text_backend,
            self.image_backend,
            limits=limits,
            resolve_personality=self.catalog.get,
            model_note=lambda personality: self.model_for(personality)[1],
        )
        self.host.pm.hook.lollms_startup(runtime=self)

    @property
    def model(self) -> str:
        """The model the user chose, or "default"."""
        return self._model or DEFAULT_MODEL

    @model.setter
    def model(self, value: str) -> None:
        self._model = value or None

    def model_for(self, personality: Personality | None) -> tuple[str, str]:
        """The model ``personality`` runs on, and a note for the trace when it is not the user's
        choice: its ``recommended_model`` (when it is safe to load: see :func:`acceptable_model`)."""
        if self._model is not None or personality is None or not personality.recommended_model:
            return self.model, ""
        wanted = personality.recommended_model
        if wanted not in self._accepted:  # decided once: it looks at the disk
            self._accepted[wanted] = acceptable_model(wanted)
        accepted = self._accepted[wanted]
        if accepted is not None:
            return accepted, f"model {wanted} (the personality's recommended_model)"
        return DEFAULT_MODEL, (
            f"recommended_model {wanted!r} ignored: not a Hugging Face id or a model of the "
            "runtime's models folder; running the default model"
        )

    def text_backend(
        self, personality: Personality | None = None, model: str | None = None
    ) -> TextBackend:
        """The shared text backend for ``model`` (default: :meth:`model_for` ``personality``)."""
        chosen = model or self.model_for(personality)[0]
        name = self.text_backend_for(chosen)
        factory = self.host.text_backends.get(name)
        if factory is None:
            raise LollmsError(self._no_backend(name))
        return shared(("text", factory, chosen), lambda: factory.create(model=chosen))

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
        name = name or self.image_backend_name
        factory = self.host.image_backends.get(name)
        if factory is None:
            known = ", ".join(sorted(self.host.image_backends)) or "none"
            raise LollmsError(f"no image backend named '{name}' (installed: {known})")
        return shared(
            ("image", factory, model),
            lambda: factory.create(model=model) if model else factory.create(),
        )

    def _no_backend(self, name: str) -> str:
        known = ", ".join(sorted(self.host.text_backends)) or "none"
        return f"no text backend named '{name}' (installed: {known})"

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
        from .default_plugins.steps import CONTINUE_PIPELINE  # the built-in generate continues

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


def runtime_from_args(args: Any, **options: Any) -> Runtime:
    """The runtime for a command's shared options (--personalities, --model, --backend)."""
    runtime = Runtime(
        personalities=getattr(args, "personalities", None) or (),
        model=getattr(args, "model", None),
        text_backend=getattr(args, "backend", None),
        **options,
    )
    if runtime.text_backend_name not in runtime.host.text_backends:
        raise LollmsError(runtime._no_backend(runtime.text_backend_name))
    return runtime


def acceptable_model(spec: str) -> str | None:
    """The model spec to load when a personality (untrusted data) asks for ``spec``: "default", a
    Hugging Face id, or the name of a model in the runtime's models folder; None for anything
    else, such as a path elsewhere on the disk."""
    from .home import models_dir
    from .mlx.hub import parse_hub_spec
    from .remote.endpoints import PREFIX, personality_may_use

    if spec == DEFAULT_MODEL:
        return spec
    if spec.startswith(PREFIX) or personality_may_use(spec):
        # Remote: only an endpoint the user named in models.yaml, never the author's own URL.
        return spec if personality_may_use(spec) else None
    if parse_hub_spec(spec) is not None:
        # A spec that is also a path here would be loaded from the disk (resolve_model looks
        # there first): refused.
        parts = spec.split(":")[0].split("/")
        return None if ".." in parts or Path(spec).expanduser().exists() else spec
    if not spec or spec.startswith((".", "/", "~")) or "/" in spec or "\\" in spec:
        return None
    folder = models_dir().resolve()
    candidate = (folder / spec).resolve()
    return str(candidate) if candidate.parent == folder and candidate.exists() else None
