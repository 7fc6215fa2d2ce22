"""The Blocks layout: sidebar of discussions, chat with its trace and message actions, personality
picker, model, generated settings and sampling. The handlers live in :mod:`.handlers`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import gradio as gr

from ..runtime import Runtime
from ..store import DiscussionStore
from . import controls
from .handlers import (
    CONTINUE,
    NEXT,
    PREVIOUS,
    Handlers,
    _disclaimer,
    _header,
    attached_note,
)
from .state import GROUPS, App
from .turns import TRACE_END, TRACE_START, Chat

# What a page remembers in the browser (localStorage) across reloads.
REMEMBERED: dict[str, Any] = {
    "discussion": None,
    "personality": None,
    "model": None,
    "sampling": {},
    "system": {},
}

# The remembered dict updated with the open personality's panel: (saved, personality, discussion,
# model, addition, *sampling panel, min_p, stops), as `Handlers.restore` reads it back.
REMEMBER_JS = """(saved, pid, d, model, addition, ...values) => {
  const s = Object.assign({}, saved || {});
  const n = values.length;
  s.personality = pid; s.discussion = d || null; s.model = model;
  s.sampling = Object.assign({}, s.sampling || {});
  s.sampling[pid] = {panel: values.slice(0, n - 2), min_p: values[n - 2], stop: values[n - 1]};
  s.system = Object.assign({}, s.system || {});
  s.system[pid] = addition || "";
  return [s]; }"""

# On a phone the sidebar starts closed and the side column goes under the chat.
CSS = """
#commands { gap: 6px; flex-wrap: wrap; }
#commands button { flex: 0 0 auto; }
#discussions .wrap { flex-direction: column; }
/* The welcome message is no answer: nothing to retry, undo or continue there. */
#chat .message-wrap > .bot-row:first-child + .message-buttons :is(
  button[aria-label="Retry"], button[aria-label="Undo"], button[aria-label="Feedback"]
) { display: none; }
/* Panels built open and closed by PAGE_JS once drawn: hidden until then, no flash. */
body:not(.lollms-ready) .lollms-closed-at-load [data-testid="accordion-content"] {
  display: none !important;
}
/* Code in a sentence flows with it (Gradio draws it as an inline-flex box, which a long command
   pushed onto a line of its own, cutting the sentence around it). */
