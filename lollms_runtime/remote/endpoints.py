"""Which OpenAI-compatible endpoint a model spec names: ``openai:URL#MODEL`` or an endpoint of the
models file (``$LOLLMS_HOME/models.yaml``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import LollmsError, PersonalityError, Problem

PREFIX = "openai:"
MODELS_FILE = "models.yaml"
ENDPOINT_KEYS = frozenset(
    {
        "url",
        "models",
        "api_key_env",
        "connect_timeout",
        "read_timeout",
        "retries",
        "extra_body",
        "server",
    }
)
# How each kind of server constrains an answer to a list of options (see remote/choose.py);
# "auto" works it out from the `owned_by` of GET /models.
SERVERS = ("auto", "vllm", "llama.cpp", "mlx_lm", "ollama", "lmstudio", "sglang", "openai")


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server and how to talk to it."""

    name: str  # the models file's name for it, or its URL for an inline spec
    url: str  # the base URL, ending in /v1 (or wherever /chat/completions lives)
    models: tuple[str, ...] = ()
    api_key_env: str = ""  # the environment variable holding the key (the key is never stored)
    connect_timeout: float = 5.0
    read_timeout: float = 120.0  # the longest wait for the next piece of the answer
    retries: int = 2  # attempts after the first, before the first token only
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    server: str = "auto"  # one of SERVERS

    @property
    def api_key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""


@dataclass(frozen=True)
class RemoteModel:
    """What a model spec resolves to: an endpoint and the model name sent in each request."""

    endpoint: Endpoint
    model: str

    @property
    def spec(self) -> str:
        return f"{PREFIX}{self.endpoint.url}#{self.model}"


def models_file() -> Path:
    from ..home import home

    return home() / MODELS_FILE


def load_endpoints(path: Path | None = None) -> dict[str, Endpoint]:
    """The endpoints named in the models file (none when it does not exist)."""
    from ..yamldoc import parse_yaml

    path = path or models_file()
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LollmsError(f"{path}: cannot read the models file: {exc}") from None
    doc = parse_yaml(text, str(path))
    data = doc.data
    hint = "see docs/remote.md for the format of the models file"
    if not isinstance(data, dict) or not isinstance(data.get("endpoints"), dict):
        raise PersonalityError(
            [doc.problem((), "the models file needs an 'endpoints:' mapping of names", hint)]
        )
    problems: list[Problem] = []
    found: dict[str, Endpoint] = {}
    for name, body in data["endpoints"].items():
        where: tuple[str | int, ...] = ("endpoints", name)
        if not isinstance(body, dict):
            problems.append(
                doc.problem(where, "an endpoint is a mapping with at least 'url'", hint)
            )
            continue
        for key in sorted(set(body) - ENDPOINT_KEYS):
            problems.append(
                doc.problem(
                    (*where, key),
                    f"unknown key '{key}'",
                    f"known keys: {', '.join(sorted(ENDPOINT_KEYS))}",
                    key=True,
                )
            )
        try:
            found[str(name)] = _endpoint(str(name), body)
        except _BadValue as exc:
            at = (*where, exc.key) if exc.key in body else where
            problems.append(doc.problem(at, str(exc), hint))
    if problems:
        raise PersonalityError(problems)
    return found


class _BadValue(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _endpoint(name: str, body: Mapping[str, Any]) -> Endpoint:
    try:
        url = check_url(body.get("url"))
    except ValueError as exc:
        raise _BadValue("url", str(exc)) from None
    models = body.get("models", [])
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise _BadValue("models", "'models' must be a list of model names")
    extra = body.get("extra_body", {})
    if not isinstance(extra, dict):
        raise _BadValue(
            "extra_body", "'extra_body' must be a mapping of fields sent with every request"
        )
    env = body.get("api_key_env", "")
    if not isinstance(env, str):
        raise _BadValue(
            "api_key_env", "'api_key_env' names an environment variable, e.g. OPENAI_API_KEY"
        )
    server = body.get("server", "auto")
    if server not in SERVERS:
        raise _BadValue("server", f"'server' must be one of {', '.join(SERVERS)}, got {server!r}")
    return Endpoint(
        name=name,
        server=server,
        url=url,
        models=tuple(models),
        api_key_env=env,
        connect_timeout=_positive(body, "connect_timeout", 5.0),
        read_timeout=_positive(body, "read_timeout", 120.0),
        retries=int(_positive(body, "retries", 2, allow_zero=True)),
        extra_body=dict(extra),
    )


def _positive(body: Mapping[str, Any], key: str, default: float, allow_zero: bool = False) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadValue(key, f"'{key}' must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value > 3600:
        raise _BadValue(key, f"'{key}' must be between {0 if allow_zero else 'above 0'} and 3600")
    return float(value)


def check_url(url: Any) -> str:
    """``url`` without a trailing slash, when it is an http(s) URL with a host."""
    if not isinstance(url, str) or not url:
        raise ValueError("a URL is required, e.g. http://127.0.0.1:8080/v1")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8080/v1")
    return url.rstrip("/")


def claims(spec: str) -> bool:
    """Whether ``spec`` names a remote model: ``openai:...`` or an endpoint of the models file."""
    if spec.startswith(PREFIX):
        return True
    name = spec.split("#", 1)[0]
    if not name or "/" in name or not models_file().is_file():
        return False
    try:
        return name in load_endpoints()
    except LollmsError:
        return False  # a broken models file is reported when the model is used, not here


def resolve(spec: str) -> RemoteModel:
    """The endpoint and model ``spec`` names.

    ``openai:URL#MODEL`` (the model may be left out when the server serves one), ``openai:NAME``,
    ``NAME`` or ``NAME#MODEL`` for an endpoint of the models file.
    """
    target = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    where, _, model = target.partition("#")
    if "://" in where:
        try:
            endpoint = Endpoint(name=check_url(where), url=check_url(where))
        except ValueError as exc:
            raise LollmsError(f"model {spec!r}: {exc}") from None
        endpoint = _with_file_settings(endpoint)
    else:
        endpoints = load_endpoints()
        if where not in endpoints:
            known = ", ".join(sorted(endpoints)) or f"none: {models_file()} does not name any"
            raise LollmsError(
                f"model {spec!r}: no endpoint named {where!r} (known: {known})",
            )
        endpoint = endpoints[where]
    model = model or (endpoint.models[0] if endpoint.models else "")
    return RemoteModel(endpoint, model)


def _with_file_settings(endpoint: Endpoint) -> Endpoint:
    """An inline URL the models file also names keeps the file's key, timeouts and retries."""
    try:
        endpoints = load_endpoints() if models_file().is_file() else {}
    except LollmsError:
        return endpoint
    for known in endpoints.values():
        if known.url == endpoint.url:
            return known
    return endpoint


def personality_may_use(spec: str) -> bool:
    """Whether a personality's ``recommended_model`` (untrusted data) may select remote ``spec``.

    Only endpoints the user named in the models file qualify: an inline ``openai:URL`` written by
    a personality's author would send the user's conversation to a server the author chose.
    """
    target = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    where = target.partition("#")[0]
    if not where or not models_file().is_file():
        return False
    try:
        endpoints = load_endpoints()
    except LollmsError:
        return False
    if "://" in where:
        try:
            url = check_url(where)
        except ValueError:
            return False
        return any(e.url == url for e in endpoints.values())
    return where in endpoints
