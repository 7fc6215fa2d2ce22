"""Launching the web app: loopback by default, optional login, files served only from safe folders."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..runtime import Runtime
from ..store import Store


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``user:pass`` → (user, pass); raises ValueError with what to write instead."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--auth expects USER:PASSWORD, got {value!r}")
    return user, password


def browser_secret(folder: Path) -> str:
    """The key a page's remembered state is kept under in the browser, the same across restarts
    (a new one each start would forget the open discussion and the panels): made once, kept in
    ``folder`` beside the database, readable by its owner only."""
    path = folder / "app-secret"
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except OSError:
        kept = ""
    if len(kept) >= 16:
        return kept
    made = secrets.token_urlsafe(24)
    try:
        path.touch(mode=0o600)
        path.write_text(made, encoding="utf-8")
    except OSError:
        pass  # a read-only home: remembered until the next restart, as before
    return made


def launch(
    runtime: Runtime,
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    block: bool = True,
    sampling: Mapping[str, Any] | None = None,
    api_keys: Sequence[str] = (),
    api: bool = True,
    any_model: bool = False,
    models: list[str] | None = None,
) -> Any:
    """Build the app, mount it beside the OpenAI-compatible API (``/v1``) and serve both on one
    port; returns the running server (when ``block`` is False), whose ``close()`` stops it."""
    import gradio as gr
    from fastapi import FastAPI

    from ..api.server import APIConfig, create_api
    from ..api.serving import Served
    from .ui import CSS, HEAD, PAGE_JS, build_app

    demo, app = build_app(
        runtime,
        store,
        sampling,
        any_model=any_model,
        models=models,
        browser_secret=browser_secret(store.path.parent),
    )
    allowed = [str(store.artifacts_root), *(str(p) for p in app.asset_files())]
    store.artifacts_root.mkdir(parents=True, exist_ok=True)
    demo.queue(default_concurrency_limit=4)
    server = (
        create_api(app.service, store.artifacts_root, APIConfig(keys=api_keys))
        if api
        else FastAPI()
    )
    server = gr.mount_gradio_app(
        server,
        demo,
        path="",
        server_name=host,
        server_port=port,
        auth=auth,
        allowed_paths=allowed,
        # Belt and braces: the database and its journal are never served, whatever is allowed.
        blocked_paths=[str(store.path), f"{store.path}-wal", f"{store.path}-shm"],
        show_error=True,
        ssr_mode=False,
        footer_links=["gradio"],
        css=CSS,
        js=PAGE_JS,
        head=HEAD,
    )
    served = Served(server, host, port).serve(block)
    served.demo = demo  # type: ignore[attr-defined]
    return served
