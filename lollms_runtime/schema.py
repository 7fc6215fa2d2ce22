"""The personality schema: the base file plus the fragments that step kinds and operations register."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .contracts import PostProcessor, StepKind

SCHEMA_VERSION = 1


@cache
def base_schema() -> dict[str, Any]:
    """``schemas/personality.schema.json`` (from the source tree, or the copy inside the wheel)."""
    source = Path(__file__).resolve().parent.parent / "schemas" / "personality.schema.json"
    if source.is_file():
        text = source.read_text(encoding="utf-8")
    else:
        text = (
            resources.files("lollms_runtime") / "schemas" / "personality.schema.json"
        ).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def step_body_schema(kind: StepKind, common: Mapping[str, Any]) -> dict[str, Any]:
    """A kind's fragment, with the options every step shares merged in when the kind takes them."""
    body = copy.deepcopy(dict(kind.schema))
    if kind.common and body.get("type") == "object":
        props = body.setdefault("properties", {})
        for name, spec in common.items():
            props.setdefault(name, spec)
    body.setdefault("description", kind.summary)
    return body


def build_schema(
    step_kinds: Mapping[str, StepKind], postprocessors: Mapping[str, PostProcessor]
) -> dict[str, Any]:
    """The complete schema for the installed plugins (what `lollms schema` prints)."""
    schema = copy.deepcopy(base_schema())
    defs = schema["$defs"]
    common = defs.pop("step_common")
    defs["step_common"] = {"type": "object", "properties": common}
    defs["step"]["properties"] = {
        name: step_body_schema(kind, common) for name, kind in sorted(step_kinds.items())
    }
    defs["operation"] = {
        "type": "object",
        "description": "One post-processing operation: a mapping with a single key, the operation.",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {
            name: {**dict(op.schema), "description": op.summary or op.schema.get("description", "")}
            for name, op in sorted(postprocessors.items())
        },
    }
    return schema
