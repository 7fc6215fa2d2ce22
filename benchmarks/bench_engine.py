"""Engine overhead per turn: a pipeline run on a backend that answers instantly, minus the backend.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/bench_engine.py [--turns 2000] [--profile]

The backend's own time (building its answer, streaming two chunks) is measured alone over the same
requests and subtracted; what is left is what the engine adds to a turn. Goal: under 1 ms per turn.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from lollms_runtime.backends.base import ChoiceResult, GenerationRequest, TextChunk
from lollms_runtime.engine import Engine, Turn
from lollms_runtime.loader import load_personality
from lollms_runtime.personality import Personality
from lollms_runtime.plugins import PluginHost, get_plugin_manager

GOAL_MS = 1.0

PIPELINES = {
    "one step (generate)": "pipeline:\n  - generate: {id: answer}\n",
    "default chat (generate + reply)": "",
    "four steps (generate, post_process, condition, reply)": """
pipeline:
  - generate: {id: draft}
  - post_process: {id: clean, input: "{{ draft }}", ops: [strip, first_paragraph]}
  - condition: {id: long, if: "clean | length > 3", then: [{set: {x: 1}}]}
  - reply: {text: "{{ clean }}"}
""",
}


class InstantBackend:
    """Answers every request at once with two chunks; records nothing."""

    name = "instant"
    model_id = "instant"

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[TextChunk]:
        yield TextChunk("Hello", token=0)
        yield TextChunk(
            " there.", token=1, finish_reason="stop", prompt_tokens=5, generation_tokens=2
        )

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        return ChoiceResult(choices[0], 0, {c: 1.0 / len(choices) for c in choices})


def personality(folder: Path, body: str, host: PluginHost) -> Personality:
    folder.mkdir(parents=True)
    head = "schema: 1\nid: bench\nname: Bench\nconditioning: You are fast.\n"
    (folder / "personality.yaml").write_text(head + body, encoding="utf-8")
    return load_personality(folder, host)


def per_turn(engine: Engine, p: Personality, turns: int) -> float:
    """Seconds per turn, median of five batches."""

    def batch() -> float:
        started = time.perf_counter()
        for _ in range(turns):
            for _event in engine.run_turn(Turn(p, "Say hello.")):
                pass
        return (time.perf_counter() - started) / turns

    batch()  # warm-up: template compilation, caches
    return statistics.median(batch() for _ in range(5))


def backend_alone(backend: InstantBackend, calls_per_turn: int, turns: int) -> float:
    """Seconds per turn the backend itself takes for the same number of calls."""
    request = GenerationRequest(messages=())

    def batch() -> float:
        started = time.perf_counter()
        for _ in range(turns * calls_per_turn):
            for _chunk in backend.stream(request):
                pass
        return (time.perf_counter() - started) / turns

    batch()
    return statistics.median(batch() for _ in range(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000, help="turns per timed batch")
    parser.add_argument("--profile", action="store_true", help="profile the default chat")
    args = parser.parse_args()

    host = PluginHost(get_plugin_manager(load_entry_points=False))
    backend = InstantBackend()
    engine = Engine(host, backend)
    alone = backend_alone(backend, 1, args.turns)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, body) in enumerate(PIPELINES.items()):
            p = personality(Path(tmp) / str(index), body, host)
            total = per_turn(engine, p, args.turns)
            rows.append((label, total, alone, total - alone))
        if args.profile:
            p = personality(Path(tmp) / "profiled", "", host)
            profiler = cProfile.Profile()
            profiler.enable()
            per_turn(engine, p, args.turns)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)

    print(f"backend alone: {alone * 1e6:.1f} µs per generate call")
    print(f"{'pipeline':<56} {'turn µs':>9} {'backend µs':>11} {'overhead µs':>12} {'of goal':>8}")
    for label, total, backend_time, overhead in rows:
        print(
            f"{label:<56} {total * 1e6:>9.1f} {backend_time * 1e6:>11.1f} "
            f"{overhead * 1e6:>12.1f} {overhead * 1e3 / GOAL_MS:>7.0%}"
        )


if __name__ == "__main__":
    main()
