"""HTTP image backends: AUTOMATIC1111 / Forge (``/sdapi/v1/txt2img``) and OpenAI-compatible
(``/v1/images/generations``), on the standard library's urllib.

Settings come from options, else the environment:

* ``LOLLMS_A1111_URL`` (default ``http://127.0.0.1:7860``), ``LOLLMS_A1111_AUTH`` (``user:password``
  for a server started with ``--api-auth``);
* ``LOLLMS_OPENAI_IMAGE_URL`` (default ``https://api.openai.com/v1``), ``LOLLMS_OPENAI_IMAGE_KEY``
  or else ``OPENAI_API_KEY``, ``LOLLMS_OPENAI_IMAGE_MODEL`` (default ``gpt-image-1``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import (
    BackendUnavailable,
    GeneratedImage,
    ImageRequest,
    ProgressCallback,
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageServiceError(RuntimeError):
    """The image server answered with an error retrying will not fix (a 4xx, or 5xx to the end)."""


@dataclass(frozen=True)
class HttpClient:
    """JSON over HTTP with a timeout and retries (exponential backoff) on 5xx/connection errors."""

    base_url: str
    service: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    retries: int = 2
    backoff: float = 1.0
    setting_hint: str = ""

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def request(self, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        """POST ``payload`` (or GET when None) and return the decoded JSON answer."""
        url = self.url(path)
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        headers = {"Accept": "application/json", **self.headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                # Exponential backoff with jitter so that several clients do not retry in step.
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + random.random() / 4))
            request = urllib.request.Request(url, data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code >= 500:
                    last_problem = f"HTTP {exc.code}: {detail}"
                    continue
                raise ImageServiceError(
                    f"{self.service} at {url} rejected the request (HTTP {exc.code}): {detail}"
                    f"{_hint_for(exc.code, self.setting_hint)}"
                ) from exc
            except TimeoutError as exc:
                raise self._timeout(url) from exc
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError | socket.timeout):
                    raise self._timeout(url) from exc
                last_problem = str(exc.reason)
                continue
            except (ConnectionError, OSError) as exc:  # reset or closed mid-answer
                last_problem = f"{type(exc).__name__}: {exc}"
                continue
            try:
                return json.loads(body)
            except json.JSONDecodeError as exc:
                raise ImageServiceError(
                    f"{self.service} at {url} answered with something that is not JSON "
                    f"({body[:80]!r}); is {self.base_url} the right address?{self._hint()}"
                ) from exc
        attempts = self.retries + 1
        if last_problem.startswith("HTTP "):
            raise ImageServiceError(
                f"{self.service} at {url} failed {attempts} time(s), last with {last_problem}. "
                "Check the server's log."
            )
        raise BackendUnavailable(
            f"Cannot reach {self.service} at {url} ({last_problem}) after {attempts} attempt(s). "
            f"Start the server or point lollms to it.{self._hint()}"
        )

    def _hint(self) -> str:
        return f" ({self.setting_hint})" if self.setting_hint else ""

    def _timeout(self, url: str) -> ImageServiceError:
        # Not retried: the server may still be painting, and a retry would queue the work twice.
        return ImageServiceError(
            f"{self.service} at {url} did not answer within {self.timeout:g} s. "
            "Raise the backend's `timeout` option, or ask for fewer steps or a smaller size."
        )


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read().decode("utf-8", "replace")
    except Exception:  # the body is a courtesy; the status code is the error
        return exc.reason if isinstance(exc.reason, str) else ""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip()[:300] or str(exc.reason)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("detail", "error", "message", "errors"):
            if data.get(key):
                return str(data[key])[:300]
    return raw.strip()[:300]


def _hint_for(code: int, setting_hint: str) -> str:
    if code in (401, 403):
        return f". Check the API key or credentials ({setting_hint})."
    if code == 404:
        return f". Check the base URL ({setting_hint}); for A1111 start it with --api."
    return "."


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    if not png.startswith(_PNG_SIGNATURE) or len(png) < 24:
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _as_png(raw_b64: str, service: str) -> tuple[bytes, int, int]:
    if raw_b64.startswith("data:"):
        raw_b64 = raw_b64.split(",", 1)[-1]
    try:
        data = base64.b64decode(raw_b64, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageServiceError(f"{service} sent an image that is not valid base64") from exc
    if not data.startswith(_PNG_SIGNATURE):
        data = _reencode_png(data, service)
    width, height = png_size(data)
    return data, width, height


def _reencode_png(data: bytes, service: str) -> bytes:
    """Servers configured for JPEG or WebP: keep every artifact a PNG."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            return buffer.getvalue()
    except UnidentifiedImageError as exc:
        raise ImageServiceError(f"{service} sent image data lollms cannot read") from exc


