"""`lollms api`: the OpenAI-compatible API alone (no web app), on 127.0.0.1 by default."""

from __future__ import annotations

import argparse
from typing import Any

from ..argtypes import check_port_free, port
from ..errors import LollmsError


def cmd_api(args: argparse.Namespace) -> int:
    from ..api.server import APIConfig, create_api, refusal_to_expose
    from ..api.serving import Served, api_keys
    from ..conversation import ConversationService
    from ..runtime import runtime_from_args
    from ..store import Store

    keys = api_keys(args.api_key)
    refusal = refusal_to_expose(args.host, keys)
    if refusal:
        raise LollmsError(refusal)
    check_port_free(args.host, args.port)  # before loading the model: a clear message
    runtime = runtime_from_args(args)
    store = Store()
    try:
        service = ConversationService(runtime, store)
        app = create_api(service, store.artifacts_root, APIConfig(keys=keys))
        print(f"lollms API: http://{args.host}:{args.port}/v1 ({len(keys)} key(s))", flush=True)
        Served(app, args.host, args.port).serve(block=True)
    finally:
        store.close()
    return 0


def add_api_key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        default=[],
        help="accept this bearer key on the API (repeatable; also $LOLLMS_API_KEYS, comma-separated); "
        "without one the API answers loopback clients only",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "api",
        parents=[common],
        help="serve the OpenAI-compatible API alone",
        description="Serve every personality as a model on an OpenAI-compatible API "
        "(/v1/models, /v1/chat/completions).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="port (default: 8000)")
    add_api_key_option(p)
    p.set_defaults(handler=cmd_api)
