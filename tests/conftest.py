"""Shared fixtures. The real-model fixtures (one converted, loaded model per session) live in
mlx_fixtures.py and are exposed to every test module from here."""

from __future__ import annotations

from mlx_fixtures import mlx_backend, mlx_home

__all__ = ["mlx_backend", "mlx_home"]
