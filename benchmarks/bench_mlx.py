"""MLX text backend benchmark: overhead vs raw mlx-lm, prompt caching, choose(), BLAS and dtype.

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_mlx.py [--model default]``.
Prints one table of ratios measured in this run on the same model and prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STORY = "Write a long, detailed story about a dragon who learns to paint."


def p1_decode_and_ttft(backend: Any, runs: int, tokens: int) -> dict[str, Any]:
    """Decode tokens/s and time to first token: MLXTextBackend.stream vs raw stream_generate."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling

    request = GenerationRequest(
        [ChatMessage("user", STORY)], Sampling(temperature=0.0, max_tokens=tokens)
    )
    prompt = backend.prompt_tokens(request)
    ours_tps, raw_tps, ours_ttft, raw_ttft = [], [], [], []
    for _ in range(runs):
        backend.prompt_cache.clear()  # both sides prefill the whole prompt
        start = time.perf_counter()
        first, n = 0.0, 0
        for chunk in backend.stream(request):
            if chunk.token is not None:
                first = first or time.perf_counter()
            n = chunk.generation_tokens or n
        end = time.perf_counter()
        ours_ttft.append(first - start)
        ours_tps.append((n - 1) / (end - first))

        start = time.perf_counter()
        first, n = 0.0, 0
        sampler = make_sampler(temp=0.0)
        for response in stream_generate(
            backend.loaded.model,
            backend.tokenizer,
            mx.array(prompt),
            max_tokens=tokens,
            sampler=sampler,
        ):
            first = first or time.perf_counter()
            n = response.generation_tokens
        end = time.perf_counter()
        raw_ttft.append(first - start)
        raw_tps.append((n - 1) / (end - first))
    overhead = []
    for _ in range(runs):  # what the backend adds before prefill: format, tokenize, cache lookup
        start = time.perf_counter()
        backend.prompt_cache.fetch(backend.prompt_tokens(request))
        overhead.append(time.perf_counter() - start)
    return {
        "overhead": min(overhead),
        # Best of the runs: this box is shared, and interference only ever slows a run down.
        "ours_tps": max(ours_tps),
        "raw_tps": max(raw_tps),
        "ours_ttft": min(ours_ttft),
        "raw_ttft": min(raw_ttft),
        # Each run measures both sides back to back: the median of those differences is steadier
        # than a difference of two minima when the machine's speed drifts by more than the goal.
        "added_ttft": statistics.median(o - r for o, r in zip(ours_ttft, raw_ttft, strict=True)),
        "prompt_tokens": len(prompt),
        "pairs": list(zip(ours_ttft, raw_ttft, strict=True)),
    }


