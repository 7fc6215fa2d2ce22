"""Linux CPU speed: put the system's OpenBLAS before the reference BLAS of the mlx[cpu] wheel.

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

    Set ``LOLLMS_OPENBLAS=0`` to keep MLX's bundled BLAS. Linux only (macOS uses Accelerate).
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
            library = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _set_threads(library)
        return name
    return None


def _set_threads(library: ctypes.CDLL) -> None:
    """One OpenBLAS thread unless ``LOLLMS_OPENBLAS_THREADS`` says otherwise.

    MLX calls BLAS from more than one of its own threads (one per stream); OpenBLAS's pthread pool
    was seen to deadlock under that, while single-threaded calls are safe and, with MLX's own
    threads busy, measured as fast on 2 cores.
    """
    try:
        threads = int(os.environ.get("LOLLMS_OPENBLAS_THREADS", "1"))
    except ValueError:
        threads = 1
    setter = getattr(library, "openblas_set_num_threads", None)
    if setter is not None and threads > 0:
        setter(ctypes.c_int(threads))


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
