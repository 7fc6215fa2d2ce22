"""lollms-runtime: run AI personalities declared in YAML on MLX models.

Importing this package stays light: mlx, gradio and transformers load only when a model or the app is used.
"""

from __future__ import annotations

__version__ = "0.1.0"
