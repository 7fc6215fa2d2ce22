"""What the web app shares between sessions: the conversation services (one per model), the
personalities, the models a page may choose, and each session's cancel event. Gradio-free."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..conversation import ConversationService
from ..engine import Engine
from ..errors import LollmsError
from ..paths import PathRefused, confined
from ..personality import Personality
from ..runtime import DEFAULT_MODEL, Runtime
from ..store import Discussion, DiscussionStore
from .painters import Readiness, painters_of
from .trace import use_step_kinds

log = logging.getLogger(__name__)

# The sidebar's groups, newest first.
GROUPS = ("Today", "Yesterday", "Earlier")


def group_of(when: float, today: dt.date | None = None) -> str:
    """Which sidebar group a discussion last changed at ``when`` (a timestamp) falls in."""
    day = dt.datetime.fromtimestamp(when).date()
    today = today or dt.date.today()
    if day >= today:
        return GROUPS[0]
    if day == today - dt.timedelta(days=1):
        return GROUPS[1]
    return GROUPS[2]


def when_label(when: float, today: dt.date | None = None) -> str:
    """``14:05`` today and yesterday, ``3 Nov`` this year, ``3 Nov 2025`` before."""
    moment = dt.datetime.fromtimestamp(when)
    today = today or dt.date.today()
    if moment.date() >= today - dt.timedelta(days=1):
        return moment.strftime("%H:%M")
    if moment.year == today.year:
        return f"{moment.day} {moment.strftime('%b')}"
    return f"{moment.day} {moment.strftime('%b %Y')}"


def with_addition(personality: Personality, addition: str) -> Personality:
    """The personality with the user's system prompt addition after its own conditioning."""
    extra = addition.strip()
    if not extra:
        return personality
    conditioning = f"{personality.conditioning.rstrip()}\n\n{extra}".strip()
    return dataclasses.replace(personality, conditioning=conditioning)