#chat .md :not(pre) > code { display: inline; overflow-wrap: anywhere; box-decoration-break: clone; }
#painters { font-size: 0.85em; padding: 6px 10px; }
#painters code { font-size: 0.95em; }
.lollms-versions { font-size: 0.85em; opacity: 0.75; white-space: nowrap; }
.lollms-version { background: none; border: none; cursor: pointer; padding: 0 6px; color: inherit; }
.lollms-version:hover { opacity: 1; color: var(--color-accent); }
@media (max-width: 820px) {
  #main-row { flex-direction: column; }
  #main-row > div, #side-column { min-width: 0 !important; width: 100% !important; }
  #header { min-width: 0 !important; }
  .gradio-container { padding-left: 6px !important; padding-right: 6px !important; }
  /* On a phone the box and the buttons under it stay in view (#input-area's query). */
  #chat { height: 46vh !important; max-height: 46vh !important; }
}
"""
# The message box and its buttons on one line where the box keeps room for its placeholder; in a
# narrower column (a phone, or beside an open sidebar) the buttons share the line under it. The
# column around the row is the container: the row's own width decides, not the window's. In the
# page's head: Gradio's `css` drops @container rules.
HEAD = """<style>
#input-area { container-type: inline-size; }
#input-row { flex-wrap: nowrap !important; align-items: stretch !important; gap: 8px; }
#input-row > :has(#prompt) { flex: 1 1 auto !important; min-width: 0 !important; }
#input-buttons {
  flex: 0 0 auto !important; width: auto; flex-wrap: nowrap !important; gap: 8px;
  align-items: stretch !important;
}
/* The buttons keep to their words (a wide Attach squeezed the box). */
#input-buttons > button { flex: 1 0 auto !important; padding: 0 14px; min-height: 40px; }
@container (max-width: 560px) {
  #input-row { flex-wrap: wrap !important; }
  #input-row > :has(#prompt), #input-buttons { flex: 1 1 100% !important; }
  #input-buttons > button { flex: 1 1 0 !important; }
}
</style>"""
# Run once when the page loads. The chat strips inline handlers from messages: one listener answers
# the arrows of a version counter ("◀ 2/2 ▶", turns.versions_text) by pressing the hidden button
# of the same role and direction.
PAGE_JS = r"""() => {
  // Copying a message copies its text: the chat copies a bubble whole, trace steps and counter's
  // markup included. A message's Copy copies what follows its trace (turns.TRACE_END).
  const counter = /\n*<span class="lollms-versions[\s\S]*?<\/span>/g;
  const start = @TRACE_START@, end = @TRACE_END@;  // turns.TRACE_START, TRACE_END
  const literal = (text) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  // The whole conversation is copied as "assistant: STEP" paragraphs, the trace among them.
  const traces = new RegExp(
    `(?:assistant: )?${literal(start)}[\\s\\S]*?${literal(end)}(?:\\n\\n)?`, 'g');
  let message = false;  // the Copy pressed is a message's (not the whole conversation's)
  const strip = (text) => {
    let out = String(text).replace(counter, '');
    if (message && out.includes(end)) { out = out.slice(out.lastIndexOf(end) + end.length); }
    message = false;
    out = out.replace(traces, '').split(end).join('').split(start).join('');
    // A message that held only the counter is left as an empty "assistant: " paragraph.
    return out.replace(/(?:^|\n\n)(?:assistant|user): (?=\n\n|$)/g, '').replace(/^\s*\n/, '');
  };
  document.addEventListener('click', (event) => {
    message = Boolean(event.target.closest &&
      event.target.closest('#chat .message-buttons button[aria-label="Copy message"]'));
    if (message) { setTimeout(() => { message = false; }, 1000); }
  }, true);
  if (navigator.clipboard && navigator.clipboard.writeText) {
    const write = navigator.clipboard.writeText.bind(navigator.clipboard);
    navigator.clipboard.writeText = (text) => write(strip(text));
  }
  document.addEventListener('copy', (event) => {  // the fallback where there is no clipboard API
    const text = String(document.getSelection() || '');
    if (/lollms-(versions|trace-start|trace-end)/.test(text) && event.clipboardData) {
      event.clipboardData.setData('text/plain', strip(text));
      event.preventDefault();
    }
  });
  // Panels built open (ui.CLOSED_AT_LOAD) close once drawn: a closed accordion's contents are
  // drawn when first opened, and values put back while they were being drawn were lost.
  const close = (tries) => {
    const panels = document.querySelectorAll('.lollms-closed-at-load');
    if (panels.length === 0 && tries > 0) { requestAnimationFrame(() => close(tries - 1)); return; }
    panels.forEach((panel) => {
      const label = panel.querySelector('.label-wrap');
      if (label && label.classList.contains('open')) { label.click(); }
    });
    document.body.classList.add('lollms-ready');
  };
  close(600);
  // Editing a message edits its whole bubble: the counter's own edit box is not offered.
  const hideCounterBoxes = () => document.querySelectorAll('#chat textarea').forEach((box) => {
    if (box.value.includes('lollms-versions')) { box.style.display = 'none'; }
  });
  document.addEventListener('click', (event) => {
    if (!event.target.closest) { return; }
    if (event.target.closest('#chat button[aria-label="Edit"]')) {
      [0, 50, 250].forEach((ms) => setTimeout(hideCounterBoxes, ms));
      return;
    }
    const arrow = event.target.closest('.lollms-version');
    if (!arrow) { return; }
    event.preventDefault(); event.stopPropagation();
    const [role, which] = ['user', 'assistant'].flatMap((r) =>
      ['previous', 'next'].map((w) => [r, w])).find(([r, w]) =>
      arrow.classList.contains(`lollms-version-${r}`) &&
      arrow.classList.contains(`lollms-version-${w}`)) || [];
    const found = role ? document.getElementById(`version-${role}-${which}`) : null;
    const button = found && found.tagName !== 'BUTTON' ? found.querySelector('button') : found;
    if (button) { button.click(); }
  }, true);
}""".replace("@TRACE_START@", json.dumps(TRACE_START)).replace("@TRACE_END@", json.dumps(TRACE_END))
# Panels shown closed whose values a page puts back when it loads (restore): built open, so drawn
# with the page, and closed by PAGE_JS. Gradio draws a closed accordion's contents when first
# opened; opened while the values came back, they showed the defaults.
CLOSED_AT_LOAD = ["lollms-closed-at-load"]
# Keep the address bar on the open discussion: the URL is a link to it.
URL_JS = """(d) => { const u = new URL(window.location.href);
  if (d) { u.searchParams.set('d', d); } else { u.searchParams.delete('d'); }
  window.history.replaceState(null, '', u); return []; }"""


def build_app(
    runtime: Runtime,
    store: DiscussionStore,
    sampling: Mapping[str, Any] | None = None,
    *,
    any_model: bool = False,
    models: list[str] | None = None,
    browser_secret: str | None = None,
) -> tuple[gr.Blocks, App]:
    """The web app for ``runtime``'s personalities, saving discussions in ``store``; ``sampling``
    overrides where the sampling panel starts (e.g. a small ``max_tokens``); ``any_model`` lets a
    page run any model path or hub id, not only the ``models`` available here; ``browser_secret``
    keeps what a page remembers readable across restarts (random when None)."""
    app = App(runtime, store, sampling, any_model=any_model, models=models)
    first = app.personalities[app.ids[0]]
    categories = ["All", *sorted({p.category for p in app.personalities.values() if p.category})]
    setting_controls: list[Any] = []
    offsets: dict[str, tuple[int, int]] = {}
    groups: list[Any] = []
    command_rows: list[Any] = []

    with gr.Blocks(title="lollms") as demo:
        remembered = gr.BrowserState(
            dict(REMEMBERED), storage_key="lollms-app", secret=browser_secret
        )
        discussion = gr.State(None)
        shown_ids = gr.State([])
        visible_ids = gr.State(app.ids)
        pending = gr.State("")  # the message being sent (the box is emptied at once)
        attached = gr.State([])  # files attached to the next message (uploaded paths)
        pending_files = gr.State([])  # those going with the message being sent
        width = gr.Number(visible=False)
        current = gr.Textbox(visible=False, elem_id="current-discussion")
        with gr.Sidebar(label="Discussions", open=True) as sidebar:
            new_button = gr.Button("New discussion", variant="primary")
            search = gr.Textbox(
                show_label=False, placeholder="Search discussions", elem_id="search"
            )
            with gr.Column(elem_id="discussions"):
                lists = [
                    gr.Radio(choices=[], label=group, visible=False, elem_id=f"group-{group}")
                    for group in GROUPS
                ]
                # Filled when the page loads (the lists are per page, never stale from startup).
                empty = gr.Markdown("", elem_id="no-discussions")
            with gr.Accordion("This discussion", elem_id="manage", elem_classes=CLOSED_AT_LOAD):
                title = gr.Textbox(label="Title")
                with gr.Row():
                    rename_button = gr.Button("Rename", size="sm")
                    delete_button = gr.Button("Delete…", size="sm", variant="stop")
                with gr.Row(visible=False, elem_id="confirm-delete") as confirm_row:
                    gr.Markdown("**Delete this discussion?** Its messages and images go too.")
                    confirm_button = gr.Button("Delete for good", size="sm", variant="stop")
                    cancel_button = gr.Button("Keep it", size="sm")
                link = gr.Markdown(elem_id="link")
                with gr.Row():
                    export_md = gr.Button("Export Markdown", size="sm")
                    export_json = gr.Button("Export JSON", size="sm")
                download = gr.File(label="Download", interactive=False)
                upload = gr.UploadButton("Import JSON", file_types=[".json"], size="sm")
        with gr.Row(elem_id="main-row"):
            with gr.Column(scale=3, min_width=320):
                with gr.Row(equal_height=True):
                    avatar = gr.Image(
                        value=app.avatar_of(first),
                        visible=app.avatar_of(first) is not None,
                        show_label=False,
                        height=72,
                        width=72,
                        scale=0,
                        min_width=72,
                        interactive=False,
                        container=False,
                        buttons=[],
                    )
                    header = gr.Markdown(_header(first), elem_id="header")
                chatbot = gr.Chatbot(
                    value=cast(Any, Chat(app.service).welcome(first)),
                    height="62vh",
                    editable="user",
                    elem_id="chat",
                    label="Chat",
                    buttons=["copy", "copy_all"],
                    feedback_options=(CONTINUE, PREVIOUS, NEXT),
                    avatar_images=(None, app.avatar_of(first)),
                    placeholder="Say something to start.",
                )
                # The version counters ("◀ 2/2 ▶") are drawn on the messages themselves; their
                # arrows press these buttons (PAGE_JS), rendered but never shown.
                switches = [
                    (
                        role,
                        step,
                        gr.Button(
                            visible="hidden",
                            elem_id=f"version-{role}-{'previous' if step < 0 else 'next'}",
                        ),
                    )
                    for role in ("user", "assistant")
                    for step in (-1, 1)
                ]
                with gr.Column(elem_id="input-area"), gr.Row(elem_id="input-row"):
                    prompt = gr.Textbox(
                        show_label=False,
                        placeholder="Message…  (Shift+Enter for a new line)",
                        scale=1,
                        min_width=0,
                        elem_id="prompt",
                        submit_btn=False,
                        lines=1,
                        max_lines=8,
                    )
                    with gr.Row(elem_id="input-buttons"):  # they wrap together, under the box
                        attach_button = gr.UploadButton(
                            "Attach",
                            file_count="multiple",
                            file_types=[".md", ".txt", ".html", ".htm", ".pdf"],
                            scale=0,
                            min_width=0,
                            elem_id="attach",
                        )
                        send_button = gr.Button(
                            "Send", variant="primary", scale=0, min_width=0, elem_id="send"
                        )
                        stop_button = gr.Button(
                            "Stop", variant="stop", scale=0, min_width=0, elem_id="stop"
                        )
                attached_md = gr.Markdown("", elem_id="attached")
                with gr.Row(elem_id="commands"):
                    for pid in app.ids:
                        p = app.personalities[pid]
                        with gr.Row(visible=pid == first.id and bool(p.commands)) as commands:
                            for command in p.commands:
                                button = gr.Button(
                                    f"/{command.name}", size="sm", scale=0, min_width=60
                                )
                                button.click(
                                    lambda prompt_text=command.prompt: prompt_text,
                                    outputs=prompt,
                                )
                        command_rows.append(commands)
                examples = gr.Dataset(
                    components=[prompt],
                    samples=[[e] for e in first.examples],
                    label="Examples",
                    elem_id="examples",
                )
                disclaimer = gr.Markdown(_disclaimer(first))
            with gr.Column(scale=2, min_width=300, elem_id="side-column"):
                with gr.Accordion("Personalities", open=True):
                    with gr.Row():
                        category = gr.Dropdown(categories, value="All", label="Category")
                        find = gr.Textbox(label="Search", placeholder="name or description")
                    gallery = gr.Gallery(
                        value=app.gallery(app.ids),
                        columns=3,
                        height=220,
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
                    if app.broken:  # listed, not offered: the error says what to fix
                        with gr.Accordion(
                            f"Not available ({len(app.broken)})", open=False, elem_id="broken"
                        ):
                            gr.Markdown(_broken_text(app.broken))
                model = gr.Dropdown(
                    [(app.model_labels[m], m) for m in app.models],
                    value=runtime.model,
                    label="Model (this tab and discussion)",
                    allow_custom_value=app.any_model,
                    elem_id="model",
                    info=None if app.any_model else "the models on this server",
                )
                # Filled after the page loads (a painter's check may take a moment).
                painters = gr.Markdown("", visible=False, elem_id="painters", container=True)
                with gr.Accordion("Settings", open=True):
                    for pid in app.ids:
                        p = app.personalities[pid]
                        saved = controls.saved_values(p, app.service.settings(pid))
                        with gr.Column(visible=pid == first.id) as group:
                            start = len(setting_controls)
                            for setting in p.settings.values():
                                setting_controls.append(
                                    controls.build_control(setting, saved[setting.name])
                                )
                            offsets[pid] = (start, len(setting_controls))
                            if not p.settings:
                                gr.Markdown("*No settings.*")
                        groups.append(group)
                    show_all = gr.Checkbox(
                        False,
                        label="Show every step in the trace",
                        info="reply and set steps too",
                        elem_id="show-all",
                    )
                with gr.Accordion("Sampling", elem_id="sampling", elem_classes=CLOSED_AT_LOAD):
                    sampling_controls = controls.build_sampling_controls(
                        first.sampling.merged(app.sampling)
                    )
                    min_p = gr.Slider(
                        0.0,
                        1.0,
                        step=0.01,
                        value=first.sampling.min_p,
                        label="Min p (0 = off)",
                        elem_id="min-p",
                    )
                    stops = gr.Textbox(
                        label="Stop strings",
                        info="one per line",
                        lines=2,
                        value="\n".join(first.sampling.stop),
                        elem_id="stops",
                    )
                    addition = gr.Textbox(
                        label="Add to the system prompt",
                        info="for this personality, after its own conditioning",
                        lines=3,
                        elem_id="system-addition",
                    )

        h = Handlers(
            app,
            offsets=offsets,
            n_settings=len(setting_controls),
            n_sampling=len(sampling_controls),
        )
        view_outputs = [
            chosen,
            avatar,
            header,
            disclaimer,
            examples,
            *groups,
            *command_rows,
            *setting_controls,
            *sampling_controls,
            min_p,
            stops,
            addition,
            chatbot,
            discussion,
            shown_ids,
            model,
        ]
        list_outputs = [*lists, empty]
        run_inputs = [*setting_controls, *sampling_controls, min_p, stops]
        turn_inputs = [chosen, discussion, model, addition, show_all, chatbot, *run_inputs]
        turn_outputs = [chatbot, discussion, shown_ids]

        def after(event: Any) -> Any:
            """Once a turn's stream ends: the sidebar."""
            return event.then(h.lists, [search, discussion], list_outputs)

        def opened(event: Any) -> Any:
            return event.then(h.lists, [search, discussion], list_outputs).then(
                h.painters, [chosen, *setting_controls], painters, show_progress="hidden"
            )

        opened(chosen.input(h.choose, [chosen, remembered, show_all], view_outputs))
        opened(gallery.select(h.choose_from_gallery, [visible_ids, remembered], view_outputs))
        category.change(h.refilter, [category, find], [gallery, visible_ids])
        find.change(h.refilter, [category, find], [gallery, visible_ids])
        for control in setting_controls:
            control.change(h.save_settings, [chosen, *setting_controls], None).then(
                h.painters, [chosen, *setting_controls], painters, show_progress="hidden"
            )
        model.input(h.pick_model, model, model)
        show_all.change(h.redraw, [chosen, discussion, show_all], [chatbot, shown_ids])

        # Sending: the box empties at once, the message goes from ``pending``. An example is
        # sent when clicked (as in Open WebUI and Gradio's ChatInterface).
        taken = [prompt, pending, pending_files, attached, attached_md]
        sent = gr.on([send_button.click, prompt.submit], take_message, [prompt, attached], taken)
        example = examples.click(
            lambda s, files: take_message(s[0], files), [examples, attached], taken
        )
        for event in (sent, example):
            after(event.then(h.send, [pending, pending_files, *turn_inputs], turn_outputs))
        attach_button.upload(
            add_files,
            [attach_button, attached],
            [attached, attached_md],
        )
        after(chatbot.retry(h.regenerate, turn_inputs, turn_outputs))
        after(
            chatbot.undo(
                h.undo, [chosen, discussion, show_all, prompt], [chatbot, shown_ids, prompt]
            )
        )
        after(chatbot.edit(h.edit, [shown_ids, *turn_inputs], turn_outputs))
        after(chatbot.like(h.act, [shown_ids, *turn_inputs], turn_outputs))
        stop_button.click(h.stop, None, None)
        for role, step, button in switches:
            # A click while the last switch is still finishing runs after it (Gradio's default
            # drops it: quick clicks on the arrows were lost).
            button.click(
                h.switcher(role, step),
                [chosen, discussion, show_all],
                [chatbot, shown_ids],
                trigger_mode="always_last",
            )
        opened(chatbot.clear(h.new, [chosen, remembered], view_outputs))

        search.change(h.lists, [search, discussion], list_outputs)
        for radio in lists:
            opened(radio.select(h.open, [radio, remembered, show_all], [*view_outputs, title]))
        opened(new_button.click(h.new, [chosen, remembered], view_outputs))
        rename_button.click(h.rename, [discussion, title, search], list_outputs)
        delete_button.click(h.ask_delete, discussion, confirm_row)
        cancel_button.click(lambda: gr.Row(visible=False), None, confirm_row)
        opened(
            confirm_button.click(
                h.delete, [chosen, discussion, remembered], [*view_outputs, confirm_row]
            )
        )
        export_md.click(lambda d: h.export(d, "md"), discussion, download)
        export_json.click(lambda d: h.export(d, "json"), discussion, download)
        opened(upload.upload(h.import_file, [upload, remembered, show_all], [*view_outputs, title]))

        # Remembered in the browser: the open discussion, the personality, the model, and the
        # sampling panel and system prompt addition of each personality.
        # In the page itself (no server round trip, no queue): saved the moment a value changes,
        # so a reload straight after still finds it.
        gr.on(
            [
                current.change,
                chosen.change,
                model.change,
                addition.change,
                min_p.change,
                stops.change,
                *(c.change for c in sampling_controls),
            ],
            None,
            [remembered, chosen, current, model, addition, *sampling_controls, min_p, stops],
            remembered,
            js=REMEMBER_JS,
        )
        discussion.change(h.link_text, discussion, link)
        # A State lives on the server: the address bar follows a copy the page can read.
        discussion.change(lambda d: d or "", discussion, current)
        current.change(None, current, None, js=URL_JS)
        opened(
            demo.load(
                h.restore,
                [remembered, width, show_all],
                [*view_outputs, title, sidebar],
                js="(saved, w, all) => [saved, window.innerWidth, all]",
            )
        )
    return demo, app


def add_files(new: list[str] | None, files: list[str] | None) -> tuple[list[str], str]:
    """Files uploaded with Attach wait for the next message (the same name again replaces it)."""
    kept = {Path(f).name: f for f in [*(files or []), *(new or [])]}
    return list(kept.values()), attached_note(list(kept.values()))


def take_message(text: str, files: list[str]) -> tuple[Any, ...]:
    """Send pressed: the box empties at once and the message (with the files attached) goes
    from the pending states; files wait for a message when there is no text yet."""
    if not (text or "").strip():
        return "", text, [], files, attached_note(files)
    return "", text, files, [], ""


def _broken_text(broken: Mapping[str, str]) -> str:
    """The personalities that could not be loaded, each with the first lines of its error."""
    lines = []
    for name, error in sorted(broken.items()):
        first = "\n".join(error.strip().splitlines()[:3])
        lines.append(
            f"**{Path(name).parent.name if name.endswith('.yaml') else name}**\n```\n{first}\n```"
        )
    return "\n\n".join(lines)
