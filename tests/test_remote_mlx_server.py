"""The openai backend against the real `mlx_lm.server` on loopback, serving the embedded SmolLM2
model: pipelines with model-judged conditions, streaming, stop strings, and a server that dies
and comes back. Answers are kept short: the server runs the quantized model on the CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling
from lollms_runtime.events import Done, Event, Reply, Status, StepFinished, Token, TurnError
from lollms_runtime.remote.backend import OpenAITextBackend
from lollms_runtime.runtime import Runtime

pytestmark = pytest.mark.model
SHORT = {"max_tokens": 10, "seed": 3}


class MlxServer:
    """`python -m mlx_lm server` for one model folder on a fixed loopback port."""

    def __init__(self, folder: Path, cache: Path) -> None:
        self.folder = folder
        self.cache = cache  # an empty Hugging Face cache: /v1/models lists only our folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> None:
        env = {**os.environ, "HF_HUB_CACHE": str(self.cache), "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "mlx_lm", "server", "--model", str(self.folder)]
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlx_lm.server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlx_lm.server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture(scope="module")
def server(mlx_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlxServer]:
    from lollms_runtime.mlx.models import resolve_model

    running = MlxServer(resolve_model("default"), tmp_path_factory.mktemp("hf-cache"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def runtime(server: MlxServer) -> Runtime:
    return Runtime(model=f"openai:{server.url}")


def turn(runtime: Runtime, pid: str, message: str, **kwargs: Any) -> list[Event]:
    return list(runtime.run(pid, message, sampling=kwargs.pop("sampling", SHORT), **kwargs))


def ok(events: list[Event]) -> list[Event]:
    done = events[-1]
    assert isinstance(done, Done) and done.status == Status.OK, events
    return events


def step(events: list[Event], step_id: str) -> StepFinished:
    return next(e for e in events if isinstance(e, StepFinished) and e.step_id == step_id)


def reply(events: list[Event]) -> Reply:
    return next(e for e in events if isinstance(e, Reply))


def test_the_server_lists_the_model(server: MlxServer) -> None:
    with urllib.request.urlopen(f"{server.url}/models", timeout=10) as answer:
        listed = json.load(answer)
    assert [m["id"] for m in listed["data"]] == [str(server.folder.resolve())]


def test_gpt_for_art_runs_through_the_server(runtime: Runtime) -> None:
    events = ok(turn(runtime, "gpt_for_art", "Imagine a red boat.", settings={"paint": False}))
    assert isinstance(runtime.text_backend(), OpenAITextBackend)
    draft = step(events, "draft")
    assert draft.status == "ok" and draft.generation_tokens > 1 and draft.prompt_tokens > 20
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) > 1  # streamed piece by piece, not in one block
    assert step(events, "painting").output == "else"
    assert reply(events).text.strip() and not reply(events).images


@pytest.mark.parametrize(
    ("pid", "message", "decision", "options"),
    [
        (
            "router",
            "Translate into French: the cat sleeps.",
            "intent",
            {"translate", "summarize", "chat"},
        ),
        (
            "code_buddy",
            "Write a Python function that adds 2 numbers.",
            "wants_code",
            {"then", "else"},
        ),
    ],
)
def test_model_judged_conditions_use_the_first_tokens_logprobs(
    runtime: Runtime, pid: str, message: str, decision: str, options: set[str]
) -> None:
    events = ok(turn(runtime, pid, message))
    judged = step(events, decision)
    assert judged.output in options  # which one a 135M model picks is not asserted
    # mlx_lm.server returns top logprobs, so no answer had to be parsed; the trace says so.
    assert "p=" in judged.detail and "first-token logprobs" in judged.detail
    assert reply(events).text.strip()


def test_streaming_and_stop_strings(server: MlxServer, runtime: Runtime) -> None:
    backend = runtime.text_backend()
    question = [ChatMessage("user", "Count from one to twenty in words, separated by commas.")]
    greedy = Sampling(temperature=0.0, max_tokens=24)
    arrivals: list[tuple[float, str]] = []
    for piece in backend.stream(GenerationRequest(question, greedy)):
        arrivals.append((time.monotonic(), piece.text))
    full = "".join(text for _, text in arrivals)
    texts = [(t, text) for t, text in arrivals if text]
    assert len(texts) > 5 and texts[-1][0] - texts[0][0] > 0.05, "the answer came in one block"
    words = full.split()
    assert len(words) > 4, full
    stop = " " + words[3]  # a stop string in the middle of the answer
    cut = full[: full.index(stop)]
    # Four decoy stops first: servers take at most four, so the real one is caught here.
    stops = ("@@1", "@@2", "@@3", "@@4", stop)
    pieces = list(backend.stream(GenerationRequest(question, greedy.merged({"stop": stops}))))
    text = "".join(p.text for p in pieces)
    assert text == cut
    assert pieces[-1].finish_reason == "stop"


def test_a_killed_server_is_a_clean_error_and_the_next_turn_works(
    server: MlxServer, runtime: Runtime
) -> None:
    server.stop()
    try:
        events = turn(runtime, "gpt_for_art", "Imagine a tree.", settings={"paint": False})
        done = events[-1]
        assert isinstance(done, Done) and done.status == Status.FAILED
        error = next(e for e in events if isinstance(e, TurnError))
        assert f"cannot reach the model server at {server.url}" in error.message
        assert "start the server" in error.hint
        assert "bug" not in error.message + error.hint
    finally:
        server.start()
    events = ok(turn(runtime, "gpt_for_art", "Imagine a tree.", settings={"paint": False}))
    assert reply(events).text.strip()