def _option_float(value: Any, default: float) -> float:
    return default if value is None else float(value)


@dataclass
class A1111Backend:
    """AUTOMATIC1111 / Forge ``POST /sdapi/v1/txt2img``; progress polled from its /progress."""

    client: HttpClient
    model_id: str = (
        ""  # a checkpoint title for override_settings; "" keeps the server's current one
    )
    sampler: str | None = None
    poll_interval: float = 1.0  # seconds between progress polls; 0 disables polling
    name: str = "a1111"

    def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """Paint ``request.count`` images on the server; a cancelled generation returns none."""
        model = request.model or self.model_id
        payload: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "steps": request.steps,
            "cfg_scale": request.guidance,
            "width": request.width,
            "height": request.height,
            "seed": -1 if request.seed is None else request.seed,
            "batch_size": max(1, request.count),
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
        }
        if self.sampler:
            payload["sampler_name"] = self.sampler
        if model:
            payload["override_settings"] = {"sd_model_checkpoint": model}
        done = threading.Event()
        watcher = None
        if (progress is not None or cancel is not None) and self.poll_interval > 0:
            watcher = threading.Thread(
                target=self._watch, args=(request.steps, progress, cancel, done), daemon=True
            )
            watcher.start()
        try:
            answer = self.client.request("/sdapi/v1/txt2img", payload)
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
        if cancel is not None and cancel.is_set():
            return []
        if progress is not None:
            progress(request.steps, request.steps)
        return self._images(answer, request, model)

    def _watch(
        self,
        steps: int,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        done: threading.Event,
    ) -> None:
        """Report the server's sampling step and send ``/interrupt`` when ``cancel`` is set."""
        poller = HttpClient(
            self.client.base_url, self.client.service, self.client.headers, timeout=10, retries=0
        )
        last = 0
        while not done.wait(self.poll_interval):
            try:
                if cancel is not None and cancel.is_set():
                    poller.request("/sdapi/v1/interrupt", {})
                    return
                state = poller.request("/sdapi/v1/progress?skip_current_image=true")
            except (ImageServiceError, BackendUnavailable):
                continue  # progress is best effort; the generation request reports real failures
            step = int((state.get("state") or {}).get("sampling_step") or 0)
            if progress is not None and 0 < step < steps and step > last:
                last = step
                progress(step, steps)

    def _images(self, answer: Any, request: ImageRequest, model: str) -> list[GeneratedImage]:
        images = answer.get("images") if isinstance(answer, dict) else None
        if not isinstance(images, list) or not images:
            raise ImageServiceError(
                f"{self.client.service} answered without images: {answer!r:.200}"
            )
        info: dict[str, Any] = {}
        raw_info = answer.get("info")
        if isinstance(raw_info, str):
            try:
                parsed = json.loads(raw_info)
                info = parsed if isinstance(parsed, dict) else {}
            except json.JSONDecodeError:
                info = {}
        seeds = info.get("all_seeds") or []
        result = []
        # A1111 may append extra images (grids, control maps): keep the first ``count``.
        for index, raw in enumerate(images[: max(1, request.count)]):
            png, width, height = _as_png(raw, self.client.service)
            seed = seeds[index] if index < len(seeds) else info.get("seed", request.seed)
            params = {
                "prompt": request.prompt,
                "negative_prompt": request.negative_prompt,
                "seed": seed,
                "steps": request.steps,
                "guidance": request.guidance,
                "model": info.get("sd_model_name") or model or None,
                "backend": self.name,
            }
            result.append(GeneratedImage(png=png, width=width, height=height, params=params))
        return result


