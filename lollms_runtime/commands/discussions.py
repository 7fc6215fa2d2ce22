"""`lollms discussions`: list, show, export and delete saved discussions (the app's store)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..argtypes import positive_int


def _service() -> Any:
    from ..conversation import ConversationService
    from ..store import Store

    return ConversationService(None, Store())  # no runtime: these actions run no turn


def cmd_discussions(args: argparse.Namespace) -> int:
    service = _service()
    if args.action == "list":
        items = service.discussions(search=args.search, limit=args.limit)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": d.id,
                            "title": d.title,
                            "personality": d.personality_id,
                            "updated": d.updated_at,
                        }
                        for d in items
                    ],
                    indent=2,
                )
            )
            return 0
        for d in items:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.updated_at))
            print(f"{d.id}  {when}  {d.personality_id:<14} {d.title}")
        if not items:
            print('No discussions yet. Start one with `lollms run ID "message"` or `lollms serve`.')
        return 0
    if not args.id:
        print("error: give a discussion id", file=sys.stderr)
        return 1
    if args.action == "show":
        sys.stdout.write(service.export_markdown(args.id))
    elif args.action == "export":
        if args.format == "json":
            print(json.dumps(service.export_json(args.id), indent=2))
        else:
            sys.stdout.write(service.export_markdown(args.id))
    elif args.action == "delete":
        service.delete(args.id)
        print(f"deleted {args.id}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "discussions", parents=[common], help="list, show, export or delete saved discussions"
    )
    p.add_argument(
        "action", nargs="?", default="list", choices=["list", "show", "export", "delete"]
    )
    p.add_argument("id", nargs="?", help="discussion id (for show, export, delete)")
    p.add_argument("--search", help="only discussions whose title or messages match")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--format", choices=["md", "json"], default="md", help="export format")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(handler=cmd_discussions)
