"""Plain data -> a readable personality.yaml (block text for long strings, keys in schema order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

try:  # libyaml writes hundreds of files (import --all) several times faster
    from yaml import CSafeDumper as _Base
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeDumper as _Base  # type: ignore[assignment]


class _Dumper(_Base):
    """Writes multi-line and long strings as ``|`` blocks and blank ones double-quoted."""


def _represent_str(dumper: Any, value: str) -> yaml.ScalarNode:
    style = None
    if value and not value.strip():
        style = '"'  # e.g. "\n", visible as such
    elif "\n" in value.strip("\n") or len(value) > 80:
        style = "|"
    node: yaml.ScalarNode = dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return node


_Dumper.add_representer(str, _represent_str)


def ordered(data: dict[str, Any], order: Sequence[str]) -> dict[str, Any]:
    """``data`` with its keys in ``order`` first (the schema's order), then the rest."""
    first = {k: data[k] for k in order if k in data}
    return {**first, **{k: v for k, v in data.items() if k not in first}}


def dump_personality(data: dict[str, Any], header: Sequence[str] = ()) -> str:
    """The YAML text of ``data``, preceded by ``header`` lines written as comments."""
    from ..schema import base_schema

    body = yaml.dump(
        ordered(data, list(base_schema()["properties"])),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    comments = "".join(
        "# " + "".join(c if c.isprintable() else " " for c in line).rstrip() + "\n"
        for entry in header
        for line in (entry.splitlines() or [""])
    )
    return comments + body
