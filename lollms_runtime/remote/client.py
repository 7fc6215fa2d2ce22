"""HTTP for OpenAI-compatible servers: JSON calls and server-sent event streams, with timeouts and
retries (connection errors, 429 and 5xx) that happen only before the first token is out.

httpx is used directly rather than the ``openai`` SDK: it is already installed (gradio needs it),
and the backend needs what the SDK hides: the exact fields of a 400 (to drop a refused sampling
field and say so), the raw ``logprobs`` shapes of llama.cpp and mlx_lm.server, server-specific
request fields, and a stream it can close the moment a turn is cancelled.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..backends.base import BackendUnavailable
from .endpoints import Endpoint

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0
CANCEL_POLL = 0.05  # how often a stream waiting for the server looks at its cancel event


class RemoteError(BackendUnavailable):
    """The server cannot answer; the message says what happened and ``hint`` what to do."""

    def __init__(self, message: str, hint: str = "", status: int = 0) -> None:
        super().__init__(message)  # the engine shows ``hint`` on its own line
        self.hint = hint
        self.status = status
        self.detail = message


class RequestRefused(RemoteError):
    """A 400/422: the server understood the request and refused something in it."""


class Client:
    """One endpoint's HTTP client: created on first use, shared by the calls of one backend."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        backoff: float = 0.5,
        sleep: Callable[[float, threading.Event | None], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.backoff = backoff
        self._sleep = sleep or _sleep
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        import httpx

        with self._lock:
            if self._http is None:
                e = self.endpoint
                headers = {"Accept": "application/json"}
                if e.api_key:
                    headers["Authorization"] = f"Bearer {e.api_key}"
                self._http = httpx.Client(
                    base_url=e.url + "/",
                    headers=headers,
                    timeout=httpx.Timeout(e.read_timeout, connect=e.connect_timeout),
                    follow_redirects=False,
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def get_json(self, path: str) -> Any:
        """GET ``path`` (relative to the base URL) and decode its JSON body."""
        response = self._send("GET", path, None, None, stream=False)
        return _json_body(response, self.endpoint, path)

    def post_json(
        self, path: str, body: Mapping[str, Any], cancel: threading.Event | None = None
    ) -> Any:
        """POST ``body`` and decode the JSON answer (retried while the server cannot answer)."""
        response = self._send("POST", path, body, cancel, stream=False)
        return _json_body(response, self.endpoint, path)

    def stream_events(
        self, path: str, body: Mapping[str, Any], cancel: threading.Event | None = None
    ) -> Generator[dict[str, Any], None, None]:
        """POST ``body`` and yield each server-sent JSON event until ``[DONE]``.

        Closing the generator (or setting ``cancel``) closes the connection, which stops the
        generation on servers that watch for it. Retries happen only while opening the stream:
        once an event is out, a dropped connection is an error, never a silent second answer.
        """
        import httpx

        response = self._send("POST", path, body, cancel, stream=True)
        try:
            data: list[str] = []
            for line in _lines(response, cancel):
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.strip() or not data:
                    continue  # comments (keep-alives), "event:", "id:", stray blank lines
                # Servers put one JSON object per event; a multi-line one is complete once it
                # parses, or at the blank line that ends it (then it must parse).
                payload = "\n".join(data)
                if payload.strip() == "[DONE]":
                    return
                event = _decode_event(payload, self.endpoint, final=not line.startswith("data:"))
                if event is None:
                    continue
                data = []
                if isinstance(event.get("error"), dict | str):
                    raise RemoteError(
                        f"{self.endpoint.url} failed mid-answer: {_error_text(event)}",
                        "try again; if it keeps failing, look at the server's log",
                    )
                yield event
        except httpx.TimeoutException:
            raise RemoteError(
                f"the model server at {self.endpoint.url} stopped sending for "
                f"{self.endpoint.read_timeout:g} s in the middle of an answer",
                "raise read_timeout for this endpoint in models.yaml, or check the server",
            ) from None
        except httpx.TransportError as exc:
            raise RemoteError(
                f"the connection to {self.endpoint.url} broke in the middle of an answer "
                f"({type(exc).__name__})",
                "the server may have stopped; start it again and resend the message",
            ) from None
        finally:
            response.close()

    # -- one request, with retries ---------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        cancel: threading.Event | None,
        *,
        stream: bool,
    ) -> httpx.Response:
        import httpx

        attempts = 1 + max(0, self.endpoint.retries)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            if cancel is not None and cancel.is_set():
                raise RemoteError("cancelled before the server answered")
            try:
                request = self.http.build_request(
                    method, path, json=dict(body) if body is not None else None
                )
                response = self.http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise _unreachable(self.endpoint, exc, attempts) from None
                self._sleep(self._delay(attempt, None), cancel)
                continue
            except httpx.TimeoutException:
                if last:
                    raise RemoteError(
                        f"the model server at {self.endpoint.url} did not answer within "
                        f"{self.endpoint.read_timeout:g} s ({attempts} attempt(s))",
                        "it may be loading the model or overloaded: wait, or raise "
                        "read_timeout for this endpoint in models.yaml",
                    ) from None
                self._sleep(self._delay(attempt, None), cancel)
                continue
            except httpx.TransportError as exc:  # the server dropped the connection
                if last:
                    raise _unreachable(self.endpoint, exc, attempts) from None
                self._sleep(self._delay(attempt, None), cancel)
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_STATUSES and not last:
                wait = self._delay(attempt, response.headers.get("retry-after"))
                response.close()
                self._sleep(wait, cancel)
                continue
            raise _status_error(self.endpoint, response, path, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff (0.5 s, 1 s, 2 s... up to 8 s), or the server's Retry-After."""
        if retry_after:
            try:
                return min(max(0.0, float(retry_after)), MAX_RETRY_AFTER)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return float(min(self.backoff * (2**attempt), MAX_BACKOFF))


def _lines(response: httpx.Response, cancel: threading.Event | None) -> Iterator[str]:
    """The response's lines; with ``cancel``, read by a helper thread so that a cancelled turn
    returns at once even while the server sends nothing (a long prefill, a queued request)."""
    if cancel is None:
        yield from response.iter_lines()
        return
    lines: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        try:
            for line in response.iter_lines():
                lines.put(("line", line))
                if stop.is_set():
                    return
            lines.put(("end", None))
        except Exception as exc:  # handed to the reading side, which raises it
            lines.put(("error", exc))

    threading.Thread(target=read, name="lollms-remote-stream", daemon=True).start()
    try:
        while True:
            try:
                kind, value = lines.get(timeout=CANCEL_POLL)
            except queue.Empty:
                if cancel.is_set():
                    return
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            if cancel.is_set():
                return
            yield value
    finally:
        stop.set()


def _sleep(seconds: float, cancel: threading.Event | None) -> None:
    if cancel is not None:
        cancel.wait(seconds)  # a cancelled turn does not wait out the backoff
    else:
        time.sleep(seconds)


def _decode_event(payload: str, endpoint: Endpoint, *, final: bool) -> dict[str, Any] | None:
    """The JSON object of one event; ``None`` while a multi-line event is not complete yet."""
    try:
        event = json.loads(payload)
    except ValueError:
        if not final:
            return None
        raise RemoteError(
            f"{endpoint.url} sent an event that is not JSON: {payload[:120]!r}",
            "is this URL an OpenAI-compatible API? It usually ends in /v1",
        ) from None
    if not isinstance(event, dict):
        raise RemoteError(f"{endpoint.url} sent an unexpected event: {payload[:120]!r}")
    return event


def _json_body(response: httpx.Response, endpoint: Endpoint, path: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise RemoteError(
            f"{endpoint.url}/{path} answered with something that is not JSON "
            f"({response.text[:120]!r})",
            "is this URL an OpenAI-compatible API? It usually ends in /v1",
        ) from None
    finally:
        response.close()


def _unreachable(endpoint: Endpoint, exc: Exception, attempts: int) -> RemoteError:
    return RemoteError(
        f"cannot reach the model server at {endpoint.url} ({type(exc).__name__}; "
        f"{attempts} attempt(s))",
        "start the server (e.g. `mlx_lm.server --model MODEL --port 8080`), or fix the URL "
        "given to --model or in models.yaml",
    )


def _error_text(body: Any) -> str:
    """The message of an OpenAI-shaped (or llama.cpp/Ollama-shaped) error body."""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error is not None:
            return str(error)
    return str(body)


def _status_error(
    endpoint: Endpoint, response: httpx.Response, path: str, attempts: int
) -> RemoteError:
    status = response.status_code
    try:
        response.read()
        text = _error_text(response.json())
    except ValueError:
        text = response.text
    finally:
        response.close()
    text = " ".join(text.split())[:300] or response.reason_phrase
    where = f"{endpoint.url}/{path}"
    if status in (400, 422):
        return RequestRefused(f"{where} refused the request: {text}", "", status)
    if status in (401, 403):
        key = (
            f"check the key in ${endpoint.api_key_env}"
            if endpoint.api_key_env
            else "name the environment variable holding the key with api_key_env in models.yaml"
        )
        return RemoteError(f"{where} refused the key (HTTP {status}: {text})", key, status)
    if status == 404:
        return RemoteError(
            f"{where} was not found (HTTP 404: {text})",
            "check the URL (it usually ends in /v1) and the model name after '#'",
            status,
        )
    if status in RETRY_STATUSES:
        return RemoteError(
            f"{where} could not answer (HTTP {status}: {text}) after {attempts} attempt(s)",
            "the server is busy or failing: try again later, or look at its log",
            status,
        )
    return RemoteError(f"{where} failed (HTTP {status}: {text})", "", status)
