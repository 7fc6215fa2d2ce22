"""The plugin host: builds the pluggy manager, loads entry points, collects what plugins register."""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .contracts import ImageBackendFactory, PostProcessor, StepKind, TextBackendFactory

ENTRY_POINT_GROUP = "lollms_runtime"
hookimpl = pluggy.HookimplMarker("lollms_runtime")

# Built-in plugins, registered exactly like third-party ones (after them, so a plugin may override).
DEFAULT_PLUGINS = (
    "lollms_runtime.default_plugins.steps",
    "lollms_runtime.default_plugins.postprocessors",
    "lollms_runtime.default_plugins.mlx_backend",
    "lollms_runtime.default_plugins.openai_backend",
    "lollms_runtime.default_plugins.image_backends",
    "lollms_runtime.default_plugins.commands",
    "lollms_runtime.default_plugins.knowledge",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not load or whose hook raised: reported by name, never fatal."""

    name: str
    stage: str
    error: str
    detail: str = ""

    def __str__(self) -> str:
        return f"plugin {self.name!r} failed ({self.stage}): {self.error}"


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get("LOLLMS_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def get_plugin_manager(
    *, extra_plugins: Iterable[object] = (), load_entry_points: bool = True
) -> pluggy.PluginManager:
    """A new plugin manager with the built-ins, the ``lollms_runtime`` entry points and ``extra_plugins``.

    ``LOLLMS_LOAD_PLUGINS`` (comma-separated entry-point names, possibly empty) restricts which
    installed plugins load; the built-ins always load. Failures are kept in ``pm.lollms_failures``.
    """
    pm = pluggy.PluginManager("lollms_runtime")
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    pm.lollms_failures = failures  # type: ignore[attr-defined]

    if load_entry_points:
        allowed = _allowed_plugins()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                failures.append(_failure(ep.name, "import", exc))
                continue
            _register(pm, plugin, ep.name, failures)

    for plugin in extra_plugins:
        # Named like pluggy names modules, and instances after their class, so that failures
        # are reported by a readable name rather than an object id.
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        _register(pm, plugin, None if pm.has_plugin(name) else name, failures)
    for module_name in DEFAULT_PLUGINS:
        _register(pm, importlib.import_module(module_name), module_name, failures)
    return pm


def _failure(name: str, stage: str, exc: BaseException, explained: str = "") -> PluginFailure:
    return PluginFailure(
        name=name,
        stage=stage,
        error=explained or f"{type(exc).__name__}: {exc}",
        detail="".join(traceback.format_exception(exc)),
    )


def _register(
    pm: pluggy.PluginManager, plugin: object, name: str | None, failures: list[PluginFailure]
) -> None:
    try:
        registered = pm.register(plugin, name=name)
    except Exception as exc:  # bad hook signature, duplicate name
        failures.append(_failure(name or repr(plugin), "register", exc, _explain(plugin, exc)))
        return
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # an implementation of a hook that does not exist
        pm.unregister(plugin)
        failures.append(
            _failure(registered or name or repr(plugin), "register", exc, _explain(plugin, exc))
        )


def _explain(plugin: object, exc: BaseException) -> str:
    """pluggy's validation errors, as one line that says which hook is wrong and how."""
    if not isinstance(exc, pluggy.PluginValidationError):
        return ""
    known = [
        name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "lollms_runtime_spec")
    ]
    for attr in dir(plugin):
        impl = getattr(plugin, attr, None)
        if not hasattr(impl, "lollms_runtime_impl") or not callable(impl):
            continue
        if attr not in known:
            close = difflib.get_close_matches(attr, known, n=1)
            tip = f"did you mean '{close[0]}'?" if close else "see `lollms plugins` for the hooks"
            return f"implements unknown hook '{attr}' ({tip})"
        wanted = list(inspect.signature(getattr(hookspecs, attr)).parameters)
        given = list(inspect.signature(impl).parameters)
        if not set(given) <= set(wanted):
            return (
                f"hook '{attr}' takes ({', '.join(wanted)}) but the plugin's "
                f"implementation takes ({', '.join(given)})"
            )
    return ""


class PluginHost:
    """Everything the plugins registered, collected once per manager (one hook call per kind)."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else get_plugin_manager()
        self.failures: list[PluginFailure] = getattr(self.pm, "lollms_failures", [])

    @cached_property
    def step_kinds(self) -> dict[str, StepKind]:
        return self._collect_named("register_step_kinds", StepKind)

    @cached_property
    def postprocessors(self) -> dict[str, PostProcessor]:
        return self._collect_named("register_postprocessors", PostProcessor)

    @cached_property
    def text_backends(self) -> dict[str, TextBackendFactory]:
        return self._collect_named("register_text_backends", TextBackendFactory)

    @cached_property
    def image_backends(self) -> dict[str, ImageBackendFactory]:
        return self._collect_named("register_image_backends", ImageBackendFactory)

    @cached_property
    def personality_sources(self) -> list[tuple[Path, str]]:
        """``(path, plugin name)`` for every personality a plugin registered."""
        found: list[tuple[Path, str]] = []
        current = {"plugin": ""}

        def register(path: str | os.PathLike[str]) -> None:
            found.append((Path(path), current["plugin"]))

        for impl in reversed(self.pm.hook.register_personalities.get_hookimpls()):
            current["plugin"] = impl.plugin_name
            try:
                impl.function(register)
            except Exception as exc:
                self.failures.append(_failure(impl.plugin_name, "register_personalities", exc))
        return found

    def _collect_named(self, hook_name: str, kind: type[Any]) -> dict[str, Any]:
        items: dict[str, Any] = {}

        def register(item: Any) -> None:
            if not isinstance(item, kind):
                raise TypeError(f"expected a {kind.__name__}, got {type(item).__name__}")
            name: str = item.name
            items[name] = item  # plugins come after the built-ins, so a plugin may override one

        for impl in reversed(self._hookimpls(hook_name)):
            before = dict(items)
            try:
                impl.function(register)
            except Exception as exc:
                items.clear()
                items.update(before)  # drop a half-registered plugin's items
                self.failures.append(_failure(impl.plugin_name, hook_name, exc))
        return items

    def _hookimpls(self, hook_name: str) -> list[Any]:
        return list(getattr(self.pm.hook, hook_name).get_hookimpls())

    def plugin_names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]
