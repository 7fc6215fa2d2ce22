"""`lollms serve`: the generated web app on 127.0.0.1 (optionally behind a login)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..argtypes import check_port_free, port, sampling_value
from ..errors import LollmsError
from .api import add_api_key_option


def cmd_serve(args: argparse.Namespace) -> int:
    from ..app.server import launch, parse_auth
    from ..runtime import runtime_from_args
    from ..store import Store

    try:
        auth = parse_auth(args.auth)
    except ValueError as exc:
        raise LollmsError(str(exc)) from None
    check_port_free(args.host, args.port)  # before loading anything: a clear message
    from ..api.server import refusal_to_expose
    from ..api.serving import api_keys

    keys = api_keys(args.api_key)
    refusal = refusal_to_expose(args.host, keys)
    if refusal:
        print(f"warning: the API (/v1) is not started: {refusal}")
    runtime = runtime_from_args(args)
    _warn_broken(runtime.catalog)
    store = Store()
    if args.host not in ("127.0.0.1", "localhost", "::1") and auth is None:
        print(
            f"warning: serving on {args.host} without --auth: anyone who can reach this "
            "address can use the app"
        )
    api = "" if refusal else f"; API on http://{args.host}:{args.port}/v1"
    print(f"lollms: http://{args.host}:{args.port} (discussions in {store.path}{api})", flush=True)
    try:
        sampling = {"max_tokens": args.max_tokens} if args.max_tokens else None
        launch(
            runtime,
            store,
            host=args.host,
            port=args.port,
            auth=auth,
            sampling=sampling,
            api_keys=keys,
            api=not refusal,
            any_model=args.any_model,
        )
    finally:
        store.close()
    return 0


def _warn_broken(catalog: Any) -> None:
    """Personalities that cannot be served are named at start-up; the app serves the others."""
    broken = [(str(e.path), e.error) for e in catalog.broken]
    for entry in catalog.entries:
        try:
            catalog.get(entry.id)  # loaded once: the app reuses it
        except LollmsError as exc:
            broken.append((entry.id, str(exc)))
    for name, error in broken:
        print(f"warning: personality {name} not served: {error}", file=sys.stderr)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="open the web app",
        description="Serve the web app: pick a personality, chat, tune its settings.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=7860, help="port (default: 7860)")
    p.add_argument("--auth", metavar="USER:PASS", help="require this login")
    p.add_argument(
        "--max-tokens",
        type=sampling_value("max_tokens", int),
        help="start the sampling panel at this many tokens per step",
    )
    p.add_argument(
        "--any-model",
        action="store_true",
        help="let a page run any model path or Hugging Face id (default: only the models "
        "`lollms models` lists and --model); each tab and discussion keeps its own model",
    )
    add_api_key_option(p)
    p.set_defaults(handler=cmd_serve)
