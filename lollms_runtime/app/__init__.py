"""The generated Gradio web app (importing this package may import gradio)."""

from __future__ import annotations

from .ui import build_app

__all__ = ["build_app"]
