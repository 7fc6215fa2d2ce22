"""`lollms list` wall time over 500 generated personalities, against the 0.5 s goal.

Run from the repository root: ``python benchmarks/bench_list.py [--count 500] [--runs 5]``.
Each measurement is a fresh subprocess (what a person typing ``lollms list`` waits for); the
time of a bare ``import lollms_runtime`` is shown for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.5
CATEGORIES = ("art", "coding", "writing", "science", "fun")

PERSONALITY = """\
schema: 1
id: bench_{i:04d}
name: Bench personality {i}
version: "1.{i}.0"
author: benchmark
category: {category}
language: english
description: A generated personality used to time `lollms list` ({i}).
welcome: Hello from personality {i}.
examples: ["What can you do?", "Tell me a story."]
conditioning: |
  You are personality number {i}, a concise assistant.
  Answer clearly and kindly.
sampling: {{temperature: 0.7, top_k: 40, top_p: 0.9, max_tokens: 256, stop: ["### User"]}}
settings:
  concise: {{type: boolean, default: true, title: Keep answers short}}
  width: {{type: integer, enum: [256, 512], default: 512}}
pipeline:
  - generate: {{id: answer, system: "{{{{ personality.conditioning }}}}"}}
  - post_process: {{input: "{{{{ answer }}}}", ops: [strip, first_paragraph], id: answer}}
  - reply: {{text: "{{{{ answer }}}}"}}
"""


def generate(folder: Path, count: int) -> None:
    """``count`` personality folders, grouped in category folders like a real collection."""
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        target = folder / category / f"bench_{i:04d}"
        target.mkdir(parents=True)
        (target / "personality.yaml").write_text(
            PERSONALITY.format(i=i, category=category), encoding="utf-8"
        )


def timed(command: list[str], env: dict[str, str], runs: int) -> tuple[float, str]:
    """Median wall time of ``runs`` fresh subprocesses (after one warm-up run) and the last stdout."""
    out = ""
    times = []
    for n in range(runs + 1):
        start = time.perf_counter()
        # cwd=ROOT: `python -m`/`-c` put the working directory first on sys.path, so this
        # checkout (and not whatever `lollms_runtime` sits in the caller's folder) is measured.
        done = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        if n:  # the first run only warms the file-system and bytecode caches
            times.append(time.perf_counter() - start)
        out = done.stdout
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="personalities to generate")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (the median is shown)")
    args = parser.parse_args()

    base_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base_env.pop("LOLLMS_PERSONALITIES_PATH", None)
    # Built-ins only: a figure that does not depend on what else this environment has installed.
    env = {**base_env, "LOLLMS_LOAD_PLUGINS": ""}
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "personalities"
        generate(folder, args.count)
        env["LOLLMS_HOME"] = base_env["LOLLMS_HOME"] = str(Path(tmp) / "home")
        python_s, _ = timed([py, "-c", "pass"], env, args.runs)
        import_s, _ = timed([py, "-c", "import lollms_runtime"], env, args.runs)
        cli = [py, "-m", "lollms_runtime.cli"]
        help_s, _ = timed([*cli, "--help"], env, args.runs)
        listing = [*cli, "list", "--json", "--personalities", str(folder)]
        list_s, out = timed(listing, env, args.runs)
        listed = out.count('"id":')
        if listed != args.count:
            raise SystemExit(f"lollms list found {listed} personalities, expected {args.count}")
        # The same with every plugin installed in this environment (as a user would run it).
        installed_s, out = timed(listing, base_env, args.runs)
        extra = out.count('"id":') - args.count

    rows = [
        ("python -c pass", python_s),
        ("python -c 'import lollms_runtime'", import_s),
        ("lollms --help", help_s),
        (f"lollms list ({args.count} personalities)", list_s),
        (f"  same, installed plugins loaded (+{extra} listed)", installed_s),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'command'.ljust(width)}  median s  x goal ({GOAL_S} s)")
    for name, seconds in rows:
        print(f"{name.ljust(width)}  {seconds:8.3f}  {seconds / GOAL_S:6.2f}")
    verdict = "meets" if list_s <= GOAL_S else "MISSES"
    print(
        f"\nlollms list {verdict} the goal: {list_s:.3f} s for {args.count} personalities "
        f"({list_s / import_s:.1f}x a bare import, {(list_s - help_s) * 1000 / args.count:.2f} ms "
        "per personality beyond start-up)"
    )


if __name__ == "__main__":
    main()
