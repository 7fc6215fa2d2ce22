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


def overhead(client: Any, backend: Any, runs: int) -> tuple[float, float]:
    """Median first-token time: the API end to end vs the backend alone on the same request."""
    seen: list[Any] = []
    stream = backend.stream

    def recording(request: Any, cancel: Any = None) -> Any:
        seen.append(request)
        return stream(request, cancel=cancel)

    backend.stream = recording
    try:
        _ttft(client, [{"role": "user", "content": "Name three colours."}], 4)
    finally:
        backend.stream = stream
    request = seen[-1]
    api, direct = [], []
    for _ in range(runs):
        backend.prompt_cache.clear()
        start = time.perf_counter()
        for chunk in backend.stream(request):
            if chunk.text:  # the first visible text, as the API's first content delta
                direct.append(time.perf_counter() - start)
                break
        backend.prompt_cache.clear()
        api.append(_ttft(client, [{"role": "user", "content": "Name three colours."}], 4)[0])
    return statistics.median(api), statistics.median(direct)


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
        api, direct = overhead(client, backend, 7)
    finally:
        served.close()
    print("| measure | value | goal |\n|---|---|---|")
    print(
        f"| TTFT through the API, turn {args.turns} / turn 1 (history re-sent each turn) | "
        f"{last * 1000:.0f} / {first * 1000:.0f} ms = **{last / first:.2f}** | <= 1.3 |"
    )
    print(f"| TTFT turn {args.turns // 2} | {middle * 1000:.0f} ms | - |")
    print(
        f"| first token: API end to end / backend alone (median of 7) | "
        f"{api * 1000:.0f} / {direct * 1000:.0f} ms: **{(api - direct) * 1000:+.0f} ms** | <= 15 ms |"
    )


if __name__ == "__main__":
    main()
