"""Which painters are ready, found without painting: the weights on disk for mlx-diffusion, a real
HTTP server on loopback for a1111 and openai-images; the side column's line for a personality
whose pipeline paints (and none for one that never paints)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from app_helpers import PERSONALITIES

from lollms_runtime.app.painters import Readiness, painters_of, painting_steps
from lollms_runtime.app.state import App
from lollms_runtime.contracts import ImageBackendFactory
from lollms_runtime.image import readiness, remote
from lollms_runtime.image.models import _REQUIRED_CONFIGS
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store

PAINTS_NESTED = """\
schema: 1
id: nested_painter
name: Nested painter
version: "1.0.0"
description: Paints under a condition, with a painter and model written in the step.
conditioning: You describe scenes.
pipeline:
  - generate: {id: description}
  - condition:
      if: "true"
      then:
        - text_to_image: {id: art, prompt: "{{ description }}", backend: a1111, model: my/sd}
  - reply: {text: "{{ description }}", images: ["{{ art }}"]}
"""


@pytest.fixture(autouse=True)
def no_painter_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "LOLLMS_A1111_URL",
        "LOLLMS_A1111_AUTH",
        "LOLLMS_OPENAI_IMAGE_URL",
        "LOLLMS_OPENAI_IMAGE_KEY",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOLLMS_MODELS_DIR", str(tmp_path / "home" / "models"))
    (tmp_path / "home" / "models").mkdir(parents=True)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    # Nothing listens on the A1111 default here: a closed loopback port.
    monkeypatch.setattr(remote, "A1111_DEFAULT_URL", f"http://127.0.0.1:{_closed_port()}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Answer]]]:
    handler = type("Handler", (_Answer,), {"status": 200, "paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_mlx_diffusion_is_ready_when_the_weights_are_on_disk(tmp_path: Path) -> None:
    assert readiness.mlx_diffusion_ready("someone/sd-model") == (
        "not ready: `lollms models pull someone/sd-model`"
    )
    folder = tmp_path / "home" / "models" / "someone--sd-model"
    for name in [
        *_REQUIRED_CONFIGS,
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    assert readiness.mlx_diffusion_ready("someone/sd-model") is None
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    assert "not ready" in str(readiness.mlx_diffusion_ready("someone/sd-model"))
    assert "not a complete diffusers folder" in str(readiness.mlx_diffusion_ready(str(folder)))


def test_a1111_is_ready_when_its_api_answers(
    monkeypatch: pytest.MonkeyPatch, http_server: tuple[str, type[_Answer]]
) -> None:
    url, handler = http_server
    assert readiness.a1111_ready() == "not configured (LOLLMS_A1111_URL)"
    monkeypatch.setenv("LOLLMS_A1111_URL", url + "/")
    assert readiness.a1111_ready() is None
    assert handler.paths == ["/sdapi/v1/samplers"]
    handler.status = 404  # the web UI without --api
    assert "start it with --api" in str(readiness.a1111_ready())
    monkeypatch.setenv("LOLLMS_A1111_URL", f"http://127.0.0.1:{_closed_port()}")
    assert str(readiness.a1111_ready()).startswith("not reachable at http://127.0.0.1:")


def test_a_server_that_never_answers_costs_only_the_short_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as silent:  # listens, never accepts nor answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("LOLLMS_A1111_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        assert "not reachable" in str(readiness.a1111_ready(timeout=0.3))
        assert time.monotonic() - start < 2.0


def test_openai_images_needs_a_key_or_a_server(
    monkeypatch: pytest.MonkeyPatch, http_server: tuple[str, type[_Answer]]
) -> None:
    url, handler = http_server
    assert readiness.openai_images_ready() == (
        "not configured (OPENAI_API_KEY or LOLLMS_OPENAI_IMAGE_URL)"
    )
    monkeypatch.setenv("LOLLMS_OPENAI_IMAGE_URL", url + "/v1")
    assert readiness.openai_images_ready() is None
    assert handler.paths == ["/v1/models"]
    handler.status = 401
    assert "refused the key" in str(readiness.openai_images_ready())


def test_painters_are_found_in_the_pipeline(tmp_path: Path) -> None:
    folder = tmp_path / "personalities" / "nested_painter"
    folder.mkdir(parents=True)
    (folder / "personality.yaml").write_text(PAINTS_NESTED)
    runtime = Runtime(personalities=[PERSONALITIES, tmp_path / "personalities"])
    kinds = runtime.host.step_kinds
    painting = {
        pid
        for pid in runtime.catalog.ids()
        if painting_steps(runtime.catalog.get(pid), kinds)
        and pid not in ("router",)  # changing elsewhere: may or may not paint
    }
    assert painting == {"gpt_for_art", "nested_painter"}
    nested = runtime.catalog.get("nested_painter")
    assert painters_of(nested, {}, "mlx-diffusion", kinds) == [("a1111", "my/sd")]
    art = runtime.catalog.get("gpt_for_art")
    # A painter chosen by a setting: each of its choices, with the model the settings name.
    assert painters_of(art, {"image_model": "my/other"}, "mlx-diffusion", kinds) == [
        ("mlx-diffusion", "my/other"),
        ("a1111", "my/other"),
        ("openai-images", "my/other"),
    ]
    assert painters_of(runtime.catalog.get("assistant"), {}, "mlx-diffusion", kinds) == []


def test_readiness_is_remembered_and_a_broken_check_does_not_break_the_line() -> None:
    calls: list[str | None] = []

    def ready(model: str | None) -> str | None:
        calls.append(model)
        return None if model == "good" else "not ready: fix it"

    def broken(model: str | None) -> str | None:
        raise RuntimeError("plugin bug")

    factories = {
        "p": ImageBackendFactory("p", create=lambda **_: None, ready=ready),  # type: ignore[arg-type,return-value]
        "b": ImageBackendFactory("b", create=lambda **_: None, ready=broken),  # type: ignore[arg-type,return-value]
        "silent": ImageBackendFactory("silent", create=lambda **_: None),  # type: ignore[arg-type,return-value]
    }
    checks = Readiness(factories, ttl=60)
    pairs = [("p", "good"), ("p", "bad"), ("b", None), ("silent", None), ("gone", None)]
    line = checks.line(pairs)
    assert line == (
        "**Painters**  \np — ready  \np — not ready: fix it  \n"
        "b — unknown: its check failed (RuntimeError)  \n"
        "silent — unknown: this painter cannot tell before it paints  \n"
        "gone — not installed (see `lollms plugins`)"
    )
    assert checks.line(pairs) == line and sorted(map(str, calls)) == ["bad", "good"]
    assert checks.line([]) == ""
    Readiness(factories, ttl=0).line([("p", "good")])
    assert len(calls) == 3


def test_the_app_line_for_a_painting_personality(tmp_path: Path) -> None:
    app = App(Runtime(personalities=[PERSONALITIES]), Store(tmp_path / "d.sqlite3"))
    line = app.painters_line("gpt_for_art")
    assert "mlx-diffusion — not ready: `lollms models pull stabilityai/sd-turbo`" in line
    assert "a1111 — not configured" in line and "openai-images — not configured" in line
    assert app.painters_line("assistant") == ""
