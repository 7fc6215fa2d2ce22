"""The OpenAI-compatible API on the embedded model: a 20-turn conversation re-sent whole each turn
(as OpenAI clients do) keeps its time to first token flat thanks to the token-keyed KV cache; and
what the API adds to the first token over a direct backend call.

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_api.py [--turns 20] [--runs 2]``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _ttft(client: Any, messages: list[dict[str, str]], max_tokens: int) -> tuple[float, str]:
    start = time.perf_counter()
    first = 0.0
    parts = []
    for chunk in client.chat.completions.create(
        model="assistant", messages=messages, stream=True, temperature=0, max_tokens=max_tokens
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            parts.append(chunk.choices[0].delta.content)
    return first - start, "".join(parts)


def conversation(client: Any, backend: Any, turns: int, answer_tokens: int) -> list[float]:
    """Time to first token of each turn of one conversation, the history re-sent every turn."""
    backend.prompt_cache.clear()
    messages: list[dict[str, str]] = []
    times = []
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": f"Describe painting number {turn} briefly."})
        took, answer = _ttft(client, messages, answer_tokens)
        times.append(took)
        messages.append({"role": "assistant", "content": answer})
    return times


def _idle(backend: Any) -> None:
    """Wait until the engine has nothing running (a finished stream's job is reaped a tick later)
    and empty the prompt cache, so that each measured call starts from the same state."""
    engine = backend.server.engine
    deadline = time.monotonic() + 30
    while engine.busy and time.monotonic() < deadline:
        time.sleep(0.005)
    backend.prompt_cache.clear()


def overhead(client: Any, backend: Any, runs: int) -> dict[str, float]:
    """First-token times, each call consumed whole from an idle engine and an empty cache: the
    API end to end and the backend alone on the same request (medians); and, inside the API
    calls, the time spent outside the backend: request sent -> backend called, plus backend's
    first text -> the client's first content delta (what the API adds, free of prefill noise)."""
    seen: list[Any] = []
    marks: dict[str, float] = {}
    stream = backend.stream

    def recording(request: Any, cancel: Any = None, **kw: Any) -> Any:
        seen.append(request)
        marks.setdefault("called", time.perf_counter())
        for chunk in stream(request, cancel=cancel, **kw):
            if chunk.text:
                marks.setdefault("text", time.perf_counter())
            yield chunk

    question = [{"role": "user", "content": "Name three colours."}]
    backend.stream = recording
    try:
        _ttft(client, question, 4)
        request = seen[-1]
        api, direct, added = [], [], []
        for _ in range(runs):
            _idle(backend)
            start = time.perf_counter()
            first = 0.0
            for chunk in stream(request):  # the backend alone, consumed whole as the API does
                if chunk.text and not first:
                    first = time.perf_counter() - start
            direct.append(first)
            _idle(backend)
            marks.clear()
            start = time.perf_counter()
            took = _ttft(client, question, 4)[0]
            api.append(took)
            added.append((marks["called"] - start) + (start + took - marks["text"]))
    finally:
        backend.stream = stream
    return {
        "api": statistics.median(api),
        "direct": statistics.median(direct),
        "added": statistics.median(added),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--answer-tokens", type=int, default=24)
    args = parser.parse_args()

    import tempfile

    import openai

    from lollms_runtime.api.server import APIConfig, create_api
    from lollms_runtime.api.serving import Served
    from lollms_runtime.conversation import ConversationService
    from lollms_runtime.runtime import Runtime

    runtime = Runtime(personalities=[ROOT / "personalities"])
    backend = runtime.text_backend()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = Served(
        create_api(ConversationService(runtime), Path(tempfile.mkdtemp()), APIConfig()),
        "127.0.0.1",
        port,
    ).serve(block=False)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0)
    try:
        _ttft(client, [{"role": "user", "content": "Hello"}], 2)  # warm-up
        runs = [
            conversation(client, backend, args.turns, args.answer_tokens) for _ in range(args.runs)
        ]
        first = statistics.median(r[0] for r in runs)
        middle = statistics.median(r[len(r) // 2 - 1] for r in runs)
        last = statistics.median(r[-1] for r in runs)
        measured = overhead(client, backend, 9)
    finally:
        served.close()
    print("| measure | value | goal |\n|---|---|---|")
    print(
        f"| TTFT through the API, turn {args.turns} / turn 1 (history re-sent each turn) | "
        f"{last * 1000:.0f} / {first * 1000:.0f} ms = **{last / first:.2f}** | <= 1.3 |"
    )
    print(f"| TTFT turn {args.turns // 2} | {middle * 1000:.0f} ms | - |")
    api, direct, added = measured["api"], measured["direct"], measured["added"]
    print(
        f"| first token: API end to end / backend alone (medians of 9) | "
        f"{api * 1000:.0f} / {direct * 1000:.0f} ms ({(api - direct) * 1000:+.0f} ms) | - |"
    )
    print(
        f"| first token: time the API spends outside the backend (median of 9) | "
        f"**{added * 1000:.1f} ms** | <= 15 ms |"
    )


if __name__ == "__main__":
    main()
