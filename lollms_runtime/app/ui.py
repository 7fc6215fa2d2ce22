"""The Blocks layout: personality picker, chat with step trace, generated settings, sidebar."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import gradio as gr

from ..conversation import ConversationService
from ..errors import LollmsError
from ..paths import PathRefused, confined
from ..personality import Personality
from ..runtime import Runtime
from ..store import DiscussionStore, StoreError
from . import controls
from .turns import Chat, Shown, error_text

log = logging.getLogger(__name__)


def _header(p: Personality) -> str:
    by = f" · by {p.author}" if p.author else ""
    category = f" · {p.category}" if p.category else ""
    return f"### {p.name}\n<sub>v{p.version}{by}{category}</sub>\n\n{p.description.strip()}"


def _disclaimer(p: Personality) -> str:
    return f"<sub>⚠️ {p.disclaimer.strip()}</sub>" if p.disclaimer else ""


class App:
    """The state the web app shares between sessions: the conversation service, personalities,
    and each session's cancel event. Discussions are reached only through ``self.service``."""

    def __init__(
        self, runtime: Runtime, store: DiscussionStore, sampling: Mapping[str, Any] | None = None
    ) -> None:
        self.runtime = runtime
        self.service = ConversationService(runtime, store)
        self.sampling = dict(sampling or {})  # the panel's starting overrides (e.g. max_tokens)
        self.chat = Chat(self.service)
        self.personalities: dict[str, Personality] = {}
        # One broken personality never takes the app down: it is left out and listed here, by id
        # (or by file when even its id cannot be read), with its located error.
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

    def cancel_for(self, session: str) -> threading.Event:
        """A fresh cancel event for a session's new turn."""
        with self._lock:
            event = threading.Event()
            self._cancels[session] = event
            return event

    def stop(self, session: str) -> None:
        with self._lock:
            event = self._cancels.get(session)
        if event is not None:
            event.set()

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

    def discussion_choices(self, search: str = "") -> list[tuple[str, str]]:
        """The sidebar's list: (title · personality, id), newest first."""
        choices = []
        for d in self.service.discussions(search=search or None):
            name = self.personalities.get(d.personality_id)
            who = name.name if name else d.personality_id
            choices.append((f"{d.title or '(untitled)'} · {who}", d.id))
        return choices


