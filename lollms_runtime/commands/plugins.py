"""`lollms plugins` and `lollms schema`: what the installed plugins register, and the format."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import host as _host


def cmd_plugins(args: argparse.Namespace) -> int:
    host = _host()
    plugins = []
    for name, plugin in host.pm.list_name_plugin():
        hooks = sorted(impl.name for impl in host.pm.get_hookcallers(plugin) or [])
        dist = (
            host.pm.get_plugin_dist_info(plugin)
            if hasattr(host.pm, "get_plugin_dist_info")
            else None
        )
        plugins.append(
            {"name": name, "hooks": hooks, "distribution": getattr(dist, "project_name", None)}
        )
    registered = {
        "step_kinds": sorted(host.step_kinds),
        "postprocessors": sorted(host.postprocessors),
        "text_backends": sorted(host.text_backends),
        "image_backends": sorted(host.image_backends),
    }
    failures = [{"name": f.name, "stage": f.stage, "error": f.error} for f in host.failures]
    sections = _described(host, failures)
    if args.json:
        print(
            json.dumps(
                {"plugins": plugins, **registered, "sections": sections, "failures": failures},
                indent=2,
            )
        )
        return 0
    for p in plugins:
        print(f"{p['name']}: {', '.join(p['hooks'])}")
    print()
    for key, names in registered.items():
        print(f"{key.replace('_', ' ')}: {', '.join(names) or '-'}")
    for section in sections:
        print(f"\n{section['title']} ({section['plugin']}):")
        for line in section["lines"]:
            print(f"  {line}")
    for f in failures:
        print(f"FAILED {f['name']} ({f['stage']}): {f['error']}", file=sys.stderr)
    return 0


def _described(host: Any, failures: list[dict[str, str]]) -> list[dict[str, Any]]:
    """What plugins add to this listing (``describe_plugin``), each section named by its plugin;
    a plugin whose hook raises is reported among the failures, the others still shown."""
    sections: list[dict[str, Any]] = []
    for impl in host.pm.hook.describe_plugin.get_hookimpls():

        def report(title: str, lines: Any, plugin: str = impl.plugin_name) -> None:
            sections.append(
                {"plugin": plugin, "title": str(title), "lines": [str(x) for x in lines]}
            )

        try:
            impl.function(report=report)
        except Exception as exc:  # a plugin's bug must not hide what the others registered
            failures.append(
                {"name": impl.plugin_name, "stage": "describe_plugin", "error": f"{exc!r}"}
            )
    return sections


def cmd_schema(args: argparse.Namespace) -> int:
    host = _host()
    if args.markdown:
        from ..docs_gen import reference_markdown

        sys.stdout.write(reference_markdown(host))
    else:
        from ..schema import build_schema

        print(json.dumps(build_schema(host.step_kinds, host.postprocessors), indent=2))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    help = "list plugins and what they register"
    p = sub.add_parser("plugins", help=help, description=help, parents=[common])
    p.set_defaults(handler=cmd_plugins)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    help = "print the personality JSON Schema (with installed step kinds)"
    p = sub.add_parser("schema", help=help, description=help, parents=[common])
    p.set_defaults(handler=cmd_schema)
    p.add_argument("--markdown", action="store_true", help="the format reference in Markdown")
