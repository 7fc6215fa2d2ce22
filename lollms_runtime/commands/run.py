"""`lollms run ID "message"`: one turn from the command line, streamed, with an optional trace."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..argtypes import sampling_value, seed
from ..errors import LollmsError


def _parse_settings(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise LollmsError(f"--set expects NAME=VALUE, got {pair!r}")
        settings[name.strip()] = value
    return settings


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k: v
        for k, v in (
            ("temperature", args.temperature),
            ("max_tokens", args.max_tokens),
            ("seed", args.seed),
        )
        if v is not None
    }


def _traced(event: Any, trace: bool) -> bool:
    """Whether ``event`` prints a line on stderr (then an open answer line is closed first)."""
    from ..events import ImageProduced, StepFinished, StepStarted, TurnError

    if isinstance(event, (ImageProduced, TurnError)):
        return True
    if isinstance(event, StepFinished) and _notice(event):
        return True
    return trace and isinstance(event, (StepStarted, StepFinished))


def _notice(event: Any) -> str:
    """The word its kind declares for a step that failed or fell back (a painting step says
    "Not painted": ``on_error: continue`` lets the answer go on without the picture)."""
    if event.status not in ("failed", "fallback") or not event.error:
        return ""
    from ..loader import default_host

    kind = default_host().step_kinds.get(event.kind)
    return kind.notice if kind is not None else ""


def _event_json(event: Any) -> str:
    data = asdict(event)
    data["event"] = type(event).__name__
    return json.dumps(data, default=str)


def _saved_turn(
    service: Any,
    args: argparse.Namespace,
    settings: dict[str, Any],
    sampling: dict[str, Any],
    cancel: threading.Event,
) -> Any:
    """The turn inside a discussion of the store (a new one, or --discussion ID); with
    --continue, extending its last answer (``turn.prefix`` is the text already there)."""
    runtime = service.runtime
    if args.continue_ and not args.discussion:
        raise LollmsError("--continue needs --discussion ID (see `lollms discussions`)")
    personality = runtime.catalog.resolve(args.id)
    if args.discussion:
        discussion_id = service.get(args.discussion).id
        settings = {**service.settings(personality.id), **settings}
    else:
        discussion_id = service.new(personality.id).id
    print(f"(discussion {discussion_id})", file=sys.stderr)
    _attach(discussion_id, args.attach)
    common: dict[str, Any] = {"settings": settings, "sampling": sampling, "cancel": cancel}
    if args.continue_:
        return service.continue_(personality, discussion_id, **common)
    return service.send(personality, args.message, discussion_id=discussion_id, **common)


def _attach(discussion_id: str, files: list[str]) -> None:
    """--attach FILE: the file joins the discussion's own index (lollms_runtime.knowledge)."""
    from pathlib import Path

    from ..knowledge.library import attach_file

    for name in files:
        added = attach_file(discussion_id, Path(name))
        print(f"(attached {added['source']}: {added['chunks']} passage(s))", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from ..conversation import ConversationService
    from ..events import (
        ArtifactProduced,
        Done,
        ImageProduced,
        Progress,
        Reply,
        StepFinished,
        StepStarted,
        Token,
        TurnError,
        Waiting,
        progress_text,
    )
    from ..runtime import runtime_from_args
    from ..store import Store

    if args.continue_ and args.message is not None:
        raise LollmsError("--continue takes no message: it extends the discussion's last answer")
    if not args.continue_ and args.message is None:
        raise LollmsError("give the message to send, or --continue with --discussion ID")
    runtime = runtime_from_args(args)
    cancel = threading.Event()
    out, err = sys.stdout, sys.stderr
    # Piped or redirected, the answer is printed once, whole: a post-processed reply would
    # otherwise follow its streamed draft.
    stream = not args.no_stream and out.isatty()
    streamed: list[str] = []
    mid_line = False  # the answer on stdout has a line still open
    shown_steps: set[str] = set()  # steps whose text streamed to stdout
    failed = False
    settings, sampling = _parse_settings(args.set), _sampling(args)
    if settings:  # a typo in --set NAME would otherwise be ignored
        try:
            runtime.catalog.resolve(args.id).check_setting_names(settings)
        except ValueError as exc:
            raise LollmsError(str(exc)) from None
    if args.no_save:
        if args.continue_ or args.discussion or args.attach:
            raise LollmsError("--no-save cannot be used with --discussion, --continue or --attach")
        service = ConversationService(runtime)  # no store: nothing is saved
        events = service.run_turn(
            args.id, args.message, settings=settings, sampling=sampling, cancel=cancel
        )
    else:
        service = ConversationService(runtime, Store())
        events = _saved_turn(service, args, settings, sampling, cancel)
        before = events.prefix
        if before and not args.json and stream:
            streamed.append(before)  # the answer so far, then what the model adds
            out.write(before)
            out.flush()
            mid_line = not before.endswith("\n")
    progress_shown = False
    try:
        for event in events:
            if args.json:
                print(_event_json(event), flush=True)
                failed = failed or isinstance(event, TurnError)
                continue
            if mid_line and _traced(event, args.trace):
                out.write("\n")  # the trace goes on its own lines, not inside the answer
                out.flush()
                mid_line = False
            if progress_shown and not isinstance(event, Progress):
                err.write("\n")  # end the progress line before anything else is printed
                progress_shown = False
            if isinstance(event, Token) and event.visible and stream:
                streamed.append(event.text)
                out.write(event.text)
                out.flush()
                mid_line = not event.text.endswith("\n")
                shown_steps.add(event.step_id)
            elif isinstance(event, Waiting):
                err.write(f"\r waiting for the model (position {event.position})")
                err.flush()
                progress_shown = True
            elif isinstance(event, Progress):
                label = progress_text(event)
                err.write(f"\r {label}")  # one line, rewritten in place
                err.flush()
                progress_shown = True
            elif isinstance(event, StepStarted) and args.trace:
                print(f"\n▶ {event.kind} {event.title}  [{event.path}]", file=err, flush=True)
            elif isinstance(event, StepFinished) and not args.trace and (notice := _notice(event)):
                print(f"\n{notice.lower()}: {event.error}", file=err, flush=True)
            elif isinstance(event, StepFinished) and args.trace:
                tokens = f", {event.generation_tokens} tokens" if event.generation_tokens else ""
                line = f"{'✓' if event.status == 'ok' else '•'} {event.title}: {event.status} ({event.duration:.2f}s{tokens})"
                if event.detail:
                    line += f" — {event.detail}"
                if event.error:
                    line += f" — {event.error}"
                print(line, file=err, flush=True)
                # A step whose text streamed above is not printed a second time.
                if (
                    event.output is not None
                    and not event.answer
                    and event.step_id not in shown_steps
                ):
                    shown = (
                        event.output
                        if isinstance(event.output, str)
                        else json.dumps(event.output, default=str)
                    )
                    print("  " + shown[:500].replace("\n", "\n  "), file=err, flush=True)
            elif isinstance(event, ImageProduced):
                print(f"\n[image] {event.path}", file=err, flush=True)
            elif isinstance(event, ArtifactProduced) and not event.part:
                print(f"\n[{event.kind}] {event.path}", file=err, flush=True)
            elif isinstance(event, Reply):
                final = event.text
                if not stream or not streamed:
                    out.write(final)
                elif "".join(streamed).strip() != final:
                    # The pipeline post-processed the streamed draft: show what the reply really is.
                    out.write(f"\n\n--- reply ---\n{final}")
                for image in event.images:
                    out.write(f"\n[image] {Path(image)}")
                out.write("\n")
                mid_line = False
            elif isinstance(event, TurnError):
                failed = True
                print(f"\nerror: {event.message}", file=err)
                if event.hint:
                    print(f"hint: {event.hint}", file=err)
            elif isinstance(event, Done) and args.trace:
                print(
                    f"\n{event.status}: {event.steps} steps, {event.generation_tokens} tokens, "
                    f"{event.duration:.2f}s",
                    file=err,
                )
    except KeyboardInterrupt:
        events.close()  # let the turn wind down and save what it has
        print("\n(cancelled)", file=err)
        return 130
    return 1 if failed else 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run one turn of a personality",
        description="Run one turn: the answer streams to stdout; --trace shows each step on stderr.",
    )
    p.add_argument("id", help="personality id, or the path of its file or folder")
    p.add_argument("message", nargs="?", help="the user's message (none with --continue)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a personality setting (repeatable)",
    )
    p.add_argument(
        "--temperature",
        type=sampling_value("temperature", float),
        help="override the sampling temperature",
    )
    p.add_argument(
        "--max-tokens",
        type=sampling_value("max_tokens", int),
        help="override max tokens per generate step",
    )
    p.add_argument("--seed", type=seed, help="random seed")
    p.add_argument("--trace", action="store_true", help="show each step (stderr)")
    p.add_argument("--no-stream", action="store_true", help="print only the final reply")
    p.add_argument("--json", action="store_true", help="print every event as a JSON line")
    p.add_argument(
        "--discussion", metavar="ID", help="continue a saved discussion (see `lollms discussions`)"
    )
    p.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help="extend the last answer of --discussion ID (stopped at max tokens, or interrupted)",
    )
    p.add_argument(
        "--no-save", action="store_true", help="do not save the turn in the discussion store"
    )
    p.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="a document (text, Markdown, HTML, PDF) the discussion's answers may draw on "
        "(repeatable)",
    )
    p.set_defaults(handler=cmd_run)
