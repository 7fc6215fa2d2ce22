"""A chat-completion request body -> what a turn runs on, checked field by field.

Pure functions over parsed JSON (no web framework here), so the rules are tested and fuzzed
directly. Every refusal is an :class:`APIError` naming the field, in OpenAI's words where they exist.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ..backends.base import ChatMessage
from ..jsonsafe import UnsafeJSON, loads
from ..personality import Personality
from .errors import APIError, bad

MAX_MESSAGES = 1000
MAX_STOP = 16
MAX_LOGIT_BIAS = 300
MAX_JSON_DEPTH = 32
MAX_FILES = 8

# OpenAI's sampling fields and the extras that vLLM, llama.cpp and mlx_lm.server also accept.
SAMPLING_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "repetition_context_size": "repetition_context_size",
}


@dataclass
class ChatRequest:
    """One validated request: the turn's message, its history and what overrides the personality."""

    model: str
    message: str
    history: tuple[ChatMessage, ...] = ()
    system: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    trace: bool = False
    user: str = ""
    discussion: str | None = None  # "new", or the id of a saved discussion to continue
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (name, data) from file parts


def parse_json(raw: bytes) -> Any:
    """The body as JSON; refuses what is not JSON, ``NaN``/``Infinity`` and runaway nesting."""
    try:
        return loads(raw, max_bytes=len(raw), max_depth=MAX_JSON_DEPTH)
    except UnsafeJSON as exc:
        raise bad(f"the request body is refused: {exc}", None, "invalid_json") from None


def parse_chat_request(body: Any) -> ChatRequest:
    """Check a parsed ``/v1/chat/completions`` body (the personality is checked later)."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad(
            "'model' is required: the id of a personality (GET /v1/models lists them)", "model"
        )
    n = body.get("n", 1)
    if n != 1:
        raise bad("only n=1 is supported", "n")
    if body.get("logprobs"):
        raise bad("logprobs are not returned by this server", "logprobs", "unsupported_value")
    files: list[tuple[str, bytes]] = []
    message, history, system = _messages(body.get("messages"), files)
    if len(files) > MAX_FILES:
        raise bad(f"at most {MAX_FILES} files per request", "messages", "too_many")
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad("'stream_options' must be an object", "stream_options")
    include_usage = bool(options and options.get("include_usage") is True)
    user = body.get("user", "")
    discussion = body.get("discussion")
    if discussion is not None and (not isinstance(discussion, str) or not discussion):
        raise bad("'discussion' must be \"new\" or the id of a saved discussion", "discussion")
    return ChatRequest(
        model=model,
        message=message,
        history=history,
        system=system,
        sampling=_sampling(body),
        settings=_object(body, "settings"),
        stream=stream,
        include_usage=include_usage,
        trace=_flag(body, "trace"),
        user=user if isinstance(user, str) else "",
        discussion=discussion,
        files=files,
    )


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be true or false", name)
    return value


def _object(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"'{name}' must be an object", name)
    return value


def _file_part(part: Mapping[str, Any], where: str) -> tuple[str, bytes]:
    """An OpenAI ``file`` content part: ``{"file": {"filename", "file_data"}}`` (base64 or a
    ``data:`` URL). Its text joins the discussion's index (the default chat retrieves from it)."""
    import base64
    import binascii

    file = part.get("file")
    if not isinstance(file, dict):
        raise bad("a file part needs a 'file' object", f"{where}.file")
    name = file.get("filename")
    data = file.get("file_data")
    if not isinstance(name, str) or not name.strip():
        raise bad("a file part needs a 'filename'", f"{where}.file.filename")
    if not isinstance(data, str):
        if "file_id" in file:
            raise bad(
                "uploaded file ids are not supported: send the file's content in 'file_data'",
                f"{where}.file.file_id",
                "unsupported_value",
            )
        raise bad("a file part needs 'file_data' (base64)", f"{where}.file.file_data")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return name, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad("'file_data' is not valid base64", f"{where}.file.file_data") from None