def build_app(
    runtime: Runtime, store: DiscussionStore, sampling: Mapping[str, Any] | None = None
) -> tuple[gr.Blocks, App]:
    """The web app for ``runtime``'s personalities, saving discussions in ``store``; ``sampling``
    overrides where the sampling panel starts (e.g. a small ``max_tokens``)."""
    app = App(runtime, store, sampling)
    service = app.service
    first = app.personalities[app.ids[0]]
    categories = ["All", *sorted({p.category for p in app.personalities.values() if p.category})]
    setting_controls: list[Any] = []
    offsets: dict[str, tuple[int, int]] = {}
    groups: list[Any] = []

    with gr.Blocks(title="lollms") as demo:
        discussion = gr.State(None)
        shown_ids = gr.State([])
        visible_ids = gr.State(app.ids)
        with gr.Sidebar(label="Discussions", open=True):
            new_button = gr.Button("New discussion", variant="primary")
            search = gr.Textbox(label="Search discussions", placeholder="words in titles or text")
            discussions = gr.Radio(
                choices=app.discussion_choices(), label="Discussions", elem_id="discussions"
            )
            with gr.Accordion("Manage", open=False):
                title = gr.Textbox(label="Title")
                with gr.Row():
                    rename_button = gr.Button("Rename", size="sm")
                    delete_button = gr.Button("Delete", size="sm", variant="stop")
                with gr.Row():
                    export_md = gr.Button("Export Markdown", size="sm")
                    export_json = gr.Button("Export JSON", size="sm")
                download = gr.File(label="Download", interactive=False)
                upload = gr.UploadButton("Import JSON", file_types=[".json"], size="sm")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row(equal_height=True):
                    avatar = gr.Image(
                        value=app.avatar_of(first),
                        show_label=False,
                        height=96,
                        width=96,
                        scale=0,
                        min_width=96,
                        interactive=False,
                        container=False,
                        buttons=[],
                    )
                    header = gr.Markdown(_header(first), elem_id="header")
                chatbot = gr.Chatbot(
                    value=cast(Any, app.chat.welcome(first)),
                    height=520,
                    editable="user",
                    elem_id="chat",
                    label="Chat",
                )
                with gr.Row():
                    prompt = gr.Textbox(
                        show_label=False,
                        placeholder="Message…",
                        scale=4,
                        min_width=300,
                        elem_id="prompt",
                        submit_btn=False,
                    )
                    send_button = gr.Button("Send", variant="primary", scale=1, min_width=90)
                    stop_button = gr.Button("Stop", variant="stop", scale=1, min_width=90)
                    regenerate_button = gr.Button("Regenerate", scale=1, min_width=90)
                    continue_button = gr.Button("Continue", scale=1, min_width=90)
                # Switching between the versions of the last message and the last answer (edits
                # and regenerations): each row shows only when there is more than one.
                navigators: list[Any] = []
                for role, what in (("user", "Message"), ("assistant", "Answer")):
                    with gr.Row(visible=False, elem_id=f"versions-{role}") as row:
                        previous = gr.Button("◀", size="sm", scale=0, min_width=40)
                        label = gr.Markdown(elem_id=f"versions-{role}-label")
                        following = gr.Button("▶", size="sm", scale=0, min_width=40)
                    navigators.append((role, what, row, label, previous, following))
                examples = gr.Dataset(
                    components=[prompt],
                    samples=[[e] for e in first.examples],
                    label="Examples",
                )
                disclaimer = gr.Markdown(_disclaimer(first))
            with gr.Column(scale=2):
                with gr.Accordion("Personalities", open=True):
                    with gr.Row():
                        category = gr.Dropdown(categories, value="All", label="Category")
                        find = gr.Textbox(label="Search", placeholder="name or description")
                    gallery = gr.Gallery(
                        value=app.gallery(app.ids),
                        columns=3,
                        height=260,
                        allow_preview=False,
                        show_label=False,
                        elem_id="personalities",
                    )
                    chosen = gr.Dropdown(
                        [(app.personalities[i].name, i) for i in app.ids],
                        value=first.id,
                        label="Personality",
                        elem_id="personality",
                    )
                model = gr.Dropdown(
                    [runtime.model], value=runtime.model, label="Model", allow_custom_value=True
                )
                with gr.Accordion("Settings", open=True):
                    for pid in app.ids:
                        p = app.personalities[pid]
                        saved = controls.saved_values(p, service.settings(pid))
                        with gr.Column(visible=pid == first.id) as group:
                            start = len(setting_controls)
                            for setting in p.settings.values():
                                setting_controls.append(
                                    controls.build_control(setting, saved[setting.name])
                                )
                            offsets[pid] = (start, len(setting_controls))
                            for command in p.commands:
                                button = gr.Button(command.name, size="sm")
                                button.click(
                                    lambda prompt_text=command.prompt: prompt_text,
                                    outputs=prompt,
                                )
                            if not p.settings and not p.commands:
                                gr.Markdown("*No settings.*")
                        groups.append(group)
                with gr.Accordion("Sampling", open=False):
                    sampling_controls = controls.build_sampling_controls(
                        first.sampling.merged(app.sampling)
                    )

        n_settings = len(setting_controls)

        def split(pid: str, values: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
            start, end = offsets[pid]
            p = app.personalities[pid]
            settings = controls.settings_from(p, values[start:end])
            return settings, controls.sampling_from(values[n_settings:])

        def personality_view(pid: str, discussion_id: str | None) -> list[Any]:
            p = app.personalities[pid]
            shown = app.chat.show(p, discussion_id)
            saved = controls.saved_values(p, service.settings(pid))
            values: list[Any] = [gr.skip()] * n_settings
            start, _end = offsets[pid]
            for index, setting in enumerate(p.settings.values()):
                values[start + index] = saved[setting.name]
            return [
                pid,
                app.avatar_of(p),
                _header(p),
                _disclaimer(p),
                gr.Dataset(samples=[[e] for e in p.examples]),
                *[gr.Column(visible=other == pid) for other in app.ids],
                *values,
                *controls.sampling_values(p.sampling.merged(app.sampling)),
                shown.messages,
                discussion_id,
                shown.ids,
            ]

        view_outputs = [
            chosen,
            avatar,
            header,
            disclaimer,
            examples,
            *groups,
            *setting_controls,
            *sampling_controls,
            chatbot,
            discussion,
            shown_ids,
        ]

        def choose(pid: str) -> list[Any]:
            return personality_view(pid, None)

        def choose_from_gallery(ids: list[str], event: gr.SelectData) -> list[Any]:
            with_avatar = [pid for pid in ids if app.avatar_of(app.personalities[pid])]
            return personality_view(with_avatar[event.index], None)

        def load(discussion_id: str | None) -> list[Any]:
            if not discussion_id:
                return [gr.skip()] * len(view_outputs) + [""]
            try:
                d = service.get(discussion_id)
            except StoreError as exc:
                raise gr.Error(str(exc)) from None
            if d.personality_id not in app.personalities:
                raise gr.Error(
                    f"this discussion was with '{d.personality_id}', which is not installed: "
                    "install it, or export the discussion to read it"
                )
            return [*personality_view(d.personality_id, d.id), d.title]

        def refilter(cat: str, text: str) -> tuple[list[tuple[str, str]], list[str]]:
            ids = app.filtered(cat, text)
            return app.gallery(ids), ids

        def save_settings(pid: str, *values: Any) -> None:
            start, end = offsets[pid]
            settings = controls.settings_from(app.personalities[pid], values[start:end])
            service.save_settings(pid, settings)

        def stream(
            turns: Iterator[tuple[str, Shown]], before: list[Any]
        ) -> Iterator[tuple[Any, Any, Any]]:
            try:
                for discussion_id, shown in turns:
                    yield shown.messages, discussion_id, shown.ids
            except LollmsError as exc:
                yield (
                    [*before, {"role": "assistant", "content": error_text(str(exc))}],
                    (gr.skip()),
                    gr.skip(),
                )

        def send(
            text: str,
            pid: str,
            discussion_id: str | None,
            history: list[Any],
            request: gr.Request,
            *values: Any,
        ) -> Iterator[tuple[Any, Any, Any]]:
            if not text.strip():
                raise gr.Error("Type a message first.")
            settings, sampling = split(pid, values)
            cancel = app.cancel_for(request.session_hash or "")
            turns = app.chat.send(
                app.personalities[pid],
                text,
                discussion_id=discussion_id,
                settings=settings,
                sampling=sampling,
                cancel=cancel,
            )
            yield from stream(turns, history)

        def regenerate(
            pid: str,
            discussion_id: str | None,
            history: list[Any],
            request: gr.Request,
            *values: Any,
        ) -> Iterator[tuple[Any, Any, Any]]:
            if not discussion_id:
                raise gr.Error("Nothing to regenerate yet: send a message first.")
            settings, sampling = split(pid, values)
            cancel = app.cancel_for(request.session_hash or "")
            turns = app.chat.regenerate(
                app.personalities[pid],
                discussion_id,
                settings=settings,
                sampling=sampling,
                cancel=cancel,
            )
            yield from stream(turns, history)

        def edit(
            pid: str,
            discussion_id: str | None,
            ids: list[str | None],
            history: list[Any],
            request: gr.Request,
            event: gr.EditData,
            *values: Any,
        ) -> Iterator[tuple[Any, Any, Any]]:
            index = event.index if isinstance(event.index, int) else event.index[0]
            message_id = ids[index] if 0 <= index < len(ids) else None
            if not discussion_id or message_id is None:
                raise gr.Error("Only messages you sent in this discussion can be edited.")
            settings, sampling = split(pid, values)
            cancel = app.cancel_for(request.session_hash or "")
            value = event.value
            text = value if isinstance(value, str) else str(value.get("text", value))
            turns = app.chat.edit(
                app.personalities[pid],
                discussion_id,
                message_id,
                text,
                settings=settings,
                sampling=sampling,
                cancel=cancel,
            )
            yield from stream(turns, history)

        def continue_(
            pid: str,
            discussion_id: str | None,
            history: list[Any],
            request: gr.Request,
            *values: Any,
        ) -> Iterator[tuple[Any, Any, Any]]:
            if not discussion_id:
                raise gr.Error("Nothing to continue yet: send a message first.")
            settings, sampling = split(pid, values)
            cancel = app.cancel_for(request.session_hash or "")
            turns = app.chat.continue_(
                app.personalities[pid],
                discussion_id,
                settings=settings,
                sampling=sampling,
                cancel=cancel,
            )
            yield from stream(turns, history)

        def version_rows(discussion_id: str | None) -> list[Any]:
            found = app.chat.versions(discussion_id)
            updates: list[Any] = []
            for role, what, *_ in navigators:
                version = found.get(role)
                updates.append(gr.Row(visible=version is not None))
                updates.append(f"{what} {version.label}" if version else "")
            return updates

        version_outputs = [c for _r, _w, row, label, *_ in navigators for c in (row, label)]

        def switch(pid: str, discussion_id: str | None, role: str, step: int) -> list[Any]:
            if not discussion_id:
                raise gr.Error("Open a discussion first.")
            try:
                app.chat.switch(discussion_id, role, step)
            except (LollmsError, StoreError) as exc:
                raise gr.Error(str(exc)) from None
            shown = app.chat.show(app.personalities[pid], discussion_id)
            return [shown.messages, shown.ids, *version_rows(discussion_id)]

        def switcher(role: str, step: int) -> Any:
            return lambda pid, discussion_id: switch(pid, discussion_id, role, step)

        def stop(request: gr.Request) -> None:
            app.stop(request.session_hash or "")

        def refresh(text: str) -> Any:
            return gr.Radio(choices=app.discussion_choices(text))

        def refresh_selected(text: str, discussion_id: str | None) -> Any:
            return gr.Radio(choices=app.discussion_choices(text), value=discussion_id)

        def new(pid: str) -> list[Any]:
            return [*personality_view(pid, None), gr.Radio(value=None)]

        def rename(discussion_id: str | None, new_title: str, text: str) -> Any:
            if not discussion_id:
                raise gr.Error("Open a discussion first.")
            service.rename(discussion_id, new_title)
            return gr.Radio(choices=app.discussion_choices(text), value=discussion_id)

        def delete(pid: str, discussion_id: str | None, text: str) -> list[Any]:
            if not discussion_id:
                raise gr.Error("Open a discussion first.")
            service.delete(discussion_id)
            return [
                *personality_view(pid, None),
                gr.Radio(choices=app.discussion_choices(text), value=None),
            ]

        def export(discussion_id: str | None, kind: str) -> str:
            if not discussion_id:
                raise gr.Error("Open a discussion first.")
            # In the discussion's own folder (which the app may serve and which goes with the
            # discussion), pruned as new ones are written: never piling up in /tmp.
            exports = service.store.artifact_dir(discussion_id) / "exports"
            return str(service.export_file(discussion_id, kind, exports))

        def import_file(file: Any, text: str) -> list[Any]:
            path = Path(file if isinstance(file, str) else file.name)
            try:
                discussion_id = service.import_json(path.read_bytes())
            except (OSError, ValueError, StoreError) as exc:
                raise gr.Error(f"could not import {path.name}: {exc}") from None
            return [
                *load(discussion_id)[:-1],
                gr.Radio(choices=app.discussion_choices(text), value=discussion_id),
            ]

        def set_model(name: str) -> None:
            if name and name.strip():
                runtime.model = name.strip()

        run_inputs = [*setting_controls, *sampling_controls]
        turn_outputs = [chatbot, discussion, shown_ids]
        chosen.input(choose, chosen, view_outputs).then(version_rows, discussion, version_outputs)
        gallery.select(choose_from_gallery, visible_ids, view_outputs).then(
            version_rows, discussion, version_outputs
        )
        category.change(refilter, [category, find], [gallery, visible_ids])
        find.change(refilter, [category, find], [gallery, visible_ids])
        for control in setting_controls:
            control.change(save_settings, [chosen, *setting_controls], None)
        examples.click(lambda sample: sample[0], examples, prompt)
        model.change(set_model, model, None)

        sent = gr.on(
            [send_button.click, prompt.submit],
            send,
            [prompt, chosen, discussion, chatbot, *run_inputs],
            turn_outputs,
        )
        sent.then(lambda: "", None, prompt).then(
            refresh_selected, [search, discussion], discussions
        ).then(version_rows, discussion, version_outputs)
        regenerated = regenerate_button.click(
            regenerate, [chosen, discussion, chatbot, *run_inputs], turn_outputs
        )
        regenerated.then(refresh_selected, [search, discussion], discussions).then(
            version_rows, discussion, version_outputs
        )
        edited = chatbot.edit(
            edit, [chosen, discussion, shown_ids, chatbot, *run_inputs], turn_outputs
        )
        edited.then(refresh_selected, [search, discussion], discussions).then(
            version_rows, discussion, version_outputs
        )
        continued = continue_button.click(
            continue_, [chosen, discussion, chatbot, *run_inputs], turn_outputs
        )
        continued.then(refresh_selected, [search, discussion], discussions)
        stop_button.click(stop, None, None, cancels=[sent, regenerated, edited, continued])
        for role, _what, _row, _label, previous, following in navigators:
            for button, step in ((previous, -1), (following, 1)):
                button.click(
                    switcher(role, step),
                    [chosen, discussion],
                    [chatbot, shown_ids, *version_outputs],
                )

        search.change(refresh, search, discussions)
        discussions.select(load, discussions, [*view_outputs, title]).then(
            version_rows, discussion, version_outputs
        )
        new_button.click(new, chosen, [*view_outputs, discussions]).then(
            version_rows, discussion, version_outputs
        )
        rename_button.click(rename, [discussion, title, search], discussions)
        delete_button.click(
            delete, [chosen, discussion, search], [*view_outputs, discussions]
        ).then(version_rows, discussion, version_outputs)
        export_md.click(lambda d: export(d, "md"), discussion, download)
        export_json.click(lambda d: export(d, "json"), discussion, download)
        upload.upload(import_file, [upload, search], [*view_outputs, discussions]).then(
            version_rows, discussion, version_outputs
        )
        demo.load(refresh, search, discussions)
    return demo, app
