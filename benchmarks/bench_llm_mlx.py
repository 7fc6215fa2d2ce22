"""P2 next to simonw's `llm` + `llm-mlx`: time to first token across a 20-turn discussion.

llm-mlx re-sends the whole discussion every turn (it has no prompt cache); our backend keeps the
discussion's KV cache between turns. Same model folder (the converted embedded SmolLM2), same
messages, greedy, same answer length, measured in one run.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_llm_mlx.py`` (needs ``pip install llm llm-mlx``;
they are benchmark-only, not dependencies of lollms-runtime).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TURNS = 20
ANSWER_TOKENS = 24
SYSTEM = "You are a friendly art critic."


def question(turn: int) -> str:
    return f"Describe painting number {turn} in one sentence."


def ours(folder: Path) -> list[float]:
    from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling
    from lollms_runtime.mlx.backend import shared_backend

    backend = shared_backend(str(folder))
    sampling = Sampling(temperature=0.0, max_tokens=ANSWER_TOKENS)
    messages: list[ChatMessage] = [ChatMessage("system", SYSTEM)]
    ttft: list[float] = []
    for turn in range(1, TURNS + 1):
        request = GenerationRequest(
            [*messages, ChatMessage("user", question(turn))], sampling, cache_key="bench"
        )
        started = time.perf_counter()
        first = 0.0
        parts = []
        for chunk in backend.stream(request):
            if chunk.token is not None and not first:
                first = time.perf_counter() - started
            parts.append(chunk.text)
        ttft.append(first)
        messages += [ChatMessage("user", question(turn)), ChatMessage("assistant", "".join(parts))]
    return ttft


def theirs(folder: Path) -> list[float]:
    import llm_mlx

    model: Any = llm_mlx.MlxModel(str(folder))
    conversation = model.conversation()
    ttft: list[float] = []
    for turn in range(1, TURNS + 1):
        started = time.perf_counter()
        response = conversation.prompt(
            question(turn),
            system=SYSTEM if turn == 1 else None,
            temperature=0.0,
            max_tokens=ANSWER_TOKENS,
        )
        first = 0.0
        for _ in response:
            if not first:
                first = time.perf_counter() - started
        ttft.append(first)
    return ttft


def main() -> int:
    try:
        import llm_mlx  # noqa: F401
    except ImportError:
        print("skipped: llm-mlx is not installed (pip install llm llm-mlx)")
        return 0
    from lollms_runtime.mlx.cpu_attention import mlx_attention
    from lollms_runtime.mlx.gguf_convert import ensure_converted
    from lollms_runtime.mlx.models import embedded_gguf

    folder = ensure_converted(embedded_gguf())
    a = ours(folder)
    with mlx_attention():  # llm-mlx as its users run it: mlx-lm's own attention, not ours
        b = theirs(folder)
    print(f"P2: time to first token over a {TURNS}-turn discussion ({ANSWER_TOKENS}-token answers)")
    print("| | turn 1 | turn 10 | turn 20 | turn 20 / turn 1 |")
    print("|---|---|---|---|---|")
    for name, t in (("lollms-runtime (KV cache kept)", a), ("llm + llm-mlx (re-sends)", b)):
        print(
            f"| {name} | {t[0] * 1000:.0f} ms | {t[9] * 1000:.0f} ms | {t[-1] * 1000:.0f} ms "
            f"| {t[-1] / t[0]:.2f} |"
        )
    print(f"\nturn 20: llm-mlx / lollms-runtime = {b[-1] / a[-1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
