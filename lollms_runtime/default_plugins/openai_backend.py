"""Built-in plugin: the ``openai`` text backend, any OpenAI-compatible server as the model."""

from __future__ import annotations

from typing import Any

from ..backends.base import TextBackend
from ..contracts import TextBackendFactory
from ..plugins import hookimpl


def create(model: str = "", **options: Any) -> TextBackend:
    """A backend for ``model``: ``openai:URL#MODEL`` or an endpoint named in models.yaml."""
    from ..backends.base import BackendUnavailable
    from ..errors import LollmsError
    from ..remote.backend import OpenAITextBackend
    from ..remote.endpoints import resolve

    try:
        return OpenAITextBackend(resolve(model))
    except LollmsError as exc:  # a step reports it like any backend that cannot run
        raise BackendUnavailable(str(exc)) from None


def claims(model: str) -> bool:
    """``openai:...`` specs and the endpoints of models.yaml are served by this backend."""
    from ..remote.endpoints import claims as remote_claims

    return remote_claims(model)


@hookimpl
def register_text_backends(register: Any) -> None:
    """Register the ``openai`` text backend."""
    register(
        TextBackendFactory(
            name="openai",
            create=create,
            claims=claims,
            summary="Any OpenAI-compatible server (mlx_lm.server, llama.cpp, vLLM, Ollama, "
            "LM Studio): --model openai:http://HOST:PORT/v1#MODEL or a models.yaml endpoint",
        )
    )
