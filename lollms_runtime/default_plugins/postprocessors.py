"""The built-in post_process operations. Each takes the text (or value) and returns the new one."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from .. import patterns
from ..contracts import PostProcessor
from ..plugins import hookimpl

NONE = {"type": "null"}


class OperationError(ValueError):
    """An operation could not apply to its input; the message says why."""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if value is not None else ""


def strip(value: Any, args: Any, ctx: Any) -> str:
    return _text(value).strip()


def first_paragraph(value: Any, args: Any, ctx: Any) -> str:
    text = _text(value).strip()
    return re.split(r"\n\s*\n", text, maxsplit=1)[0].strip()


_SENTENCE_END = re.compile(r"[.!?…](?:[\"')\]]*)(?=\s|$)")


def truncate_sentence(value: Any, args: Any, ctx: Any) -> str:
    """Cut after the last complete sentence (within ``args`` characters when given)."""
    text = _text(value).strip()
    if isinstance(args, int):
        text = text[:args]
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else text


def truncate(value: Any, args: Any, ctx: Any) -> str:
    return _text(value)[: int(args)]


def remove_prefix(value: Any, args: Any, ctx: Any) -> str:
    text = _text(value).lstrip()
    for prefix in [args] if isinstance(args, str) else list(args):
        if text.lower().startswith(prefix.lower()):
            return text[len(prefix) :].lstrip()
    return text


def remove_suffix(value: Any, args: Any, ctx: Any) -> str:
    text = _text(value).rstrip()
    for suffix in [args] if isinstance(args, str) else list(args):
        if text.lower().endswith(suffix.lower()):
            return text[: -len(suffix)].rstrip()
    return text


def _flags(names: str) -> int:
    table = {"i": patterns.IGNORECASE, "m": patterns.MULTILINE, "s": patterns.DOTALL}
    flags = 0
    for ch in names:
        flags |= table[ch]
    return flags


def regex_replace(value: Any, args: Any, ctx: Any) -> str:
    # A personality's pattern on a model's text: run with a time limit (see patterns.py).
    try:
        return patterns.sub(
            args["pattern"],
            str(args.get("replacement", "")),
            _text(value),
            _flags(args.get("flags", "")),
        )
    except patterns.PatternTimeout as exc:
        raise OperationError(str(exc)) from None


def regex_extract(value: Any, args: Any, ctx: Any) -> str:
    spec = {"pattern": args} if isinstance(args, str) else args
    try:
        match = patterns.search(spec["pattern"], _text(value), _flags(spec.get("flags", "")))
    except patterns.PatternTimeout as exc:
        raise OperationError(str(exc)) from None
    if match is None:
        if "default" in spec:
            return str(spec["default"])
        raise OperationError(f"no match for /{spec['pattern']}/")
    group = spec.get("group", 1 if match.re.groups else 0)
    return str(match.group(group) or "")


_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(value: Any, args: Any, ctx: Any) -> str:
    """The first fenced code block (of the given language when one is named)."""
    language = (args or {}).get("language") if isinstance(args, dict) else args
    for match in _FENCE.finditer(_text(value)):
        if not language or match.group(1).lower() == str(language).lower():
            return match.group(2).rstrip("\n")
    raise OperationError(
        f"no ```{language or ''} code block found" if language else "no fenced code block found"
    )


def extract_json(value: Any, args: Any, ctx: Any) -> Any:
    """The first JSON object or array in the text (fenced or bare), checked against ``schema``."""
    text = _text(value)
    with contextlib.suppress(OperationError):
        text = extract_code(text, None, ctx)
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch in "{["):
        try:
            data, _ = decoder.raw_decode(text, start)
            break
        except json.JSONDecodeError:
            continue
    else:
        raise OperationError("no JSON object or array found in the text")
    schema = (args or {}).get("schema") if isinstance(args, dict) else None
    if schema:
        import jsonschema

        try:
            jsonschema.validate(data, schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(map(str, exc.absolute_path)) or "the top level"
            raise OperationError(
                f"the JSON does not match the schema at {where}: {exc.message}"
            ) from None
    return data


def template(value: Any, args: Any, ctx: Any) -> str:
    """Render a template with the step context plus ``text`` (the input)."""
    return str(ctx.render(args, {"text": value}))


OPERATIONS = (
    PostProcessor("strip", strip, NONE, "Remove surrounding whitespace."),
    PostProcessor("first_paragraph", first_paragraph, NONE, "Keep the first paragraph."),
    PostProcessor(
        "truncate_sentence",
        truncate_sentence,
        {"type": ["integer", "null"], "minimum": 1},
        "Cut after the last complete sentence (within N characters when given).",
    ),
    PostProcessor(
        "truncate", truncate, {"type": "integer", "minimum": 1}, "Keep the first N characters."
    ),
    PostProcessor(
        "remove_prefix",
        remove_prefix,
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "Remove a leading prefix such as 'Assistant:' (case-insensitive).",
    ),
    PostProcessor(
        "remove_suffix",
        remove_suffix,
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "Remove a trailing suffix.",
    ),
    PostProcessor(
        "regex_replace",
        regex_replace,
        {
            "type": "object",
            "required": ["pattern"],
            "additionalProperties": False,
            "properties": {
                "pattern": {"type": "string", "format": "regex"},
                "replacement": {"type": "string"},
                "flags": {"type": "string", "pattern": "^[ims]*$"},
            },
        },
        "Replace every match of a regular expression.",
    ),
    PostProcessor(
        "regex_extract",
        regex_extract,
        {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "required": ["pattern"],
                    "additionalProperties": False,
                    "properties": {
                        "pattern": {"type": "string"},
                        "group": {"type": ["integer", "string"]},
                        "flags": {"type": "string", "pattern": "^[ims]*$"},
                        "default": {"type": "string"},
                    },
                },
            ]
        },
        "Keep the first match (its first group when it has one).",
    ),
    PostProcessor(
        "extract_code",
        extract_code,
        {
            "anyOf": [
                {"type": "null"},
                {"type": "string"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"language": {"type": "string"}},
                },
            ]
        },
        "Keep the content of the first fenced code block (of a language when named).",
    ),
    PostProcessor(
        "extract_json",
        extract_json,
        {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"schema": {"type": "object"}},
                },
            ]
        },
        "Parse the first JSON value in the text, optionally checked against a JSON Schema.",
    ),
    PostProcessor(
        "template",
        template,
        {"type": "string"},
        "Render a Jinja2 template; the input is available as text.",
        template=True,
        names=("text",),
    ),
)


@hookimpl
def register_postprocessors(register: Any) -> None:
    for op in OPERATIONS:
        register(op)