def _first_token_time(backend: Any, request: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    for chunk in backend.stream(request):
        if chunk.token is not None:
            return time.perf_counter() - start, chunk
    raise RuntimeError("no token generated")


def p2_turns(backend: Any, turns: int, answer_tokens: int, runs: int) -> dict[str, float]:
    """Time to first token at turn N vs turn 1 of a discussion (cache kept between turns)."""
    import copy

    from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling

    sampling = Sampling(temperature=0.0, max_tokens=answer_tokens)
    messages: list[ChatMessage] = [ChatMessage("system", "You are a friendly art critic.")]

    def ask(turn: int) -> GenerationRequest:
        text = f"Describe painting number {turn} in one sentence."
        return GenerationRequest([*messages, ChatMessage("user", text)], sampling, cache_key="b")

    first = ask(1)  # the opening turn: the system message and one question
    for turn in range(1, turns):
        request = ask(turn)
        answer = "".join(chunk.text for chunk in backend.stream(request))
        messages.extend([request.messages[-1], ChatMessage("assistant", answer)])
    # What the previous turn left in the cache, restored before each measurement of the last turn.
    last = ask(turns)
    tokens = backend.prompt_tokens(last)
    cache, cached = backend.prompt_cache.fetch(tokens)
    prompt = len(tokens)
    from lollms_runtime.mlx.cpu_attention import mlx_attention

    def turn_one() -> float:
        backend.prompt_cache.clear()  # turn 1 starts from an empty cache
        return _first_token_time(backend, first)[0]

    def turn_last() -> float:
        backend.prompt_cache.clear()
        backend.prompt_cache.store(tokens[:cached], copy.deepcopy(cache))
        return _first_token_time(backend, last)[0]

    first_turn, last_turn, mlx_first, mlx_last = [], [], [], []
    # Interleaved, so that the load of this shared machine weighs on every column alike; the
    # mlx_attention() columns are the same turns with mlx-lm's attention instead of cpu_attention.
    for _ in range(runs):
        first_turn.append(turn_one())
        last_turn.append(turn_last())
        with mlx_attention():
            mlx_first.append(turn_one())
            mlx_last.append(turn_last())
    # The same last turn without any cache: what a client that re-sends the discussion pays.
    backend.prompt_cache.clear()
    cold = _first_token_time(backend, last)[0]
    with mlx_attention():
        backend.prompt_cache.clear()
        mlx_cold = _first_token_time(backend, last)[0]
    backend.prompt_cache.clear()
    return {
        "ttft_1": min(first_turn),
        "ttft_n": min(last_turn),
        "cold_n": cold,
        "mlx_ttft_1": min(mlx_first),
        "mlx_ttft_n": min(mlx_last),
        "mlx_cold_n": mlx_cold,
        "prompt_n": prompt,
        "cached_n": cached,
    }


def p3_pipeline(backend: Any) -> dict[str, float]:
    """Prefilled tokens of 3 generate steps sharing conditioning + discussion vs one step."""
    from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling

    backend.prompt_cache.clear()
    history = [ChatMessage("system", "You are Artbot, an artist who describes vivid artworks.")]
    for i in range(4):
        history.append(ChatMessage("user", f"Imagine artwork number {i + 1}, a harbour at dawn."))
        history.append(ChatMessage("assistant", "Pale pink sky, still water, red boats, gulls."))
    history.append(ChatMessage("user", "Now imagine a forest at night."))
    steps = ["", "Give it a title.", "List its three main colours."]
    sampling = Sampling(temperature=0.0, max_tokens=8)
    prefilled = []
    for extra in steps:
        messages = history if not extra else [*history, ChatMessage("user", extra)]
        last = list(backend.stream(GenerationRequest(messages, sampling)))[-1]
        prefilled.append(last.prompt_tokens - last.cached_tokens)
    return {"three": float(sum(prefilled)), "one": float(prefilled[0])}


def p4_choose(backend: Any, runs: int) -> dict[str, float]:
    """Time of choose() vs the prefill of the same question on the same cached discussion."""
    from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling

    history = [
        ChatMessage("system", "You are Artbot, an artist who describes vivid artworks."),
        ChatMessage("user", "Imagine a quiet harbour at dawn, with fishing boats and gulls."),
        ChatMessage(
            "assistant",
            "A pale pink sky over still water; red and blue boats rest at the pier "
            "while gulls circle the lighthouse, their wings catching the first light.",
        ),
    ]
    question = ChatMessage("user", "Does the user want a picture painted? Answer yes or no.")
    request = GenerationRequest([*history, question], Sampling(temperature=0.0, max_tokens=1))
    warm = GenerationRequest(history, Sampling(temperature=0.0, max_tokens=1))
    choose_t, prefill_t = [], []
    for _ in range(runs):
        backend.prompt_cache.clear()
        list(backend.stream(warm))  # the discussion is cached, as in a pipeline
        start = time.perf_counter()
        list(backend.stream(request))  # prefill the question + one token
        prefill_t.append(time.perf_counter() - start)
        backend.prompt_cache.clear()
        list(backend.stream(warm))
        start = time.perf_counter()
        backend.choose(request, ["yes", "no"])
        choose_t.append(time.perf_counter() - start)
    return {"choose": min(choose_t), "prefill": min(prefill_t)}


def attention_kernels(runs: int) -> dict[str, float]:
    """One layer's attention, 21 new tokens over 877 keys (SmolLM2's 9/3 heads): MLX vs numpy."""
    import mlx.core as mx

    from lollms_runtime.mlx.cpu_attention import attention

    mx.random.seed(0)
    q = mx.random.normal((1, 9, 21, 64))
    k, v = mx.random.normal((1, 3, 877, 64)), mx.random.normal((1, 3, 877, 64))
    mx.eval(q, k, v)
    timings: dict[str, list[float]] = {"mlx": [], "numpy": []}
    for _ in range(runs * 4):
        start = time.perf_counter()
        mx.eval(mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125, mask="causal"))
        timings["mlx"].append(time.perf_counter() - start)
        start = time.perf_counter()
        mx.eval(attention(q, k, v, 0.125, "causal"))
        timings["numpy"].append(time.perf_counter() - start)
    return {name: min(values) for name, values in timings.items()}


BLAS_PROBE = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from lollms_runtime.mlx.blas import preload_openblas, openblas_active
preload_openblas()
import mlx.core as mx
from mlx_lm import stream_generate
from mlx_lm.sample_utils import make_sampler
from lollms_runtime.mlx.models import load_model
loaded = load_model(sys.argv[2], sys.argv[3])
tok = loaded.tokenizer
prompt = tok.encode(("The history of painting spans many cultures and centuries. " * 12).strip())
def run(ids, n):
    start = time.perf_counter(); first = last = 0.0; count = 0
    for _ in stream_generate(loaded.model, tok, mx.array(ids), max_tokens=n,
                             sampler=make_sampler(temp=0.0)):
        count += 1; last = time.perf_counter(); first = first or last
    return first - start, (count - 1) / max(last - first, 1e-9)
run(prompt[:8], 4)  # warm up kernels without paying a long prefill twice
ttft, tps = run(prompt, 25)
print(json.dumps({"openblas": openblas_active(), "prefill_tps": len(prompt) / ttft,
                  "decode_tps": tps, "prompt_tokens": len(prompt)}))
