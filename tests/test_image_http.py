"""The HTTP image backends against stand-in A1111 and OpenAI-compatible servers on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lollms_runtime.backends.base import BackendUnavailable, ImageRequest
from lollms_runtime.image.remote import ImageServiceError, create_a1111, create_openai_images


def make_png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Painter:
    """Stand-in server state: scripted failures, what it received, a fake sampling progress."""

    failures: list[tuple[int, Any]] = field(default_factory=list)  # (status, body) served first
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    interrupted: threading.Event = field(default_factory=threading.Event)
    step: int = 0


class Handler(BaseHTTPRequestHandler):
    painter: Painter

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/sdapi/v1/progress"):
            self._send(200, {"progress": 0.5, "state": {"sampling_step": self.painter.step}})
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        painter = self.painter
        painter.requests.append((self.path, dict(self.headers), body))
        if self.path == "/sdapi/v1/interrupt":
            painter.interrupted.set()
            self._send(200, {})
            return
        if painter.failures:
            status, answer = painter.failures.pop(0)
            self._send(status, answer)
            return
        deadline = time.monotonic() + painter.delay
        while time.monotonic() < deadline and not painter.interrupted.is_set():
            painter.step += 1
            time.sleep(0.02)
        if self.path == "/sdapi/v1/txt2img":
            count = body["batch_size"]
            seed = 1234 if body["seed"] == -1 else body["seed"]
            images = [
                base64.b64encode(make_png(body["width"], body["height"], (i * 40, 0, 0))).decode()
                for i in range(count)
            ]
            info = {
                "seed": seed,
                "all_seeds": [seed + i for i in range(count)],
                "sd_model_name": "dreamshaper_8",
            }
            self._send(200, {"images": images, "parameters": body, "info": json.dumps(info)})
        elif self.path in ("/v1/images/generations", "/api/v1/images/generations"):
            width, height = (int(x) for x in body["size"].split("x"))
            data = [
                {
                    "b64_json": base64.b64encode(make_png(width, height, (0, 0, 90))).decode(),
                    "revised_prompt": body["prompt"] + ", vivid",
                }
                for _ in range(body["n"])
            ]
            self._send(200, {"created": 1, "data": data})
        else:
            self._send(404, {"detail": "Not Found"})


@pytest.fixture
def server() -> Iterator[tuple[str, Painter]]:
    painter = Painter()
    handler = type("BoundHandler", (Handler,), {"painter": painter})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", painter
    httpd.shutdown()
    httpd.server_close()


def test_a1111_txt2img_shapes_and_seeds(server: tuple[str, Painter]) -> None:
    url, painter = server
    backend = create_a1111("dreamshaper_8", base_url=url, sampler="Euler a", auth="me:secret")
    request = ImageRequest(
        "a cat",
        negative_prompt="dog",
        width=96,
        height=64,
        steps=12,
        guidance=6.0,
        seed=42,
        count=2,
    )
    images = backend.generate(request)
    path, headers, body = painter.requests[0]
    assert path == "/sdapi/v1/txt2img"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"me:secret").decode()
    assert {
        k: body[k]
        for k in (
            "prompt",
            "negative_prompt",
            "steps",
            "cfg_scale",
            "width",
            "height",
            "seed",
            "batch_size",
            "sampler_name",
        )
    } == {
        "prompt": "a cat",
        "negative_prompt": "dog",
        "steps": 12,
        "cfg_scale": 6.0,
        "width": 96,
        "height": 64,
        "seed": 42,
        "batch_size": 2,
        "sampler_name": "Euler a",
    }
    assert body["override_settings"] == {"sd_model_checkpoint": "dreamshaper_8"}
    assert [(i.width, i.height) for i in images] == [(96, 64), (96, 64)]
    assert [i.params["seed"] for i in images] == [42, 43]
    assert images[0].params["model"] == "dreamshaper_8"
    assert images[0].png != images[1].png


def test_a1111_random_seed_is_sent_as_minus_one_and_read_back(
    server: tuple[str, Painter], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, painter = server
    monkeypatch.setenv("LOLLMS_A1111_URL", url)
    [image] = create_a1111().generate(ImageRequest("sky", width=64, height=64))
    assert painter.requests[0][2]["seed"] == -1
    assert "override_settings" not in painter.requests[0][2]
    assert image.params["seed"] == 1234


def test_openai_images_shapes_key_and_base_urls(
    server: tuple[str, Painter], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, painter = server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LOLLMS_OPENAI_IMAGE_URL", url)
    images = create_openai_images("dall-e-2").generate(
        ImageRequest("a fox", width=256, height=256, count=2)
    )
    path, headers, body = painter.requests[0]
    assert path == "/v1/images/generations"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body == {
        "model": "dall-e-2",
        "prompt": "a fox",
        "n": 2,
        "size": "256x256",
        "response_format": "b64_json",
    }
    assert [(i.width, i.height) for i in images] == [(256, 256)] * 2
    assert images[0].params["revised_prompt"] == "a fox, vivid"
    # A base URL that already ends in /v1 (the OpenAI SDK convention) is not doubled.
    backend = create_openai_images(base_url=url + "/api/v1", api_key="other")
    backend.generate(ImageRequest("a fox", width=64, height=64))
    path, headers, body = painter.requests[1]
    assert path == "/api/v1/images/generations"
    assert headers["Authorization"] == "Bearer other"
    assert body["model"] == "gpt-image-1" and "response_format" not in body


def test_server_errors_are_retried_with_backoff(server: tuple[str, Painter]) -> None:
    url, painter = server
    painter.failures = [(500, {"error": "CUDA hiccup"}), (503, b"busy")]
    backend = create_a1111(base_url=url, retries=2, backoff=0.05)
    started = time.monotonic()
    images = backend.generate(ImageRequest("a cat", width=64, height=64))
    assert len(images) == 1
    assert len(painter.requests) == 3
    assert time.monotonic() - started >= 0.05 + 0.1  # two waits, the second one doubled


def test_server_errors_to_the_end_name_the_last_one(server: tuple[str, Painter]) -> None:
    url, painter = server
    painter.failures = [(502, {"detail": "bad gateway"})] * 3
    backend = create_openai_images(base_url=url, retries=1, backoff=0.01)
    with pytest.raises(ImageServiceError, match=r"failed 2 time\(s\), last with HTTP 502: bad"):
        backend.generate(ImageRequest("a cat"))
    assert len(painter.requests) == 2


def test_client_errors_are_not_retried_and_explained(server: tuple[str, Painter]) -> None:
    url, painter = server
    painter.failures = [(400, {"error": {"message": "size must be 1024x1024", "type": "invalid"}})]
    backend = create_openai_images(base_url=url, api_key="k", retries=3, backoff=0.01)
    with pytest.raises(ImageServiceError) as caught:
        backend.generate(ImageRequest("a cat"))
    assert str(caught.value) == (
        f"OpenAI-compatible image API at {url}/v1/images/generations rejected the request "
        "(HTTP 400): size must be 1024x1024."
    )
    assert len(painter.requests) == 1
    painter.failures = [(401, {"error": {"message": "Incorrect API key"}})]
    with pytest.raises(ImageServiceError, match=r"Check the API key .*OPENAI_API_KEY"):
        backend.generate(ImageRequest("a cat"))


def test_a1111_without_api_flag_gets_a_hint(server: tuple[str, Painter]) -> None:
    url, _ = server
    backend = create_a1111(base_url=url + "/nothing-here", retries=0)
    with pytest.raises(ImageServiceError, match=r"HTTP 404.*start it with --api"):
        backend.generate(ImageRequest("a cat"))


def test_slow_server_times_out_without_retrying(server: tuple[str, Painter]) -> None:
    url, painter = server
    painter.delay = 1.0
    backend = create_a1111(base_url=url, timeout=0.2, retries=2, backoff=0.01, poll_interval=0)
    with pytest.raises(ImageServiceError, match=r"did not answer within 0.2 s\. Raise"):
        backend.generate(ImageRequest("a cat"))
    assert len(painter.requests) == 1


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = create_a1111(base_url=f"http://127.0.0.1:{port}", retries=1, backoff=0.01)
    with pytest.raises(BackendUnavailable, match=r"Cannot reach AUTOMATIC1111 API .* 2 attempt"):
        backend.generate(ImageRequest("a cat"))


def test_a1111_progress_is_polled_and_cancel_interrupts(server: tuple[str, Painter]) -> None:
    url, painter = server
    painter.delay = 0.5
    events: list[tuple[int, int]] = []
    backend = create_a1111(base_url=url, poll_interval=0.05)
    backend.generate(
        ImageRequest("a cat", width=64, height=64, steps=1000),
        progress=lambda s, t: events.append((s, t)),
    )
    assert len(events) >= 2 and events[-1] == (1000, 1000)
    assert [s for s, _ in events] == sorted(s for s, _ in events)

    painter.delay = 5.0
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    assert backend.generate(ImageRequest("a cat", width=64, height=64), cancel=cancel) == []
    assert painter.interrupted.is_set()
    assert time.monotonic() - started < 4.0


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"a1111 does not take option.*colour"):
        create_a1111(colour="red")
