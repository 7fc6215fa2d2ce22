"""How often the bundled router's model-judged choice takes the branch a person means.

Run from the repository root: ``HF_HUB_OFFLINE=1 python benchmarks/bench_routing.py [--model M]``.
Fifteen clear messages, five per branch (none of them the router's own examples), each run through
the real router on the real model; prints the branch taken for each, the share right per branch
and overall, and the share a model always picking one branch would get (1/3), for comparison.
Only the routing is measured: answers are cut to one token.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES: dict[str, tuple[str, ...]] = {
    "translate": (
        "Translate into Spanish: where is the train station?",
        "Can you translate 'good night, sleep well' into German?",
        "How do you say 'thank you very much' in Italian? Please translate it.",
        "Translate this sentence to French: I would like a cup of coffee.",
        "Please translate into French: the weather is nice today.",
    ),
    "summarize": (
        "Summarize this: The council met on Monday. It voted to repair the bridge and to open a "
        "new library next spring. Both plans were approved unanimously.",
        "Give me a short summary of this text: Sales rose 10% in the third quarter, driven by "
        "exports, while costs stayed flat.",
        "Summarize in one sentence: The hikers left at dawn, crossed two rivers, lost the trail "
        "in the fog and reached the hut after dark.",
        "Can you summarize the following? The update fixes three crashes, speeds up start-up and "
        "adds a dark theme.",
        "TL;DR please: The museum will close for renovation from May to September and reopen "
        "with a new wing for modern art.",
    ),
    "chat": (
        "Hi! How is your day going?",
        "What is your favourite colour?",
        "Tell me a joke about cats.",
        "What should I cook for dinner tonight?",
        "Do you like music?",
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model spec (default: the embedded one)")
    args = parser.parse_args()

    from lollms_runtime.events import Reply
    from lollms_runtime.runtime import Runtime

    runtime = Runtime(personalities=[ROOT / "personalities"], model=args.model)
    right: dict[str, int] = {}
    start = time.perf_counter()
    for wanted, messages in CASES.items():
        right[wanted] = 0
        for message in messages:
            events = runtime.run("router", message, sampling={"seed": 1, "max_tokens": 1})
            reply = next(e for e in events if isinstance(e, Reply))
            taken = reply.shown.get("intent", "?")
            right[wanted] += taken == wanted
            mark = "ok " if taken == wanted else "BAD"
            print(f"{mark} {wanted:>9} -> {taken:<9} {message[:60]!r}")
    total = sum(right.values())
    count = sum(len(m) for m in CASES.values())
    print()
    for wanted, messages in CASES.items():
        print(f"{wanted:>9}: {right[wanted]}/{len(messages)}")
    print(f"routed right: {total}/{count} = {total / count:.2f} (one branch always: 0.33)")
    print(f"{count} turns in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
