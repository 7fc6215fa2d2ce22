"""The API on the real embedded model: streaming through the official client, and a re-sent
conversation that hits the KV prompt cache (the cache is keyed by tokens, not by discussion)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from lollms_runtime.api.server import APIConfig, create_api
from lollms_runtime.api.serving import Served
from lollms_runtime.conversation import ConversationService
from lollms_runtime.runtime import Runtime

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(mlx_backend: object, tmp_path: Path) -> Iterator[openai.OpenAI]:
    runtime = Runtime(personalities=[ROOT / "personalities"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = Served(
        create_api(ConversationService(runtime), tmp_path, APIConfig()), "127.0.0.1", port
    )
    served.serve(block=False)
    try:
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0)
    finally:
        served.close()


def test_real_model_streams_and_reuses_the_cache(client: openai.OpenAI) -> None:
    messages: list[dict[str, str]] = [
        {"role": "user", "content": "What is the capital of France? Answer in one word."}
    ]
    stream = client.chat.completions.create(
        model="assistant",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        temperature=0,
        max_tokens=12,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    first = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert first.strip(), "no text streamed"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    messages += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": "And of Italy?"},
    ]
    again = client.chat.completions.create(
        model="assistant",
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=12,
    )
    assert (again.choices[0].message.content or "").strip()
    assert again.usage is not None
    details = again.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens
    # The whole first exchange (system, question, most of the answer) came from the cache.
    assert details.cached_tokens >= usage.prompt_tokens


def test_a_full_model_queue_is_503_with_retry_after(
    client: openai.OpenAI, mlx_backend: object
) -> None:
    queue = mlx_backend.turns  # type: ignore[attr-defined]
    limits = (queue.max_running, queue.max_waiting)
    queue.max_running, queue.max_waiting = 1, 0
    try:
        first = client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "Tell me a long story about a cat."}],
            stream=True,
            temperature=0,
            max_tokens=48,
        )
        chunks = iter(first)
        next(c for c in chunks if c.choices and c.choices[0].delta.content)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="assistant",
                messages=[{"role": "user", "content": "Hello?"}],
                max_tokens=4,
            )
        assert info.value.status_code == 503
        assert int(info.value.response.headers["retry-after"]) >= 1
        body = info.value.body
        assert isinstance(body, dict) and body["code"] == "busy"
        assert "busy" in body["message"]
        first.close()
    finally:
        queue.max_running, queue.max_waiting = limits
