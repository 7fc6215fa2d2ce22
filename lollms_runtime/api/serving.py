"""Serving the API on uvicorn, alone (``lollms api``) or with the web app mounted beside it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import LollmsError
from .server import KEYS_ENV


def api_keys(given: Sequence[str] | None) -> list[str]:
    """Keys from ``--api-key`` (repeatable) and ``$LOLLMS_API_KEYS`` (comma-separated)."""
    keys = [k.strip() for k in (given or ()) if k.strip()]
    keys += [k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip()]
    return keys


class Served:
    """A uvicorn server on a thread (``block=False``) or in the foreground; ``close()`` stops it."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.server_name = host
        self.server_port = port
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def serve(self, block: bool) -> Served:
        if block:
            self.server.run()
            if not self.server.started:
                raise LollmsError(_bind_hint(self.server_name, self.server_port))
            return self
        self.thread = threading.Thread(target=self.server.run, name="lollms-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LollmsError(_bind_hint(self.server_name, self.server_port))
            time.sleep(0.02)
        return self

    def close(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def _bind_hint(host: str, port: int) -> str:
    return (
        f"cannot serve on {host}:{port}: the port is busy or the address is not this machine's; "
        "pick another with --port or --host"
    )
