"""The web app's event handlers: each takes component values and returns component updates.

Every turn runs through :class:`~lollms_runtime.app.turns.Chat` on the conversation service of the
tab's model; nothing here changes state another tab can see, except the discussions themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import gradio as gr

from ..errors import LollmsError
from ..personality import Personality
from ..store import StoreError
from ..store.export import read_export
from . import controls
from .state import GROUPS, App, with_addition
from .turns import Chat, error_text

TurnUpdate = tuple[Any, Any, Any]
# What a turn handler yields when it does nothing: a generator that yields nothing sets its
# outputs to empty values (the chat went blank when that answer arrived last).
UNCHANGED: TurnUpdate = (gr.skip(), gr.skip(), gr.skip())
# Message actions besides Gradio's own retry/edit/copy: shown in each answer's menu.
CONTINUE, PREVIOUS, NEXT = "Continue", "◀ Previous version", "Next version ▶"
REPEAT_S = 2.0  # the same menu choice on the same message again within this is the echo


def _header(p: Personality) -> str:
    by = f" · by {p.author}" if p.author else ""
    category = f" · {p.category}" if p.category else ""
    return f"### {p.name}\n<sub>v{p.version}{by}{category}</sub>\n\n{p.description.strip()}"


def _disclaimer(p: Personality) -> str:
    return f"<sub>⚠️ {p.disclaimer.strip()}</sub>" if p.disclaimer else ""


def read_attachments(files: list[str]) -> list[tuple[str, bytes]]:
    """The files a user attached (uploaded paths) as (name, bytes); one too large is refused
    before it is read (the index refuses what it cannot read when the message is sent)."""
    from ..knowledge.library import read_attachment
    from ..knowledge.limits import MAX_ATTACHMENTS

    if len(files) > MAX_ATTACHMENTS:
        raise LollmsError(f"{len(files)} files attached; at most {MAX_ATTACHMENTS} per message")
    return [(Path(file).name, read_attachment(Path(file))) for file in files]


def attached_note(files: list[str]) -> str:
    """What waits to go with the next message."""
    if not files:
        return ""
    names = ", ".join(Path(f).name for f in files)
    return f"<sub>Attached: {names} — sent with your next message</sub>"


class Handlers:
    """The handlers of one built app (``offsets``: each personality's slice of the settings)."""

    def __init__(
        self, app: App, *, offsets: dict[str, tuple[int, int]], n_settings: int, n_sampling: int
    ) -> None:
        self.app = app
        self.offsets = offsets
        self.n_settings = n_settings
        self.n_sampling = n_sampling
        self.chat = Chat(app.service)
        self._lock = threading.Lock()
        self._recent: dict[tuple[str, int, str], float] = {}

    # -- what a page shows ------------------------------------------------------------------------

    def split(self, pid: str, values: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Settings and sampling from the run inputs (settings, sampling panel, min p, stops)."""
        start, end = self.offsets[pid]
        settings = controls.settings_from(self.app.personalities[pid], values[start:end])
        panel = values[self.n_settings : self.n_settings + self.n_sampling]
        sampling = controls.sampling_from(panel)
        rest = values[self.n_settings + self.n_sampling :]
        if len(rest) >= 2:
            if rest[0] is not None:
                sampling["min_p"] = float(rest[0])
            sampling["stop"] = [s for s in str(rest[1] or "").splitlines() if s]
        return settings, sampling

    def personality_view(
        self,
        pid: str,
        discussion_id: str | None,
        remembered: dict[str, Any] | None = None,
        show_all: bool = False,
        model: Any = None,
    ) -> list[Any]:
        app = self.app
        p = app.personalities[pid]
        shown = self.chat.show(p, discussion_id, show_all=show_all)
        saved = controls.saved_values(p, app.service.settings(pid))
        values: list[Any] = [gr.skip()] * self.n_settings
        start, _end = self.offsets[pid]
        for index, setting in enumerate(p.settings.values()):
            values[start + index] = saved[setting.name]
        remembered = remembered or {}
        panel = p.sampling.merged(app.sampling)
        kept = (remembered.get("sampling") or {}).get(pid)
        sampling_values = controls.sampling_values(panel)
        min_p, stops = panel.min_p, "\n".join(panel.stop)
        if isinstance(kept, dict):
            values_kept = kept.get("panel")
            if isinstance(values_kept, list) and len(values_kept) == len(sampling_values):
                sampling_values = values_kept
            min_p = kept.get("min_p", min_p)
            stops = kept.get("stop", stops)
        addition = (remembered.get("system") or {}).get(pid, "")
        return [
            pid,
            # No avatar: no empty picture frame beside the name.
            gr.Image(value=app.avatar_of(p), visible=app.avatar_of(p) is not None),
            _header(p),
            _disclaimer(p),
            gr.Dataset(samples=[[e] for e in p.examples]),
            *[gr.Column(visible=other == pid) for other in app.ids],
            *[
                gr.Row(visible=other == pid and bool(app.personalities[other].commands))
                for other in app.ids
            ],
            *values,
            *sampling_values,
            min_p,
            stops,
            addition,
            gr.Chatbot(value=cast(Any, shown.messages), avatar_images=(None, app.avatar_of(p))),
            discussion_id,
            shown.ids,
            gr.skip() if model is None else model,
        ]

    def model_of(self, discussion_id: str | None, remembered: dict[str, Any] | None) -> Any:
        """The model a reopened discussion ran on (if this server may run it), else the tab's."""
        candidates = []
        if discussion_id:
            candidates.append(self.app.service.get(discussion_id).model)
        candidates.append((remembered or {}).get("model"))
        for name in candidates:
            if not name:
                continue
            try:
                return self.app.check_model(name)
            except LollmsError:
                continue
        return None

    def choose(self, pid: str, remembered: dict[str, Any], show_all: bool) -> list[Any]:
        return self.personality_view(pid, None, remembered, show_all)

    def choose_from_gallery(
        self, ids: list[str], remembered: dict[str, Any], event: gr.SelectData
    ) -> list[Any]:
        with_avatar = [pid for pid in ids if self.app.avatar_of(self.app.personalities[pid])]
        return self.personality_view(with_avatar[event.index], None, remembered)

    def open(
        self, discussion_id: str | None, remembered: dict[str, Any], show_all: bool
    ) -> list[Any]:
        if not discussion_id:
            return [gr.skip()] * (self.n_outputs + 1)
        try:
            d = self.app.service.get(discussion_id)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        if d.personality_id not in self.app.personalities:
            raise gr.Error(
                f"this discussion was with '{d.personality_id}', which is not installed: "
                "install it, or export the discussion to read it"
            )
        model = self.model_of(d.id, remembered)
        view = self.personality_view(d.personality_id, d.id, remembered, show_all, model)
        return [*view, d.title]

    @property
    def n_outputs(self) -> int:
        return 12 + 2 * len(self.app.ids) + self.n_settings + self.n_sampling

    def restore(
        self,
        remembered: dict[str, Any] | None,
        width: float | None,
        show_all: bool,
        request: gr.Request,
    ) -> list[Any]:
        """A page (re)loads: the discussion of its link (``?d=ID``) or the one it had open, else
        the personality it had; the sidebar starts closed on a phone-sized screen."""
        remembered = remembered if isinstance(remembered, dict) else {}
        sidebar = gr.Sidebar(open=not width or width >= 820)
        wanted = dict(request.query_params).get("d") if request is not None else None
        for discussion_id in (wanted, remembered.get("discussion")):
            if not discussion_id:
                continue
            try:
                return [*self.open(discussion_id, remembered, show_all), sidebar]
            except gr.Error:
                if discussion_id == wanted:
                    gr.Warning(f"no discussion {discussion_id} here: it was deleted?")
        pid = remembered.get("personality")
        if pid not in self.app.personalities:
            pid = self.app.ids[0]
        model = self.model_of(None, remembered)
        return [*self.personality_view(pid, None, remembered, show_all, model), "", sidebar]

    def redraw(self, pid: str, discussion_id: str | None, show_all: bool) -> list[Any]:
        shown = self.chat.show(self.app.personalities[pid], discussion_id, show_all=show_all)
        return [shown.messages, shown.ids]

    def lists(self, search: str, discussion_id: str | None) -> list[Any]:
        """The sidebar: one list per group (Today, Yesterday, Earlier), empty ones hidden."""
        found = self.app.discussion_groups(search or "")
        updates: list[Any] = []
        for group in GROUPS:
            choices = found[group]
            selected = discussion_id if any(c[1] == discussion_id for c in choices) else None
            updates.append(gr.Radio(choices=choices, value=selected, visible=bool(choices)))
        nothing = "*Nothing found.*" if search else "*No discussions yet.*"
        updates.append(gr.Markdown(nothing, visible=not any(found.values())))
        return updates

    def painters(self, pid: str, *values: Any) -> Any:
        """Which painters ``pid`` may use, with the page's settings, and whether each is ready
        (hidden for a personality that never paints)."""
        start, end = self.offsets[pid]
        settings = controls.settings_from(self.app.personalities[pid], values[start:end])
        line = self.app.painters_line(pid, settings)
        return gr.Markdown(line, visible=bool(line))

    def link_text(self, discussion_id: str | None) -> str:
        return (
            f"Link to this discussion: [?d={discussion_id}](?d={discussion_id})"
            if discussion_id
            else ""
        )

    # -- turns ------------------------------------------------------------------------------------

    def _turn(
        self,
        start: Callable[[Chat, Personality, dict[str, Any], dict[str, Any], Any], Iterator[Any]],
        pid: str,
        model: str | None,
        addition: str,
        show_all: bool,
        history: list[Any],
        request: gr.Request,
        values: tuple[Any, ...],
    ) -> Iterator[TurnUpdate]:
        try:
            service = self.app.service_for(model)
        except LollmsError as exc:
            raise gr.Error(str(exc)) from None
        chat = Chat(service, show_all=show_all)
        settings, sampling = self.split(pid, values)
        personality = with_addition(self.app.personalities[pid], addition or "")
        cancel = self.app.cancel_for(request.session_hash or "")
        try:
            for discussion_id, shown in start(chat, personality, settings, sampling, cancel):
                yield shown.messages, discussion_id, shown.ids
        except LollmsError as exc:
            yield (
                [*history, {"role": "assistant", "content": error_text(str(exc))}],
                gr.skip(),
                gr.skip(),
            )

    def send(
        self,
        text: str,
        files: list[str] | None,
        pid: str,
        discussion_id: str | None,
        model: str | None,
        addition: str,
        show_all: bool,
        history: list[Any],
        request: gr.Request,
        *values: Any,
    ) -> Iterator[TurnUpdate]:
        if not (text or "").strip():
            gr.Info("Type a message first.")
            yield UNCHANGED
            return
        try:
            attachments = read_attachments(files or [])
        except LollmsError as exc:
            hint = getattr(exc, "hint", "")
            raise gr.Error(f"{exc}: {hint}" if hint else str(exc)) from None
        yield from self._turn(
            lambda chat, p, settings, sampling, cancel: chat.send(
                p,
                text,
                discussion_id=discussion_id,
                settings=settings,
                sampling=sampling,
                cancel=cancel,
                attachments=attachments,
            ),
            pid,
            model,
            addition,
            show_all,
            history,
            request,
            values,
        )

    def regenerate(
        self,
        pid: str,
        discussion_id: str | None,
        model: str | None,
        addition: str,
        show_all: bool,
        history: list[Any],
        request: gr.Request,
        *values: Any,
    ) -> Iterator[TurnUpdate]:
        if not discussion_id or not self.chat.service.history(discussion_id):
            gr.Info("Nothing to retry yet: send a message first.")
            yield UNCHANGED
            return
        yield from self._turn(
            lambda chat, p, settings, sampling, cancel: chat.regenerate(
                p, discussion_id, settings=settings, sampling=sampling, cancel=cancel
            ),
            pid,
            model,
            addition,
            show_all,
            history,
            request,
            values,
        )

    def continue_(
        self,
        pid: str,
        discussion_id: str | None,
        model: str | None,
        addition: str,
        show_all: bool,
        history: list[Any],
        request: gr.Request,
        values: tuple[Any, ...],
    ) -> Iterator[TurnUpdate]:
        if not discussion_id:
            gr.Info("Nothing to continue yet: send a message first.")
            yield UNCHANGED
            return
        yield from self._turn(
            lambda chat, p, settings, sampling, cancel: chat.continue_(
                p, discussion_id, settings=settings, sampling=sampling, cancel=cancel
            ),
            pid,
            model,
            addition,
            show_all,
            history,
            request,
            values,
        )

    def edit(
        self,
        ids: list[str | None],
        pid: str,
        discussion_id: str | None,
        model: str | None,
        addition: str,
        show_all: bool,
        history: list[Any],
        request: gr.Request,
        event: gr.EditData,
        *values: Any,
    ) -> Iterator[TurnUpdate]:
        index = event.index if isinstance(event.index, int) else event.index[0]
        message_id = ids[index] if 0 <= index < len(ids) else None
        if message_id is None and "lollms-versions" in str(event.value):
            yield UNCHANGED  # the version counter, sent along with the message it is under
            return
        if not discussion_id or message_id is None:
            gr.Info("Only messages you sent in this discussion can be edited.")
            yield UNCHANGED
            return
        value = event.value
        text = value if isinstance(value, str) else str(value.get("text", value))
        yield from self._turn(
            lambda chat, p, settings, sampling, cancel: chat.edit(
                p,
                discussion_id,
                message_id,
                text,
                settings=settings,
                sampling=sampling,
                cancel=cancel,
            ),
            pid,
            model,
            addition,
            show_all,
            history,
            request,
            values,
        )

    def act(
        self,
        ids: list[str | None],
        pid: str,
        discussion_id: str | None,
        model: str | None,
        addition: str,
        show_all: bool,
        history: list[Any],
        request: gr.Request,
        event: gr.LikeData,
        *values: Any,
    ) -> Iterator[TurnUpdate]:
        """An answer's menu: Continue, or the previous / next version of the answer."""
        index = event.index if isinstance(event.index, int) else event.index[0]
        if not event.liked or self._repeated(request.session_hash or "", index, event.liked):
            yield UNCHANGED  # the echo: yielding nothing would empty the chat if it ends last
            return
        last = max((i for i, m in enumerate(ids) if m is not None), default=-1)
        is_last = 0 <= index < len(ids) and ids[index] is not None and ids[index] == ids[last]
        if event.liked in (PREVIOUS, NEXT, CONTINUE) and not is_last:
            gr.Info("That works on the last answer: open its branch first.")
            yield UNCHANGED
            return
        if event.liked == CONTINUE:
            yield from self.continue_(
                pid, discussion_id, model, addition, show_all, history, request, values
            )
        elif event.liked in (PREVIOUS, NEXT) and discussion_id:
            messages, shown_ids, *_ = self.switch(
                pid, discussion_id, "assistant", -1 if event.liked == PREVIOUS else 1, show_all
            )
            yield messages, discussion_id, shown_ids
        else:
            yield UNCHANGED

    def _repeated(self, session: str, index: int, action: Any) -> bool:
        """Gradio's answer menu sends each choice twice: act once (a version switch or a
        Continue must not run twice)."""
        now = time.monotonic()
        key = (session, index, str(action))
        with self._lock:
            seen = self._recent.get(key)
            self._recent = {k: t for k, t in self._recent.items() if now - t < REPEAT_S}
            self._recent[key] = now
        return seen is not None and now - seen < REPEAT_S

    def stop(self, request: gr.Request) -> None:
        """Stop this tab's turn: its stream ends by itself, drawn *stopped* with its text so far."""
        if not self.app.stop(request.session_hash or ""):
            gr.Info("Nothing is running.")

    def switch(
        self, pid: str, discussion_id: str | None, role: str, step: int, show_all: bool
    ) -> list[Any]:
        if not discussion_id:
            raise gr.Error("Open a discussion first.")
        try:
            self.chat.switch(discussion_id, role, step)
        except (LollmsError, StoreError) as exc:
            gr.Info(str(exc))
        shown = self.chat.show(self.app.personalities[pid], discussion_id, show_all=show_all)
        return [shown.messages, shown.ids]

    def undo(self, pid: str, discussion_id: str | None, show_all: bool, box: str) -> list[Any]:
        """Gradio's undo on the last answer: the last exchange is taken back, its message is
        offered again in the box."""
        try:
            if not discussion_id:  # the welcome alone: a note, not an error badge
                raise LollmsError("nothing to undo yet")
            box = self.chat.undo(discussion_id)
        except (LollmsError, StoreError) as exc:
            gr.Info(str(exc))
        shown = self.chat.show(self.app.personalities[pid], discussion_id, show_all=show_all)
        return [shown.messages, shown.ids, box]

    def switcher(self, role: str, step: int) -> Any:
        return lambda pid, discussion_id, show_all: self.switch(
            pid, discussion_id, role, step, show_all
        )

    # -- discussions ------------------------------------------------------------------------------

    def pick_model(self, name: str | None) -> Any:
        try:
            return self.app.check_model(name)
        except LollmsError as exc:
            gr.Warning(str(exc))
            return self.app.runtime.model

    def new(self, pid: str, remembered: dict[str, Any]) -> list[Any]:
        return self.personality_view(pid, None, remembered)

    def rename(self, discussion_id: str | None, new_title: str, search: str) -> list[Any]:
        if not discussion_id:
            raise gr.Error("Open a discussion first.")
        self.app.service.rename(discussion_id, new_title)
        return self.lists(search, discussion_id)

    def ask_delete(self, discussion_id: str | None) -> Any:
        if not discussion_id:
            gr.Info("Open a discussion first.")
            return gr.Row(visible=False)
        return gr.Row(visible=True)

    def delete(self, pid: str, discussion_id: str | None, remembered: dict[str, Any]) -> list[Any]:
        if not discussion_id:
            raise gr.Error("Open a discussion first.")
        self.app.service.delete(discussion_id)
        gr.Info("Discussion deleted.")
        return [*self.personality_view(pid, None, remembered), gr.Row(visible=False)]

    def export(self, discussion_id: str | None, kind: str) -> str:
        if not discussion_id:
            raise gr.Error("Open a discussion first.")
        service = self.app.service
        # In the discussion's own folder (which the app may serve and which goes with the
        # discussion), pruned as new ones are written: never piling up in /tmp.
        exports = service.store.artifact_dir(discussion_id) / "exports"
        return str(service.export_file(discussion_id, kind, exports))

    def import_file(self, file: Any, remembered: dict[str, Any], show_all: bool) -> list[Any]:
        path = Path(file if isinstance(file, str) else file.name)
        try:
            data = read_export(path.read_bytes())  # bounded: size, nesting, finite numbers
            existing = self.app.same_import(data) if isinstance(data, dict) else None
            if existing is not None:
                gr.Info(
                    f"{path.name} is already here: “{existing.title or '(untitled)'}” "
                    "(opened it instead of importing it twice)"
                )
                return self.open(existing.id, remembered, show_all)
            discussion_id = self.app.service.import_json(data)
        except (OSError, ValueError, StoreError) as exc:
            raise gr.Error(f"could not import {path.name}: {exc}") from None
        return self.open(discussion_id, remembered, show_all)

    def save_settings(self, pid: str, *values: Any) -> None:
        start, end = self.offsets[pid]
        settings = controls.settings_from(self.app.personalities[pid], values[start:end])
        self.app.service.save_settings(pid, settings)

    def refilter(self, cat: str, text: str) -> tuple[list[tuple[str, str]], list[str]]:
        ids = self.app.filtered(cat, text)
        return self.app.gallery(ids), ids
