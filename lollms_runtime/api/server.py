"""The FastAPI application of the OpenAI-compatible API.

A turn runs on a worker thread (the engine's events are a plain iterator) and its events cross to
the event loop through a queue; a client that goes away sets the turn's cancel event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import logging
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..conversation import ConversationService, Turn
from ..errors import LollmsError
from ..personality import Personality
from ..store import StoreError
from .completion import Completion, pump
from .errors import APIError, bad
from .requests import ChatRequest, check_sampling, check_settings, parse_chat_request, parse_json

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20
MAX_RUNNING_TURNS = 16
KEYS_ENV = "LOLLMS_API_KEYS"
# For clients that can add a header but not a body field (e.g. a custom-headers setting): the
# discussion to save the turn into, as the `discussion` field; the answer names it back.
DISCUSSION_HEADER = "X-Lollms-Discussion"


@dataclasses.dataclass
class APIConfig:
    """How the API is exposed: its keys (none: loopback clients only) and its limits."""

    keys: Sequence[str] = ()
    max_body_bytes: int = MAX_BODY_BYTES
    max_running_turns: int = MAX_RUNNING_TURNS


def refusal_to_expose(host: str, keys: Sequence[str]) -> str:
    """Why the API must not start on ``host`` (empty when it may)."""
    if keys or _loopback(host):
        return ""
    return (
        f"the API would answer anyone who reaches {host} without a key: give --api-key KEY "
        f"(or set {KEYS_ENV}), or serve on 127.0.0.1"
    )


def _loopback(host: str | None) -> bool:
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class _Turns:
    """Bounds how many API turns run at once; past it the client is told to come back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            if self.running >= self.limit:
                raise APIError(
                    503,
                    f"busy: {self.running} turns are running; try again in a few seconds",
                    code="busy",
                    retry_after=2,
                )
            self.running += 1

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


def create_api(
    service: ConversationService, artifacts_root: Path, config: APIConfig | None = None
) -> FastAPI:
    """The API as a FastAPI app over the conversation service (``lollms serve`` mounts the web
    app on the same one). Painted files are served from ``artifacts_root`` (the store's)."""
    config = config or APIConfig()
    runtime = service.runtime
    app = FastAPI(
        title="lollms-runtime",
        summary="Every personality as an OpenAI-compatible model.",
        version="1",
        docs_url="/v1/docs",
        openapi_url="/v1/openapi.json",
        redoc_url=None,
    )
    turns = _Turns(config.max_running_turns)
    keys = [k.encode() for k in config.keys if k]

    def authorize(request: Request) -> None:
        if not keys:
            host = request.client.host if request.client else None
            if not _loopback(host):
                raise APIError(
                    403, "this API answers only on loopback when no API key is configured"
                )
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # Compare with every key, always, so the time taken says nothing about which matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            what = "a wrong API key" if given else "no API key"
            raise APIError(401, f"{what}: send 'Authorization: Bearer KEY'", code="invalid_api_key")

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        error = bad(f"invalid request: {exc.errors()[:1]}")
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        error = APIError(exc.status_code, str(exc.detail), code="not_found")
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("API request failed")
        error = APIError(500, "internal error: the server log has the details", code="internal")
        return JSONResponse(error.body(), status_code=500)

    def personality(model: str) -> Personality:
        if model not in runtime.catalog.ids():
            gone = next((e for e in runtime.catalog.unavailable if e.id == model), None)
            raise APIError(
                404,
                f"personality '{model}' {gone.unavailable}"  # its plugin is not installed
                if gone is not None
                else f"no personality '{model}': GET /v1/models lists them",
                "model",
                "model_not_found",
            )
        try:
            return runtime.catalog.get(model)
        except LollmsError as exc:
            raise APIError(404, f"personality '{model}' cannot be used: {exc}", "model") from None

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        authorize(request)
        data = []
        for entry in runtime.catalog.entries:
            try:
                data.append(_model(runtime.catalog.get(entry.id)))
            except LollmsError:
                continue  # a broken personality is listed by `lollms list`, not offered here
        return JSONResponse({"object": "list", "data": data})

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str, request: Request) -> Response:
        authorize(request)
        return JSONResponse(_model(personality(model_id)))

    @app.get("/v1/files/{name:path}")
    async def get_file(name: str, request: Request) -> Response:
        authorize(request)
        root = artifacts_root.resolve()
        target = (root / name).resolve()
        if ".." in Path(name).parts or not target.is_relative_to(root) or not target.is_file():
            raise APIError(404, "no such file", code="not_found")
        return FileResponse(target)

    @app.post(
        "/v1/chat/completions",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": _REQUEST}}}},
    )
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        raw = await _read_bounded(request, config.max_body_bytes)
        chat = parse_chat_request(parse_json(raw))
        named = request.headers.get(DISCUSSION_HEADER)
        if named is not None and chat.discussion is None:
            if not named.strip():
                raise bad(f'{DISCUSSION_HEADER} must be "new" or a discussion id', "discussion")
            chat.discussion = named.strip()
        target = personality(chat.model)
        check_sampling(chat.sampling)
        if "logit_bias" in chat.sampling:
            chat.sampling["logit_bias"] = {
                int(k): v for k, v in chat.sampling["logit_bias"].items()
            }
        settings = check_settings(target, chat.settings)
        if chat.system:
            conditioning = f"{target.conditioning.rstrip()}\n\n{chat.system}".strip()
            target = dataclasses.replace(target, conditioning=conditioning)
        discussion = _discussion(service, chat, target)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        completion = Completion(chat, cid, _file_url(request, artifacts_root))
        cancel = threading.Event()

        def admitted() -> Turn:
            """Off the event loop, in one hop (loading a model, indexing attached files are
            real work): a full model queue or too many turns is a 503 before anything is
            saved; a file that cannot be read, a 400 before the turn starts."""
            _check_model_queue(runtime, target)
            turns.enter()
            try:
                return _prepare(
                    service, chat, target, discussion, settings, cancel,
                    artifacts_root / "api" / cid,
                )  # fmt: skip
            except BaseException:
                turns.leave()
                raise

        turn = await asyncio.to_thread(admitted)
        completion.discussion_id = turn.discussion_id

        def start() -> Turn:
            return turn

        events = pump(start, cancel, turns.leave)
        saved = {DISCUSSION_HEADER: turn.discussion_id} if turn.discussion_id else {}
        if chat.stream:
            return StreamingResponse(
                completion.stream(events, cancel),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **saved},
            )
        return JSONResponse(await completion.whole(events, request, cancel), headers=saved)

    return app


