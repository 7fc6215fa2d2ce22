"""A real API server process on scripted backends, for tests that kill it (tests/test_crash_loop.py).

Usage: python tests/api_server.py HOME PORT — the answers stream one word every 5 ms.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lollms_runtime.api.server import APIConfig, create_api
from lollms_runtime.api.serving import Served
from lollms_runtime.conversation import ConversationService
from lollms_runtime.engine import Engine
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent
ANSWER = " ".join(f"w{i}" for i in range(300))


def main() -> None:
    home, port = Path(sys.argv[1]), int(sys.argv[2])
    text = ScriptedTextBackend(*([ANSWER] * 1000))
    text.on_chunk = lambda emitted: time.sleep(0.005)
    runtime = Runtime(personalities=[ROOT / "personalities"])
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    store = Store(home / "discussions.sqlite3", flush_interval=0.05)
    app = create_api(ConversationService(runtime, store), store.artifacts_root, APIConfig())
    print("ready", flush=True)
    Served(app, "127.0.0.1", port).serve(block=True)


if __name__ == "__main__":
    main()
