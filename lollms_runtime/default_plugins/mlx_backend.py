"""Built-in plugin: the MLX text backend (mlx-lm), registered like any third-party backend."""

from __future__ import annotations

from typing import Any

from ..backends.base import TextBackend
from ..contracts import TextBackendFactory
from ..plugins import hookimpl


def create(model: str = "default", **options: Any) -> TextBackend:
    """The shared MLX backend for ``model`` ("default", a folder, a .gguf file or a HF id)."""
    from ..mlx.backend import shared_backend  # imports mlx lazily, after OpenBLAS is preloaded

    return shared_backend(model, **options)


@hookimpl
def register_text_backends(register: Any) -> None:
    """Register the ``mlx`` text backend."""
    register(
        TextBackendFactory(
            name="mlx",
            create=create,
            summary="Local models through mlx-lm: the embedded SmolLM2 default, MLX folders, "
            "GGUF files or Hugging Face ids",
        )
    )