def _content(value: Any, where: str, files: list[tuple[str, bytes]] | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad("each content part must be an object with a 'type'", f"{where}[{i}]")
            if part["type"] == "file" and files is not None:
                files.append(_file_part(part, f"{where}[{i}]"))
                continue
            if part["type"] != "text":
                raise bad(
                    f"content parts of type '{part['type']}' are not supported: send text",
                    f"{where}[{i}].type",
                    "unsupported_value",
                )
            if not isinstance(part.get("text"), str):
                raise bad("a text part needs a 'text' string", f"{where}[{i}].text")
            parts.append(part["text"])
        return "\n".join(parts)
    raise bad("'content' must be a string or a list of text parts", where)


def _messages(
    value: Any, files: list[tuple[str, bytes]]
) -> tuple[str, tuple[ChatMessage, ...], str]:
    """(the turn's message, the history before it, the client's system text); files that user
    messages carry are added to ``files``."""
    if not isinstance(value, list) or not value:
        raise bad("'messages' must be a non-empty list", "messages")
    if len(value) > MAX_MESSAGES:
        raise APIError(413, f"at most {MAX_MESSAGES} messages per request", "messages", "too_many")
    system: list[str] = []
    history: list[ChatMessage] = []
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad("each message must be an object with 'role' and 'content'", where)
        role = item.get("role")
        text = _content(item.get("content"), f"{where}.content", files if role == "user" else None)
        if role in ("system", "developer"):
            if text.strip():
                system.append(text.strip())
        elif role in ("user", "assistant"):
            history.append(ChatMessage(role, text))
        else:
            raise bad(
                f"role {role!r} is not supported: use system, user or assistant",
                f"{where}.role",
                "unsupported_value",
            )
    if not history or history[-1].role != "user":
        raise bad("the last message (besides system ones) must be the user's", "messages")
    return history[-1].content, tuple(history[:-1]), "\n\n".join(system)


def _number(value: Any, name: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"'{name}' must be a number", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise bad(f"'{name}' must be a finite number", name)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise bad(f"'{name}' must be an integer", name)
        return int(value)
    return value


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling overrides, in the personality format's names (bounds checked later)."""
    out: dict[str, Any] = {}
    for name, target in SAMPLING_FIELDS.items():
        if body.get(name) is not None:
            kind = int if name in ("seed", "top_k", "repetition_context_size") else float
            out[target] = _number(body[name], name, kind)
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name wins
        if body.get(name) is not None:
            out["max_tokens"] = _number(body[name], name, int)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise bad("'stop' must be a non-empty string or a list of them", "stop")
        if len(stops) > MAX_STOP:
            raise bad(f"at most {MAX_STOP} stop strings", "stop")
        out["stop"] = list(stops)
    bias = body.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict) or len(bias) > MAX_LOGIT_BIAS:
            raise bad(
                f"'logit_bias' must map at most {MAX_LOGIT_BIAS} token ids to biases", "logit_bias"
            )
        out["logit_bias"] = {str(k): _number(v, f"logit_bias.{k}", float) for k, v in bias.items()}
    return out


@cache
def _sampling_validator() -> Any:
    """The personality schema's ``sampling`` validator, built once (not on every request)."""
    import jsonschema

    from ..schema import base_schema

    return jsonschema.Draft202012Validator(dict(base_schema()["$defs"]["sampling"]))


def check_sampling(overrides: Mapping[str, Any]) -> None:
    """The overrides within the bounds of the personality schema's ``sampling`` (one source)."""
    validator = _sampling_validator()
    for error in sorted(validator.iter_errors(dict(overrides)), key=lambda e: str(list(e.path))):
        where = ".".join(str(p) for p in error.absolute_path) or "sampling"
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }
        if error.validator in words:
            message = f"'{where}' must be {words[str(error.validator)]} {error.validator_value}"
            raise bad(f"{message} (got {error.instance})", where)
        raise bad(f"'{where}': {error.message}", where)


def check_settings(personality: Personality, values: Mapping[str, Any]) -> dict[str, Any]:
    """The personality's settings with the client's values, each checked against its schema."""
    for name in values:
        if name not in personality.settings:
            known = sorted(personality.settings)
            close = difflib.get_close_matches(name, known, n=1)
            hint = (
                f" (did you mean '{close[0]}'?)"
                if close
                else (f" (known: {', '.join(known)})" if known else " (it has none)")
            )
            raise bad(
                f"'{personality.id}' has no setting '{name}'{hint}", f"settings.{name}", "unknown"
            )
    try:
        return personality.resolve_settings(values)
    except ValueError as exc:
        wrong = next(iter(values), "")
        for name in values:
            if f"'{name}'" in str(exc):
                wrong = name
        raise bad(str(exc), f"settings.{wrong}") from None
