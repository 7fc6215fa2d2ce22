"""P5: many users at once on the embedded model, through MLXTextBackend's continuous batch.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/bench_batching.py [--tokens 64] [--chunk 256]

1. Aggregate decode tokens/s with 1, 2, 4 and 8 concurrent streams (goal: 8 >= 4x one). The rate
   is counted while every stream is decoding: tokens produced between the moment the last stream
   got its first token and the moment the first stream finished.
2. Time to first token of a short turn submitted while a 4,000-token prompt is prefilling
   (goal: <= 2 s plus one prefill chunk), next to the long prompt's whole prefill time (what the
   short turn waited before batching).
3. Time from Stop to the model being free during a long prefill (goal: within one chunk).

Ratios are measured within one run. On a shared CPU the absolute figures are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling

TOPICS = (
    "a lighthouse keeper",
    "a lost robot",
    "a city under the sea",
    "a dragon who bakes bread",
    "a train across the desert",
    "a garden on the moon",
    "a clockmaker's apprentice",
    "a storm at the harbour",
)


def story(topic: str, tokens: int) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage("user", f"Write a long, detailed story about {topic}.")],
        sampling=Sampling(temperature=0.0, max_tokens=tokens),
        cache_key=topic,
    )


class Timed(threading.Thread):
    """Consumes one stream and stamps every token."""

    def __init__(self, backend: Any, request: GenerationRequest) -> None:
        super().__init__(daemon=True)
        self.backend, self.request = backend, request
        self.cancel = threading.Event()
        self.stamps: list[float] = []
        self.submitted = 0.0
        self.ended = 0.0
        self.finish = ""

    def run(self) -> None:
        self.submitted = time.perf_counter()
        for chunk in self.backend.stream(self.request, self.cancel):
            if chunk.token is not None:
                self.stamps.append(time.perf_counter())
            if chunk.finish_reason:
                self.finish = chunk.finish_reason
        self.ended = time.perf_counter()

    @property
    def first_token(self) -> float:
        return self.stamps[0] - self.submitted if self.stamps else float("nan")


def aggregate_rate(backend: Any, streams: int, tokens: int, round_: int) -> float:
    runs = [Timed(backend, story(f"{TOPICS[i]} (take {round_})", tokens)) for i in range(streams)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    start = max(run.stamps[0] for run in runs)
    end = min(run.stamps[-1] for run in runs)
    if end <= start:
        raise SystemExit("streams did not overlap; raise --tokens")
    counted = sum(1 for run in runs for t in run.stamps if start < t <= end)
    return counted / (end - start)


def long_request(tokens: int, tag: str, backend: Any) -> GenerationRequest:
    """A prompt of about ``tokens`` tokens (never more)."""

    def build(words: int) -> GenerationRequest:
        body = " ".join(f"{tag}{i % 97}" for i in range(words))
        return GenerationRequest(
            messages=[ChatMessage("user", f"Summarize the following notes.\n{body}")],
            sampling=Sampling(temperature=0.0, max_tokens=4),
            cache_key=tag,
        )

    words = tokens
    while (size := len(backend.prompt_tokens(build(words)))) > tokens:
        words = int(words * tokens / size) - 1
    return build(words)


def wait_ticks(engine: Any, count: int) -> float:
    """Wait for ``count`` more engine ticks; returns the seconds they took."""
    target = engine.ticks + count
    start = time.perf_counter()
    while engine.ticks < target:
        if not engine.busy:
            raise SystemExit("the long prompt was read before the measure: raise --long")
        time.sleep(0.002)
    return time.perf_counter() - start


def raw_rate(loaded: Any, backend: Any, tokens: int) -> float:
    """mlx-lm's own single-stream decode rate on the same prompt (the reference)."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    prompt = mx.array(backend.prompt_tokens(story("a raw reference", tokens)))
    rate = 0.0
    for response in stream_generate(
        loaded.model, loaded.tokenizer, prompt, max_tokens=tokens, sampler=make_sampler(0.0)
    ):
        rate = response.generation_tps
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64, help="max tokens per stream")
    parser.add_argument("--chunk", type=int, default=None, help="prefill chunk (tokens)")
    parser.add_argument("--long", type=int, default=4000, help="long prompt, in tokens")
    args = parser.parse_args()

    from lollms_runtime.mlx.backend import MLXTextBackend
    from lollms_runtime.mlx.models import load_model

    loaded = load_model("default")
    # Room for every stream at once: the queue is not what is measured here.
    backend = MLXTextBackend(loaded, max_running=16, prefill_chunk=args.chunk)
    engine = backend.server.engine
    chunk = engine.prefill_chunk
    print(f"model: {loaded.spec} ({loaded.dtype}); prefill chunk {chunk} tokens", flush=True)
    list(backend.stream(story("warm-up", 8)))

    print("\n1. aggregate decode tokens/s (greedy, concurrent streams)")
    raw = raw_rate(loaded, backend, args.tokens)
    print(f"   raw mlx_lm.stream_generate, one stream: {raw:.1f} tokens/s")
    print(f"{'streams':>8} {'tokens/s':>10} {'x one':>7}", flush=True)
    one = rate = 0.0
    for streams in (1, 2, 4, 8):
        rate = aggregate_rate(backend, streams, args.tokens, streams)
        one = one or rate
        print(f"{streams:>8} {rate:>10.1f} {rate / one:>7.2f}", flush=True)
    print(f"   one stream through the batch / raw mlx-lm: {one / raw:.2f}")
    print(f"   goal 8 streams >= 4x one: {'met' if rate >= 4 * one else 'NOT met'}")

    request = long_request(args.long, "busy", backend)
    size = len(backend.prompt_tokens(request))
    print(f"\n2. a short turn submitted while a {size}-token prompt prefills", flush=True)
    long_run = Timed(backend, request)
    long_run.start()
    while not engine.busy:  # the prompt is being templated and tokenized
        time.sleep(0.002)
    wait_ticks(engine, 1)
    wait_ticks(engine, 3)
    per_chunk = statistics.median(list(engine.tick_seconds)[-3:])  # one chunk a tick, alone
    short = Timed(backend, story("a short answer", 8))
    ticks = engine.ticks
    short.start()
    while not short.stamps and short.is_alive():
        time.sleep(0.002)
    first_ticks = engine.ticks - ticks
    short.join()
    goal = 2.0 + per_chunk
    whole = per_chunk * -(-size // chunk)
    verdict = "met" if short.first_token <= goal else "NOT met"
    print(f"   one chunk of {chunk} tokens: {per_chunk:.2f} s; the whole prefill: ~{whole:.0f} s")
    print(
        f"   short turn's time to first token: {short.first_token:.2f} s "
        f"= {first_ticks} ticks (goal <= 2 s + one chunk = {goal:.2f} s: {verdict}); "
        f"one at a time it would have waited ~{whole:.0f} s"
    )
    print(f"   its {len(short.stamps)} tokens came in {short.ended - short.submitted:.2f} s")

    print("\n3. Stop during the long prefill", flush=True)
    wait_ticks(engine, 2)
    per_chunk = statistics.median(list(engine.tick_seconds)[-2:])
    chunks = engine.chunks
    at = time.perf_counter()
    long_run.cancel.set()
    long_run.join()
    while engine.busy:
        time.sleep(0.001)
    freed = time.perf_counter() - at
    ran = engine.chunks - chunks  # the chunk in progress when Stop came, at most
    verdict = "met" if ran <= 1 else "NOT met"
    print(
        f"   Stop to model free: {freed:.2f} s, {ran} prefill chunk(s) ran after Stop "
        f"(a chunk takes {per_chunk:.2f} s now; finish={long_run.finish}; "
        f"goal within one chunk: {verdict})"
    )
    recent = [f"{t:.1f}" for t in list(engine.tick_seconds)[-12:]]
    print(f"   the last ticks took (s): {' '.join(recent)}")
    print("\nfigures from one run on a shared 2-core CPU: noisy; the ratios are the point.")


if __name__ == "__main__":
    main()
