"""The Haiku Poet personality: registers its folder with lollms-runtime (data only, no code runs)."""

from collections.abc import Callable
from pathlib import Path

from lollms_runtime.plugins import hookimpl


@hookimpl
def register_personalities(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent)