class App:
    """The state the web app shares between sessions. Discussions are reached only through
    ``self.service``; turns run through ``service_for(model)``, so each tab (and each discussion)
    keeps its own model without changing anyone else's."""

    def __init__(
        self,
        runtime: Runtime,
        store: DiscussionStore,
        sampling: Mapping[str, Any] | None = None,
        *,
        any_model: bool = False,
        models: list[str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.service = ConversationService(runtime, store)
        use_step_kinds(runtime.host.step_kinds)  # what the trace hides or turns into a notice
        self.sampling = dict(sampling or {})  # the panel's starting overrides (e.g. max_tokens)
        self.any_model = any_model  # a page may type any path or hub id (lollms serve option)
        local = _local() if models is None else {}
        self.models = _unique([runtime.model, *(models if models is not None else local)])
        # What the Model box shows for each (its value stays the spec a turn runs on).
        self.model_labels = {name: local.get(name, name) for name in self.models}
        self._services: dict[str, ConversationService] = {runtime.model: self.service}
        self.personalities: dict[str, Personality] = {}
        # One broken personality never takes the app down: it is left out and listed here, by id
        # (or by file when even its id cannot be read), with its located error; the page shows it.
        self.broken: dict[str, str] = {
            str(entry.path): entry.error for entry in runtime.catalog.broken
        }
        for entry in runtime.catalog.entries:
            try:
                self.personalities[entry.id] = runtime.catalog.get(entry.id)
            except LollmsError as exc:  # an invalid personality is listed by `lollms list`
                self.broken[entry.id] = str(exc)
        for name, error in self.broken.items():
            log.warning("personality %s not shown: %s", name, error)
        if not self.personalities:
            raise LollmsError(
                "no valid personality found: install one (pip install ...) or pass "
                "--personalities DIR"
            )
        self.ids = list(self.personalities)
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._served = frozenset(self.asset_files())
        self.readiness = Readiness(runtime.host.image_backends)
        # Checked once now, off any page's load, so the first page finds the answers ready.
        threading.Thread(target=self._check_painters, name="painters", daemon=True).start()

    # -- painters ---------------------------------------------------------------------------------

    def painters_line(self, pid: str, settings: Mapping[str, Any] | None = None) -> str:
        """The painters ``pid`` may paint with and whether each is ready ("" if it never
        paints); ``settings`` are the page's (default: the saved ones)."""
        p = self.personalities[pid]
        if settings is None:
            settings = {**p.default_settings(), **self.service.settings(pid)}
        default = self.runtime.image_backend_name
        kinds = self.runtime.host.step_kinds
        return self.readiness.line(painters_of(p, settings, default, kinds))

    def _check_painters(self) -> None:
        for pid in self.ids:
            try:
                self.painters_line(pid)
            except Exception:  # only a head start: a page asks again and shows the error
                log.debug("painters of %s not checked", pid, exc_info=True)

    # -- models -----------------------------------------------------------------------------------

    def check_model(self, name: str | None) -> str:
        """The model a page asked for, if it may use it (the server's model when none)."""
        model = (name or "").strip() or self.runtime.model
        if model in self.models or self.any_model:
            return model
        raise LollmsError(
            f"model '{model}' is not one of this server's models ({', '.join(self.models)}); "
            "pull or convert it first (lollms models pull ID), or start the server with "
            "`lollms serve --any-model` to allow any path or hub id"
        )

    def service_for(self, name: str | None) -> ConversationService:
        """The conversation service whose turns run on ``name`` (one per model, shared)."""
        model = self.check_model(name)
        with self._lock:
            found = self._services.get(model)
            if found is None:
                found = self._services[model] = ConversationService(
                    _on_model(self.runtime, model), self.store
                )
            return found

    # -- sessions ---------------------------------------------------------------------------------

    def cancel_for(self, session: str) -> threading.Event:
        """A fresh cancel event for a session's new turn."""
        with self._lock:
            event = threading.Event()
            self._cancels[session] = event
            return event

    def stop(self, session: str) -> bool:
        with self._lock:
            event = self._cancels.get(session)
        if event is None:
            return False
        event.set()
        return True

    # -- personalities ----------------------------------------------------------------------------

    def asset_files(self) -> list[Path]:
        """The personalities' own files the app may serve besides the store's artifacts.

        Exactly the avatar files, each checked again to lie inside its personality's folder, so a
        personality can never widen what is served (never a folder, never ``/``).
        """
        files = set()
        for p in self.personalities.values():
            if p.avatar is None:
                continue
            try:
                path = confined(p.folder, str(p.avatar.relative_to(p.folder.resolve())))
            except (ValueError, PathRefused):
                log.warning("personality %s: avatar %s is outside its folder", p.id, p.avatar)
                continue
            if path.is_file():
                files.add(path)
        return sorted(files)

    def avatar_of(self, p: Personality) -> str | None:
        """The avatar to show, only when it is one of the files the app serves."""
        return str(p.avatar) if p.avatar is not None and p.avatar in self._served else None

    def filtered(self, category: str, search: str) -> list[str]:
        """Personality ids matching the category filter and the search text."""
        needle = search.strip().lower()
        found = []
        for pid, p in self.personalities.items():
            if category not in ("", "All") and p.category != category:
                continue
            haystack = " ".join((p.id, p.name, p.description, " ".join(p.tags))).lower()
            if needle and needle not in haystack:
                continue
            found.append(pid)
        return found

    def gallery(self, ids: list[str]) -> list[tuple[str, str]]:
        return [
            (shown, self.personalities[pid].name)
            for pid in ids
            if (shown := self.avatar_of(self.personalities[pid]))
        ]

    # -- the sidebar ------------------------------------------------------------------------------

    def discussion_groups(self, search: str = "") -> dict[str, list[tuple[str, str]]]:
        """The sidebar's lists by group (Today, Yesterday, Earlier): (label, id), newest first."""
        groups: dict[str, list[tuple[str, str]]] = {g: [] for g in GROUPS}
        today = dt.date.today()
        for d in self.service.discussions(search=search or None):
            groups[group_of(d.updated_at, today)].append((self.discussion_label(d, today), d.id))
        return groups

    def discussion_label(self, d: Discussion, today: dt.date | None = None) -> str:
        p = self.personalities.get(d.personality_id)
        who = p.name if p else d.personality_id
        return f"{d.title or '(untitled)'} · {who} · {when_label(d.updated_at, today)}"

    def discussion_choices(self, search: str = "") -> list[tuple[str, str]]:
        """Every discussion of the sidebar in one list, newest first."""
        return [c for group in self.discussion_groups(search).values() for c in group]

    def same_import(self, data: Mapping[str, Any]) -> Discussion | None:
        """A discussion already imported from this export (the same title and start time)."""
        raw = data.get("discussion")
        if not isinstance(raw, Mapping):
            return None
        title, created = raw.get("title"), raw.get("created_at")
        for d in self.service.discussions(limit=1000):
            if d.title == title and d.created_at == created:
                return d
        return None


def _on_model(runtime: Runtime, model: str) -> Runtime:
    """A view of ``runtime`` whose turns run on ``model``: the same catalog, plugins and backend
    cache (models stay shared and load once), another default model."""
    view = copy.copy(runtime)
    view.model = model
    view.engine = Engine(
        runtime.host,
        lambda personality: runtime.text_backend(personality, model),
        runtime.image_backend,
        limits=runtime.engine.limits,
        resolve_personality=runtime.catalog.get,
    )
    return view


def _local() -> dict[str, str]:
    """The text models on this machine (converted, pulled), as ``lollms models`` lists them, each
    with the name the Model box shows: the embedded default says which model it is."""
    try:
        from ..commands.models import local_text_models

        return {
            m.id: f"{m.id} ({m.path.stem}, embedded)" if m.id == DEFAULT_MODEL else m.id
            for m in local_text_models()
        }
    except Exception:  # a broken cache must not keep the app from starting
        log.warning("could not list the local models", exc_info=True)
        return {}


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(n for n in names if n))
