"""Which plugin distribution brings back a step kind that no loaded plugin provides: named by the
catalog (an unavailable personality) and by the loader (an unknown step kind)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

# The step kinds of the plugins this project publishes, for a personality that uses one without
# naming its distribution under ``dependencies:`` (the personality's own list is asked first).
KNOWN_PROVIDERS = {"speak": "lollms-speech", "tool": "lollms-mcp"}


def install_command(missing: Iterable[str], dependencies: Any) -> str:
    """The command that brings the missing kinds back: the distributions the personality declares
    under ``dependencies:`` that are not installed, else the known provider of each kind."""
    declared = (
        [d for d in dependencies if isinstance(d, str)] if isinstance(dependencies, list) else []
    )
    return _install_command(tuple(sorted(set(missing))), tuple(declared))


@lru_cache(maxsize=256)  # listing hundreds of personalities asks the same few questions
def _install_command(missing: tuple[str, ...], declared: tuple[str, ...]) -> str:
    from importlib import metadata

    wanted: list[str] = []
    for name in declared:
        requirement = name.split(";")[0].strip()
        bare = requirement
        for stop in "<>=!~[ ":
            bare = bare.split(stop)[0]
        if not bare or bare == "lollms-runtime":
            continue
        try:
            metadata.distribution(bare)
        except metadata.PackageNotFoundError:
            wanted.append(requirement)
    if not wanted:
        wanted = sorted({KNOWN_PROVIDERS[k] for k in missing if k in KNOWN_PROVIDERS})
    if not wanted:
        return ""
    import shlex

    return " && ".join(f"lollms install {shlex.quote(name)}" for name in wanted)  # one per call


def plugins_restricted_note() -> str:
    """When LOLLMS_LOAD_PLUGINS is set, the plugin may be installed but not loaded: say so."""
    if os.environ.get("LOLLMS_LOAD_PLUGINS") is None:
        return ""
    return "; if it is installed, add its plugin to LOLLMS_LOAD_PLUGINS"
