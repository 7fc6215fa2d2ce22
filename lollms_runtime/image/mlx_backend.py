"""The ``mlx-diffusion`` image backend: Stable Diffusion on MLX from a Hugging Face id or folder."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import GeneratedImage, ImageRequest, ProgressCallback
from .models import DEFAULT_IMAGE_MODEL, resolve_image_model


def _is_distilled(model_id: str) -> bool:
    # SD-Turbo and SDXL-Turbo are trained without classifier-free guidance: guidance must be 0.
    return "turbo" in model_id.lower()


@dataclass
class MLXDiffusionBackend:
    """Paints with a Stable Diffusion model on MLX; the weights load on first use and are shared."""

    model_id: str = DEFAULT_IMAGE_MODEL
    dtype: str | None = None  # None: float16 on an Apple GPU, float32 on CPU
    allow_download: bool = False
    distilled: bool | None = None  # None: guessed from the model name ("turbo")
    name: str = "mlx-diffusion"
    _pipelines: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pipeline(self, model: str | None = None) -> Any:
        """The loaded pipeline for ``model`` (default: this backend's) or BackendUnavailable."""
        from .diffusion import default_dtype, shared_pipeline

        model_id = model or self.model_id
        with self._lock:
            pipeline = self._pipelines.get(model_id)
            if pipeline is None:
                folder = resolve_image_model(model_id, allow_download=self.allow_download)
                pipeline = shared_pipeline(folder, self.dtype or default_dtype())
                self._pipelines[model_id] = pipeline
            return pipeline

    def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """Paint ``request.count`` images; a cancelled generation returns no images."""
        from .artifacts import encode_png

        model_id = request.model or self.model_id
        pipeline = self.pipeline(model_id)
        distilled = _is_distilled(model_id) if self.distilled is None else self.distilled
        guidance = 0.0 if distilled else request.guidance
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        seeds = [seed + i for i in range(max(1, request.count))]
        width, height = pipeline.fit_size(request.width, request.height)
        arrays = pipeline.generate(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            width=width,
            height=height,
            steps=request.steps,
            guidance=guidance,
            seeds=seeds,
            progress=progress,
            cancel=cancel,
        )
        if arrays is None:
            return []
        return [
            GeneratedImage(
                png=encode_png(pixels),
                width=width,
                height=height,
                params={
                    "prompt": request.prompt,
                    "negative_prompt": request.negative_prompt,
                    "seed": image_seed,
                    "steps": max(1, request.steps),
                    "guidance": guidance,
                    "model": model_id,
                    "backend": self.name,
                    "dtype": pipeline.dtype_name,
                },
            )
            for pixels, image_seed in zip(arrays, seeds, strict=True)
        ]


def create_mlx_diffusion(model: str | None = None, **options: Any) -> MLXDiffusionBackend:
    """Factory of ``mlx-diffusion``: ``create(model, dtype=, allow_download=, distilled=)``."""
    known = {"dtype", "allow_download", "distilled"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"mlx-diffusion does not take option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(known))}"
        )
    return MLXDiffusionBackend(model_id=model or DEFAULT_IMAGE_MODEL, **options)
