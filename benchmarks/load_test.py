"""A bounded load test on loopback: N simulated users chat with `lollms serve` through the
OpenAI-compatible API for T seconds on the embedded model, each in a saved discussion.

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/load_test.py [--users 8] [--seconds 60]``.

It starts a real `lollms serve` (web app + API) in a subprocess under a fresh LOLLMS_HOME,
then reports: turns completed, explicit "busy" answers (503), any other error (there must be
none), latency (time to first token and whole turn, p50/p95), the server's memory (RSS) over
time, and whether every answer was saved whole (the stored text equals what was streamed).
Exit status 1 when an unexpected error happened or an answer was not saved whole.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What is the capital of France?",
    "Name a colour of the sky.",
    "Say hello in Spanish.",
    "What is two plus two?",
    "Name an animal that flies.",
]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ttft: list[float] = []
        self.turns: list[float] = []
        self.busy = 0
        self.errors: list[str] = []
        self.answers: dict[str, list[str]] = {}  # discussion id -> streamed answers


def user(base: str, index: int, until: float, max_tokens: int, results: Results) -> None:
    import openai

    client = openai.OpenAI(base_url=base + "/v1", api_key="-", max_retries=0, timeout=600)
    discussion = "new"
    turn = 0
    while time.monotonic() < until:
        question = QUESTIONS[(index + turn) % len(QUESTIONS)]
        start = time.perf_counter()
        first = 0.0
        parts: list[str] = []
        did = None
        try:
            stream = client.chat.completions.create(
                model="assistant",
                messages=[{"role": "user", "content": question}],
                stream=True,
                max_tokens=max_tokens,
                temperature=0,
                extra_body={"discussion": discussion},
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter()
                    parts.append(chunk.choices[0].delta.content)
                extra = chunk.model_extra or {}
                did = extra.get("discussion_id", did)
                if extra.get("replace_content"):
                    parts = [extra["replace_content"]]
        except openai.APIStatusError as exc:
            with results.lock:
                if exc.status_code == 503:
                    results.busy += 1
                else:
                    results.errors.append(f"{exc.status_code}: {exc.message}")
            time.sleep(1.0)
            continue
        except Exception as exc:
            with results.lock:
                results.errors.append(repr(exc))
            continue
        end = time.perf_counter()
        with results.lock:
            results.turns.append(end - start)
            if first:
                results.ttft.append(first - start)
            if did:
                results.answers.setdefault(did, []).append("".join(parts))
        if did:
            discussion = did
        turn += 1


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=24)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="lollms-load-"))
    port = _port()
    env = {**os.environ, "LOLLMS_HOME": str(home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "lollms_runtime.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/v1/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        # Warm-up: the model loads on the first turn.
        import openai

        openai.OpenAI(base_url=base + "/v1", api_key="-").chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        rss: list[float] = [_rss_mb(server.pid)]
        results = Results()
        until = time.monotonic() + args.seconds
        users = [
            threading.Thread(target=user, args=(base, i, until, args.max_tokens, results))
            for i in range(args.users)
        ]
        started = time.perf_counter()
        for t in users:
            t.start()
        while any(t.is_alive() for t in users):
            time.sleep(1.0)
            rss.append(_rss_mb(server.pid))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    # Every answer saved whole: the stored answers of each discussion, in order, are the
    # streamed ones.
    whole, checked = 0, 0
    with sqlite3.connect(home / "discussions.sqlite3") as c:
        for did, streamed in results.answers.items():
            stored = [
                row[0]
                for row in c.execute(
                    "SELECT content FROM messages WHERE discussion_id = ? AND role = 'assistant'"
                    " AND status = 'ok' ORDER BY n",
                    (did,),
                )
            ]
            checked += len(streamed)
            whole += sum(
                1 for a, b in zip(streamed, stored, strict=False) if a.strip() == b.strip()
            )
    report: dict[str, Any] = {
        "users": args.users,
        "seconds": round(elapsed, 1),
        "turns": len(results.turns),
        "turns_per_minute": round(len(results.turns) / elapsed * 60, 1),
        "busy_503": results.busy,
        "errors": results.errors[:5],
        "error_count": len(results.errors),
        "ttft_p50_s": round(statistics.median(results.ttft), 2) if results.ttft else None,
        "ttft_p95_s": round(_pct(results.ttft, 0.95), 2),
        "turn_p50_s": round(statistics.median(results.turns), 2) if results.turns else None,
        "turn_p95_s": round(_pct(results.turns, 0.95), 2),
        "rss_mb_start_max_end": [round(rss[0]), round(max(rss)), round(rss[-1])],
        "answers_saved_whole": f"{whole}/{checked}",
    }
    print(json.dumps(report, indent=2))
    return 1 if results.errors or whole != checked else 0


if __name__ == "__main__":
    sys.exit(main())
