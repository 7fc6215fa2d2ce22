"""Built-in plugin: the image backends (MLX diffusion, AUTOMATIC1111 / Forge, OpenAI-compatible)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..contracts import ImageBackendFactory
from ..plugins import hookimpl


def _mlx_diffusion(model: str | None = None, **options: Any) -> Any:
    from ..image.mlx_backend import create_mlx_diffusion

    return create_mlx_diffusion(model, **options)


def _a1111(model: str | None = None, **options: Any) -> Any:
    from ..image.remote import create_a1111

    return create_a1111(model, **options)


def _openai_images(model: str | None = None, **options: Any) -> Any:
    from ..image.remote import create_openai_images

    return create_openai_images(model, **options)


def _ready(name: str) -> Callable[[str | None], str | None]:
    def ready(model: str | None = None) -> str | None:
        from ..image import readiness

        check: Callable[[str | None], str | None] = getattr(readiness, f"{name}_ready")
        return check(model)

    return ready


@hookimpl
def register_image_backends(register: Callable[[ImageBackendFactory], None]) -> None:
    """Register the built-in painters."""
    register(
        ImageBackendFactory(
            name="mlx-diffusion",
            create=_mlx_diffusion,
            ready=_ready("mlx_diffusion"),
            summary="Stable Diffusion (SD 1.x/2.x, SD-Turbo, SDXL-Turbo) on MLX, from a Hugging "
            "Face id or a diffusers folder",
        )
    )
    register(
        ImageBackendFactory(
            name="a1111",
            create=_a1111,
            ready=_ready("a1111"),
            summary="AUTOMATIC1111 / Forge web UI API (/sdapi/v1/txt2img); LOLLMS_A1111_URL",
        )
    )
    register(
        ImageBackendFactory(
            name="openai-images",
            create=_openai_images,
            ready=_ready("openai_images"),
            summary="OpenAI-compatible /v1/images/generations; LOLLMS_OPENAI_IMAGE_URL, "
            "OPENAI_API_KEY",
        )
    )