@dataclass
class OpenAIImagesBackend:
    """OpenAI-compatible ``POST /v1/images/generations`` asking for ``b64_json`` answers."""

    client: HttpClient
    model_id: str = "gpt-image-1"
    name: str = "openai-images"

    def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """Paint ``request.count`` images; the API has no steps, seed or negative prompt."""
        if cancel is not None and cancel.is_set():
            return []
        model = request.model or self.model_id
        payload: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "n": max(1, request.count),
            "size": f"{request.width}x{request.height}",
        }
        if not model.startswith("gpt-image"):
            # gpt-image-* always answer in base64 and reject the field; others default to URLs.
            payload["response_format"] = "b64_json"
        path = (
            "/images/generations"
            if self.client.base_url.rstrip("/").endswith("/v1")
            else ("/v1/images/generations")
        )
        answer = self.client.request(path, payload)
        if cancel is not None and cancel.is_set():
            return []
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not data:
            raise ImageServiceError(
                f"{self.client.service} answered without images: {answer!r:.200}"
            )
        result = []
        for item in data:
            raw = item.get("b64_json") if isinstance(item, dict) else None
            if not isinstance(raw, str):
                raise ImageServiceError(
                    f"{self.client.service} answered with an image URL instead of b64_json; "
                    "use a server that supports response_format=b64_json."
                )
            png, width, height = _as_png(raw, self.client.service)
            params = {
                "prompt": request.prompt,
                "revised_prompt": item.get("revised_prompt"),
                "model": model,
                "backend": self.name,
            }
            result.append(GeneratedImage(png=png, width=width, height=height, params=params))
        if progress is not None:
            progress(1, 1)
        return result


_CLIENT_OPTIONS = ("timeout", "retries", "backoff")


def _client_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "timeout": _option_float(options.get("timeout"), 600.0),
        "retries": int(options.get("retries", 2)),
        "backoff": _option_float(options.get("backoff"), 1.0),
    }


def _check_options(backend: str, options: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"{backend} does not take option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(known))}"
        )


A1111_DEFAULT_URL = "http://127.0.0.1:7860"
OPENAI_IMAGES_DEFAULT_URL = "https://api.openai.com/v1"


def a1111_endpoint(options: Mapping[str, Any]) -> tuple[str, dict[str, str], bool]:
    """Where the A1111 API is and the headers it takes: the options, else the environment (see
    the module docstring); and whether its address was given at all (not the default)."""
    given = options.get("base_url") or os.environ.get("LOLLMS_A1111_URL")
    headers: dict[str, str] = {}
    auth = options.get("auth") or os.environ.get("LOLLMS_A1111_AUTH")
    if auth:
        token = base64.b64encode(str(auth).encode("utf-8")).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return str(given or A1111_DEFAULT_URL), headers, bool(given)


def openai_images_endpoint(options: Mapping[str, Any]) -> tuple[str, dict[str, str], bool]:
    """Where the OpenAI-compatible image API is and its headers (the options, else the
    environment); and whether an address or a key was given at all."""
    given = options.get("base_url") or os.environ.get("LOLLMS_OPENAI_IMAGE_URL")
    key = (
        options.get("api_key")
        or os.environ.get("LOLLMS_OPENAI_IMAGE_KEY")
        or os.environ.get("OPENAI_API_KEY")
    )
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return str(given or OPENAI_IMAGES_DEFAULT_URL), headers, bool(given or key)


def create_a1111(model: str | None = None, **options: Any) -> A1111Backend:
    """Factory: ``create(model, base_url=, auth=, timeout=, retries=, backoff=, sampler=, ...)``."""
    _check_options(
        "a1111", options, {"base_url", "auth", "sampler", "poll_interval", *_CLIENT_OPTIONS}
    )
    base_url, headers, _given = a1111_endpoint(options)
    client = HttpClient(
        base_url,
        "AUTOMATIC1111 API",
        headers,
        setting_hint="option base_url or LOLLMS_A1111_URL, auth or LOLLMS_A1111_AUTH",
        **_client_options(options),
    )
    return A1111Backend(
        client=client,
        model_id=model or "",
        sampler=options.get("sampler"),
        poll_interval=_option_float(options.get("poll_interval"), 1.0),
    )


def create_openai_images(model: str | None = None, **options: Any) -> OpenAIImagesBackend:
    """Factory: ``create(model, base_url=, api_key=, timeout=, retries=, backoff=)``."""
    _check_options("openai-images", options, {"base_url", "api_key", *_CLIENT_OPTIONS})
    base_url, headers, _given = openai_images_endpoint(options)
    client = HttpClient(
        base_url,
        "OpenAI-compatible image API",
        headers,
        setting_hint=(
            "option base_url or LOLLMS_OPENAI_IMAGE_URL, api_key or LOLLMS_OPENAI_IMAGE_KEY / "
            "OPENAI_API_KEY"
        ),
        **_client_options(options),
    )
    model_id = model or os.environ.get("LOLLMS_OPENAI_IMAGE_MODEL") or "gpt-image-1"
    return OpenAIImagesBackend(client=client, model_id=model_id)