"""


def blas_and_dtype(model: str) -> list[dict[str, Any]]:
    """Prefill and decode speed, with and without OpenBLAS, quantized vs float32 (new processes)."""
    rows = []
    for blas in ("1", "0"):
        for dtype in ("quantized", "float32"):
            env = {**os.environ, "LOLLMS_OPENBLAS": blas}
            out = (
                subprocess.run(
                    [sys.executable, "-c", BLAS_PROBE, str(ROOT), model, dtype],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                    timeout=600,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            rows.append(
                {
                    "blas": "openblas" if blas == "1" else "bundled",
                    "dtype": dtype,
                    **json.loads(out),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()

    from lollms_runtime.mlx.backend import shared_backend

    backend = shared_backend(args.model)
    print(f"model {args.model} ({backend.loaded.folder}), dtype {backend.loaded.dtype}")
    list(backend.stream(_tiny_request()))  # warm up kernels

    p1 = p1_decode_and_ttft(backend, args.runs, args.tokens)
    p2 = p2_turns(backend, args.turns, answer_tokens=24, runs=args.runs)
    p3 = p3_pipeline(backend)
    p4 = p4_choose(backend, args.runs)
    kernels = attention_kernels(args.runs)
    blas = blas_and_dtype(args.model)

    rows = [
        (
            "P1 decode tok/s: backend / raw stream_generate",
            f"{p1['ours_tps']:.2f} / {p1['raw_tps']:.2f}",
            p1["ours_tps"] / p1["raw_tps"],
            ">= 0.98",
        ),
        (
            "P1 added time to first token (ms)",
            f"median of {len(p1['pairs'])} paired runs",
            p1["added_ttft"] * 1e3,
            "<= 10",
        ),
        (
            "P1 backend work before prefill (ms)",
            "template+tokenize+cache",
            p1["overhead"] * 1e3,
            "<= 10",
        ),
        (
            f"P2 TTFT turn {args.turns} / turn 1 (cached)",
            f"{p2['ttft_n'] * 1e3:.0f} / {p2['ttft_1'] * 1e3:.0f} ms",
            p2["ttft_n"] / p2["ttft_1"],
            "<= 1.3",
        ),
        (
            f"P2 same with mlx-lm's attention: turn {args.turns} / turn 1",
            f"{p2['mlx_ttft_n'] * 1e3:.0f} / {p2['mlx_ttft_1'] * 1e3:.0f} ms",
            p2["mlx_ttft_n"] / p2["mlx_ttft_1"],
            "(info: without cpu_attention)",
        ),
        (
            f"P2 turn {args.turns} prefill, no cache: mlx-lm / numpy attention",
            f"{p2['mlx_cold_n']:.1f} / {p2['cold_n']:.1f} s ({p2['prompt_n']} tokens)",
            p2["mlx_cold_n"] / p2["cold_n"],
            "(info: speed-up of cpu_attention)",
        ),
        (
            "P2 one layer's attention, 21 over 877 keys: mlx / numpy",
            f"{kernels['mlx'] * 1e3:.2f} / {kernels['numpy'] * 1e3:.2f} ms",
            kernels["mlx"] / kernels["numpy"],
            "(info: cpu_attention kernel)",
        ),
        (
            f"P2 TTFT turn {args.turns} without cache / with",
            f"{p2['cold_n'] * 1e3:.0f} / {p2['ttft_n'] * 1e3:.0f} ms "
            f"({p2['cached_n']}/{p2['prompt_n']} cached)",
            p2["cold_n"] / p2["ttft_n"],
            "(info)",
        ),
        (
            "P3 prefilled tokens: 3-step pipeline / 1 step",
            f"{p3['three']:.0f} / {p3['one']:.0f} tokens",
            p3["three"] / p3["one"],
            "(info; no cache would be ~3)",
        ),
        (
            "P4 choose() / prefill of its question",
            f"{p4['choose'] * 1e3:.0f} / {p4['prefill'] * 1e3:.0f} ms",
            p4["choose"] / p4["prefill"],
            "<= 1.2",
        ),
    ]
    base = next(r for r in blas if r["blas"] == "bundled" and r["dtype"] == "quantized")
    for r in blas:
        rows.append(
            (
                f"BLAS {r['blas']:8} {r['dtype']:9} prefill / decode tok/s",
                f"{r['prefill_tps']:.0f} / {r['decode_tps']:.2f}",
                r["prefill_tps"] / base["prefill_tps"],
                f"decode x{r['decode_tps'] / base['decode_tps']:.2f} vs bundled+quantized",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}}  {'values':28}  {'ratio':>8}  goal")
    for name, values, ratio, goal in rows:
        print(f"{name:{width}}  {values:28}  {ratio:8.2f}  {goal}")


def _tiny_request() -> Any:
    from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling

    return GenerationRequest([ChatMessage("user", "Hi")], Sampling(temperature=0.0, max_tokens=4))


if __name__ == "__main__":
    main()
