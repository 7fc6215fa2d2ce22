"""The MLX text backend: model loading (Hugging Face, local folders, GGUF), generation, caching.

Importing this package is light; mlx and mlx-lm are imported inside functions.
"""

from __future__ import annotations
