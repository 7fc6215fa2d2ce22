"""What templates read of a turn's knowledge, computed only when a template or a model call
needs it (importing this module costs nothing: the lorebook code loads on first use)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


class TurnLore(Sequence[dict[str, Any]]):
    """``lore`` in templates: the entries that fire this turn, each ``{name, content, position,
    depth, reason}``; the same list the model calls of the turn use."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def _items(self) -> list[dict[str, Any]]:
        from .turn import turn_lore

        return [f.as_variable() for f in turn_lore(self._ctx).fired]

    def __getitem__(self, index: Any) -> Any:
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._items())

    def __repr__(self) -> str:
        return repr(self._items())
