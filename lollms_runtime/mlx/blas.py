"""Linux CPU speed: put the system's OpenBLAS in front of the reference BLAS the mlx[cpu] wheel ships.

libmlx.so leaves ``cblas_sgemm`` & co. undefined and resolves them at load time through the
process's global symbol scope first; a library opened with ``RTLD_GLOBAL`` before mlx is imported
therefore wins over the wheel's bundled ``libblas``. Debian package: ``libopenblas0-pthread``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

_CANDIDATES = (
    "libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
)
_lock = threading.Lock()
_state: dict[str, str | None] = {}


def preload_openblas() -> str | None:
    """Load OpenBLAS globally before mlx initialises; returns its path, or None when not used.

    Set ``LOLLMS_OPENBLAS=0`` to keep MLX's bundled BLAS. Only Linux benefits (macOS uses Accelerate).
    """
    with _lock:
        if "path" in _state:
            return _state["path"]
        _state["path"] = _load()
        return _state["path"]


def _load() -> str | None:
    if not sys.platform.startswith("linux") or os.environ.get("LOLLMS_OPENBLAS") == "0":
        return None
    if "mlx.core" in sys.modules:
        return None  # too late: libmlx already bound its BLAS symbols
    found = ctypes.util.find_library("openblas")
    for name in (found, *_CANDIDATES):
        if not name:
            continue
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        return name
    return None


def openblas_active() -> bool:
    """True when ``cblas_sgemm`` in this process resolves to OpenBLAS (what libmlx binds to)."""
    path = _state.get("path")
    if not path:
        return False
    try:
        blas = ctypes.CDLL(path)
        process = ctypes.CDLL(None)
        mine = ctypes.cast(blas.cblas_sgemm, ctypes.c_void_p).value
        first = ctypes.cast(process.cblas_sgemm, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return False
    return mine is not None and mine == first
