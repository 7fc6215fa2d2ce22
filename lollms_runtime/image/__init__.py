"""Text-to-image: the MLX diffusion pipeline, HTTP painters, PNG artifacts and model files.

Importing this package is cheap: mlx, PIL and huggingface_hub load inside the functions using them.
"""

from __future__ import annotations

from .artifacts import read_png_params, save_png
from .models import (
    DEFAULT_IMAGE_MODEL,
    ImageModelInfo,
    list_local_image_models,
    pull_image_model,
    resolve_image_model,
)

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "ImageModelInfo",
    "list_local_image_models",
    "pull_image_model",
    "read_png_params",
    "resolve_image_model",
    "save_png",
]
