"""Paths a personality names stay inside its own folder.

A personality is data written by someone else: a path in it (``avatar``, and every field the schema
marks with ``x-path``) is relative to the folder holding ``personality.yaml`` and must resolve
inside that folder after symbolic links are followed. Anything else is refused at load time and
never served or read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

_DRIVE = re.compile(r"^[A-Za-z]:")
PATH_HINT = "write a path relative to the folder holding personality.yaml, e.g. assets/logo.png"


class PathRefused(ValueError):
    """A personality path that would leave its folder; the message says why."""


def confined(folder: Path, relative: str) -> Path:
    """The resolved ``folder/relative``; raises :class:`PathRefused` when it would leave ``folder``.

    The file need not exist: the check is on the path itself and on every symbolic link met
    while resolving it.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise PathRefused("is empty")
    if "\x00" in relative:
        raise PathRefused("contains a NUL character")
    # Backslashes are separators for the checks, so a Windows-style path cannot hide a '..'.
    text = relative.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise PathRefused(f"'{relative}' is an absolute path")
    if text.startswith("~"):
        raise PathRefused(f"'{relative}' points into a home folder")
    if ".." in PurePosixPath(text).parts:
        raise PathRefused(f"'{relative}' goes up with '..'")
    root = folder.resolve()
    try:
        target = (root / text).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise PathRefused(f"'{relative}' cannot be resolved ({exc})") from None
    if not target.is_relative_to(root):
        raise PathRefused(f"'{relative}' leads outside the personality's folder (symbolic link)")
    return target


def path_fields(schema: Mapping[str, Any]) -> dict[str, str]:
    """Top-level keys the schema marks as paths (``x-path``: ``file`` or ``glob``)."""
    props = schema.get("properties", {})
    return {key: spec["x-path"] for key, spec in props.items() if "x-path" in spec}


def named_paths(
    data: Mapping[str, Any], fields: Mapping[str, str]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(document path, value) of every path string in ``data`` under the marked fields."""
    for key in fields:
        value = data.get(key)
        if isinstance(value, str):
            yield (key,), value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield (key, i), item
                elif isinstance(item, Mapping) and isinstance(item.get("path"), str):
                    yield (key, i, "path"), item["path"]