def _discussion(service: ConversationService, chat: ChatRequest, target: Personality) -> str | None:
    """``None``: not saved; ``""``: a new discussion; else the saved discussion to continue."""
    if chat.discussion is None:
        return None
    if not service.keeps_discussions:
        raise bad("this server keeps no discussions", "discussion", "unsupported_value")
    if chat.discussion == "new":
        return ""
    try:
        saved = service.get(chat.discussion)
    except (LollmsError, StoreError):
        raise APIError(
            404, f"no discussion '{chat.discussion}'", "discussion", "not_found"
        ) from None
    if saved.personality_id != target.id:
        raise bad(
            f"discussion '{chat.discussion}' is with '{saved.personality_id}', not '{target.id}'",
            "discussion",
        )
    return saved.id


def _check_model_queue(runtime: Any, target: Personality) -> None:
    """503 at once when the model's own queue (batched MLX backends) is already full; the turn
    would be refused at its first generation, after the stream had started."""
    try:
        queue = getattr(runtime.engine.text_backend(target), "turns", None)
    except LollmsError:
        return  # the turn reports why the model cannot be used
    if (
        queue is not None
        and queue.running >= queue.max_running
        and queue.waiting >= queue.max_waiting
    ):
        raise APIError(
            503,
            f"busy: {queue.running} turns are running and {queue.waiting} waiting on the model; "
            "try again in a moment",
            code="busy",
            retry_after=max(1, math.ceil(queue.retry_after())),
        )


def _prepare(
    service: ConversationService,
    chat: ChatRequest,
    target: Personality,
    discussion: str | None,
    settings: dict[str, Any],
    cancel: threading.Event,
    folder: Path,
) -> Turn:
    """The turn, not yet running: in a saved discussion (a new one holding the sent history when
    ``discussion`` is empty) with its files attached, or unsaved with its files for this turn."""
    try:
        if discussion is None:
            return service.run_turn(
                target, chat.message, history=chat.history, settings=settings,
                sampling=chat.sampling, cancel=cancel, artifacts_dir=folder,
                attachments=chat.files,
            )  # fmt: skip
        did = discussion or service.new_with_history(target.id, chat.history).id
        try:
            for name, data in chat.files:
                service.attach(did, name, data)
        except LollmsError:
            if not discussion:
                service.delete(did)  # a new discussion that could not get its files: none
            raise
        return service.send(
            target, chat.message, discussion_id=did, settings=settings,
            sampling=chat.sampling, cancel=cancel,
        )  # fmt: skip
    except LollmsError as exc:
        raise bad(str(exc), "messages", "invalid_file" if chat.files else "invalid_value") from None


def _file_url(request: Request, root: Path) -> Callable[[Path], str]:
    base = str(request.base_url).rstrip("/")

    def url(path: Path) -> str:
        return f"{base}/v1/files/{path.resolve().relative_to(root.resolve()).as_posix()}"

    return url


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is over {limit} bytes", code="too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"the request body is over {limit} bytes", code="too_large")
    return bytes(body)


def _model(p: Personality) -> dict[str, Any]:
    created = int(p.source.stat().st_mtime) if p.source.exists() else 0
    return {
        "id": p.id,
        "object": "model",
        "created": created,
        "owned_by": p.author or "lollms-runtime",
        "name": p.name,
        "description": p.description.strip(),
        "version": p.version,
        "category": p.category,
        "settings": {name: s.default for name, s in p.settings.items()},
    }


_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "description": "A personality id (GET /v1/models)."},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant"]},
                    "content": {"anyOf": [{"type": "string"}, {"type": "array"}]},
                },
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "max_tokens": {"type": "integer"},
        "max_completion_tokens": {"type": "integer"},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "seed": {"type": "integer"},
        "presence_penalty": {"type": "number"},
        "frequency_penalty": {"type": "number"},
        "logit_bias": {"type": "object"},
        "top_k": {"type": "integer", "description": "Extra: sample among the k most likely."},
        "min_p": {"type": "number", "description": "Extra: minimum probability ratio."},
        "repetition_penalty": {"type": "number", "description": "Extra."},
        "settings": {"type": "object", "description": "Extra: the personality's own settings."},
        "trace": {"type": "boolean", "description": "Extra: return the pipeline's step trace."},
    },
}
