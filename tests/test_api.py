"""The OpenAI-compatible API, driven by the official `openai` client against our server on loopback.

The engine runs on the scripted backends here (what a turn does is tested elsewhere); the real
model through the API is in test_api_model.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from lollms_runtime.api.server import APIConfig, create_api, refusal_to_expose
from lollms_runtime.api.serving import Served
from lollms_runtime.conversation import ConversationService
from lollms_runtime.engine import Engine
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-0123456789"


class Server:
    def __init__(
        self,
        runtime: Runtime,
        text: ScriptedTextBackend,
        url: str,
        root: Path,
        service: ConversationService,
    ) -> None:
        self.runtime, self.text, self.url, self.root = runtime, text, url, root
        self.service = service

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    text = ScriptedTextBackend()
    runtime = Runtime(personalities=[ROOT / "personalities"])
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    port = _port()
    store = Store(tmp_path / "discussions.sqlite3")
    service = ConversationService(runtime, store)
    config = APIConfig(keys=[KEY, "second-key"], max_body_bytes=64_000)
    served = Served(create_api(service, store.artifacts_root, config), "127.0.0.1", port)
    served.serve(block=False)
    try:
        yield Server(runtime, text, f"http://127.0.0.1:{port}", store.artifacts_root, service)
    finally:
        served.close()
        store.close()


def _post(url: str, body: bytes, key: str = KEY) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_models_are_the_personalities(server: Server) -> None:
    client = server.client()
    ids = [m.id for m in client.models.list()]
    assert {"assistant", "gpt_for_art", "router", "code_buddy", "haiku_poet"} <= set(ids)
    one = client.models.retrieve("gpt_for_art")
    assert one.id == "gpt_for_art" and one.object == "model"
    assert (one.model_extra or {})["name"] == "GPT for Art"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nobody")
    assert info.value.body["message"] == "no personality 'nobody': GET /v1/models lists them"  # type: ignore[index]


def test_chat_whole_answer_with_history_and_system(server: Server) -> None:
    server.text.enqueue("Paris is the capital of France.")
    response = server.client().chat.completions.create(
        model="assistant",
        messages=[
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    )
    assert response.choices[0].message.content == "Paris is the capital of France."
    assert response.choices[0].finish_reason == "stop"
    assert response.object == "chat.completion" and response.model == "assistant"
    assert response.usage is not None and response.usage.completion_tokens == 6
    assert response.usage.prompt_tokens > 0
    (request,) = server.text.history
    roles = [m.role for m in request.messages]
    assert roles == ["system", "user", "assistant", "user"]
    system = request.messages[0].content
    conditioning = server.runtime.catalog.get("assistant").conditioning.strip()
    assert system.startswith(conditioning[:40]) and system.endswith("Answer in one sentence.")
    assert request.messages[-1].content == "What is the capital of France?"


def test_chat_streams_chunks_and_usage(server: Server) -> None:
    server.text.enqueue("one two three four")
    stream = server.client().chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes[:-1] == [None] * (len(finishes) - 1)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_sampling_overrides_reach_the_model(server: Server) -> None:
    server.text.enqueue("a b c d e f g h")
    response = server.client().chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.1,
        top_p=0.5,
        max_tokens=3,
        stop=["###"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        logit_bias={"42": -100},
        extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.2},
    )
    assert response.choices[0].message.content == "a b c"
    assert response.choices[0].finish_reason == "length"
    sampling = server.text.history[0].sampling
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed) == (
        0.1,
        0.5,
        3,
        7,
    )
    assert "###" in sampling.stop
    assert (sampling.top_k, sampling.min_p, sampling.repetition_penalty) == (5, 0.05, 1.2)
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.5, 0.25)
    assert sampling.logit_bias == {42: -100.0}


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        ({"temperature": 5}, "temperature", "'temperature' must be at most 2 (got 5)"),
        ({"top_k": -1}, "top_k", "'top_k' must be at least 0 (got -1)"),
        ({"max_tokens": 0}, "max_tokens", "'max_tokens' must be at least 1 (got 0)"),
        ({"temperature": "hot"}, "temperature", "'temperature' must be a number"),
        ({"n": 2}, "n", "only n=1 is supported"),
        ({"settings": {"paintt": False}}, "settings.paintt", "did you mean 'paint'?"),
        ({"settings": {"steps": 500}}, "settings.steps", "must be <= 50"),
        ({"messages": []}, "messages", "'messages' must be a non-empty list"),
        (
            {"messages": [{"role": "assistant", "content": "hi"}]},
            "messages",
            "the last message (besides system ones) must be the user's",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
            "role 'tool' is not supported",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
            "content parts of type 'image_url' are not supported",
        ),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    server: Server, extra: dict[str, Any], param: str, message: str
) -> None:
    body: dict[str, Any] = {"model": "gpt_for_art", "messages": [{"role": "user", "content": "x"}]}
    extras = {k: v for k, v in extra.items() if k in ("top_k", "settings")}
    body.update({k: v for k, v in extra.items() if k not in extras}, extra_body=extras)
    with pytest.raises(openai.BadRequestError) as info:
        server.client().chat.completions.create(**body)
    error = info.value.body
    assert isinstance(error, dict)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert message in error["message"]
    assert server.text.history == []  # refused before any model call


def test_settings_reach_the_pipeline_and_images_come_back(server: Server) -> None:
    server.text.enqueue("A red fox under the moon.")
    client = server.client()
    response = client.chat.completions.create(
        model="gpt_for_art",
        messages=[{"role": "user", "content": "a fox"}],
        extra_body={"settings": {"paint": True, "steps": 3}, "trace": True},
    )
    extra = response.model_extra or {}
    (url,) = extra["images"]
    assert url.startswith(server.url + "/v1/files/api/chatcmpl-")
    assert server.root in (server.root / url.split("/v1/files/")[1]).resolve().parents
    assert f"![image]({url})" in (response.choices[0].message.content or "")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=10) as got:
        assert got.read().startswith(b"\x89PNG")
    kinds = [step["kind"] for step in extra["trace"]]
    assert "generate" in kinds and "text_to_image" in kinds
    assert all(step["status"] for step in extra["trace"])


def test_trace_streams_as_extra_chunks(server: Server) -> None:
    server.text.enqueue("A blue whale.")
    chunks = list(
        server.client().chat.completions.create(
            model="gpt_for_art",
            messages=[{"role": "user", "content": "a whale"}],
            stream=True,
            extra_body={"settings": {"paint": False}, "trace": True},
        )
    )
    traces = [(c.model_extra or {}).get("trace") for c in chunks if not c.choices]
    events = [t["event"] for t in traces if t]
    assert "step_started" in events and "step_finished" in events
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("A blue whale.")


def test_auth_keys(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        server.client("wrong").models.list()
    assert info.value.body["message"] == "a wrong API key: send 'Authorization: Bearer KEY'"  # type: ignore[index]
    assert [m.id for m in server.client("second-key").models.list()]
    request = urllib.request.Request(server.url + "/v1/models")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request, timeout=10)
    assert missing.value.code == 401
    assert json.loads(missing.value.read())["error"]["code"] == "invalid_api_key"


def test_bodies_are_bounded_and_checked(server: Server) -> None:
    url = server.url + "/v1/chat/completions"
    status, body = _post(url, b"x" * 70_000)
    assert status == 413 and body["error"]["code"] == "too_large"
    status, body = _post(url, b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = _post(url, b"[" * 10_000 + b"]" * 10_000)
    assert status == 400 and "nests deeper than 32 levels" in body["error"]["message"]
    status, body = _post(url, b'{"model": "assistant", "temperature": NaN, "messages": []}')
    assert status == 400 and body["error"]["code"] == "invalid_json"
    many = {"model": "assistant", "messages": [{"role": "user", "content": ""}] * 1001}
    status, body = _post(url, json.dumps(many).encode())
    assert status == 413 and body["error"]["param"] == "messages"
    status, body = _post(server.url + "/v1/nothing", b"{}")
    assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}


def test_file_route_stays_inside_the_artifacts(server: Server, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("no")
    for name in ("../secret.txt", "..%2Fsecret.txt", "%2e%2e/secret.txt", "/etc/passwd"):
        request = urllib.request.Request(
            server.url + "/v1/files/" + name, headers={"Authorization": f"Bearer {KEY}"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 404, name


def test_a_client_that_leaves_cancels_the_turn(server: Server) -> None:
    server.text.enqueue(" ".join(f"w{i}" for i in range(400)))
    seen: list[int] = []

    def slow(emitted: int) -> None:
        seen.append(emitted)
        time.sleep(0.02)

    server.text.on_chunk = slow
    stream = server.client().chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "talk"}], stream=True
    )
    for i, _chunk in enumerate(stream):
        if i == 5:
            break
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not seen or len(seen) != _settled(seen)):
        time.sleep(0.2)
    assert len(seen) < 100, "the turn went on after the client left"


def _settled(seen: list[int]) -> int:
    before = len(seen)
    time.sleep(0.3)
    return before if len(seen) == before else -1


def test_without_keys_only_loopback_is_served(tmp_path: Path) -> None:
    assert refusal_to_expose("127.0.0.1", []) == ""
    assert refusal_to_expose("0.0.0.0", ["k"]) == ""
    assert refusal_to_expose("0.0.0.0", []).startswith(
        "the API would answer anyone who reaches 0.0.0.0 without a key"
    )
    from fastapi.testclient import TestClient

    runtime = Runtime(personalities=[ROOT / "personalities"])
    app = create_api(ConversationService(runtime), tmp_path)
    remote = TestClient(app, client=("203.0.113.9", 5000))
    response = remote.get("/v1/models")
    assert response.status_code == 403
    assert response.json()["error"]["message"].startswith("this API answers only on loopback")
    local = TestClient(app, client=("127.0.0.1", 5000))
    assert local.get("/v1/models").status_code == 200
    assert local.get("/v1/openapi.json").json()["paths"]["/v1/chat/completions"]


def test_busy_is_503_with_retry_after(tmp_path: Path) -> None:
    text = ScriptedTextBackend(*["slow answer here"] * 3)
    gate = threading.Event()
    text.on_chunk = lambda emitted: gate.wait(10)
    runtime = Runtime(personalities=[ROOT / "personalities"])
    runtime.engine = Engine(
        runtime.host, text, ScriptedImageBackend(), resolve_personality=runtime.catalog.get
    )
    port = _port()
    served = Served(
        create_api(ConversationService(runtime), tmp_path, APIConfig(max_running_turns=1)),
        "127.0.0.1",
        port,
    ).serve(block=False)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        first = client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "a"}], stream=True
        )
        next(iter(first))
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "b"}]
            )
        assert info.value.status_code == 503
        assert info.value.response.headers["retry-after"] == "2"
        gate.set()
        first.close()
    finally:
        gate.set()
        served.close()


def test_saved_discussions_through_the_api(server: Server) -> None:
    server.text.enqueue("Nice to meet you, Ann.", "Your name is Ann.")
    client = server.client()
    first = client.chat.completions.create(
        model="assistant",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "I am Ann."},
        ],
        extra_body={"discussion": "new"},
    )
    did = (first.model_extra or {})["discussion_id"]
    saved = [(m.role, m.content) for m in server.service.history(did)]
    assert saved == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "I am Ann."),
        ("assistant", "Nice to meet you, Ann."),
    ]
    # Continuing a saved discussion: only the new message is needed, the history is the store's.
    client.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "What is my name?"}],
        extra_body={"discussion": did},
    )
    assert [m.content for m in server.service.history(did)][-2:] == [
        "What is my name?",
        "Your name is Ann.",
    ]
    assert [m.role for m in server.text.history[-1].messages][-3:] == ["user", "assistant", "user"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"discussion": "nope"},
        )
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="router",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"discussion": did},
        )
    assert "is with 'assistant', not 'router'" in info.value.body["message"]  # type: ignore[index]


def test_a_discussion_named_in_a_header(server: Server) -> None:
    """For clients that add headers but no body fields; the answer names the discussion back."""
    server.text.enqueue("Hello, Bo.", "You are Bo.", "Streamed.")
    client = server.client()
    raw = client.chat.completions.with_raw_response.create(
        model="assistant",
        messages=[{"role": "user", "content": "I am Bo."}],
        extra_headers={"X-Lollms-Discussion": "new"},
    )
    did = raw.headers["x-lollms-discussion"]
    assert (raw.parse().model_extra or {})["discussion_id"] == did
    streamed = client.chat.completions.with_raw_response.create(
        model="assistant",
        messages=[{"role": "user", "content": "Who am I?"}],
        extra_headers={"X-Lollms-Discussion": did},
        stream=True,
    )
    assert streamed.headers["x-lollms-discussion"] == did
    assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert [m.content for m in server.service.history(did)] == [
        "I am Bo.", "Hello, Bo.", "Who am I?", "You are Bo.",
    ]  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Lollms-Discussion": "nope"},
        )
    # Unsaved by default: no header back.
    plain = client.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "x"}]
    )
    assert "x-lollms-discussion" not in plain.headers


def test_a_saved_turn_whose_client_leaves_is_saved_as_cancelled(server: Server) -> None:
    server.text.enqueue(" ".join(f"w{i}" for i in range(300)))
    server.text.on_chunk = lambda emitted: time.sleep(0.02)
    stream = server.client().chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "talk"}],
        stream=True,
        extra_body={"discussion": "new"},
    )
    for i, _chunk in enumerate(stream):
        if i == 5:
            break
    stream.close()
    deadline = time.monotonic() + 15
    answer = None
    while time.monotonic() < deadline:
        found = server.service.discussions()
        if found:
            answer = server.service.history(found[0].id)[-1]
            if answer.role == "assistant" and answer.status != "running":
                break
        time.sleep(0.2)
    assert answer is not None and answer.role == "assistant"
    assert answer.status == "cancelled"
    assert answer.content.startswith("w0 w1 w2") and len(answer.content.split()) < 300


def _file_part(name: str, text: str) -> dict[str, Any]:
    import base64

    data = base64.b64encode(text.encode()).decode()
    return {
        "type": "file",
        "file": {"filename": name, "file_data": f"data:text/plain;base64,{data}"},
    }


NOTES = (
    "# Project Zephyr\n\nThe launch code of project Zephyr is PELICAN-42.\n\n"
    "# Lunch\n\nThe team eats soup on Tuesdays.\n"
)


def test_a_file_part_is_retrieved_from_in_an_unsaved_turn(server: Server) -> None:
    server.text.enqueue("It is PELICAN-42.")
    response = server.client().chat.completions.create(
        model="assistant",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the launch code of project Zephyr?"},
                    _file_part("notes.md", NOTES),
                ],
            }
        ],
    )
    assert response.choices[0].message.content == "It is PELICAN-42."
    (request,) = server.text.history
    system = request.messages[0].content
    assert "PELICAN-42" in system and "notes.md" in system  # the passage, cited by its source
    assert request.messages[-1].content == "What is the launch code of project Zephyr?"
    from lollms_runtime.knowledge.library import knowledge_home

    leftovers = list((knowledge_home() / "discussions").glob("unsaved-*"))
    assert leftovers == []  # an unsaved turn's files are forgotten with it


def test_a_file_part_joins_a_saved_discussion(server: Server) -> None:
    server.text.enqueue("Noted.", "Soup, on Tuesdays.")
    client = server.client()
    first = client.chat.completions.create(
        model="assistant",
        messages=[
            {
                "role": "user",
                "content": [_file_part("notes.md", NOTES), {"type": "text", "text": "Keep this."}],
            }
        ],  # type: ignore[list-item]
        extra_body={"discussion": "new"},
    )
    did = (first.model_extra or {})["discussion_id"]
    from lollms_runtime.knowledge.library import attachments

    assert [a["source"] for a in attachments(did)] == ["notes.md"]
    client.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "What does the team eat on Tuesdays?"}],
        extra_body={"discussion": did},
    )
    assert "soup on Tuesdays" in server.text.history[-1].messages[0].content
    server.service.delete(did)
    assert attachments(did) == []


@pytest.mark.parametrize(
    ("part", "param", "message"),
    [
        (
            {"type": "file", "file": {"filename": "a.txt", "file_data": "%%%"}},
            "messages[0].content[0].file.file_data",
            "not valid base64",
        ),
        (
            {"type": "file", "file": {"file_id": "file-123"}},
            "messages[0].content[0].file.filename",
            "needs a 'filename'",
        ),
        (
            {"type": "file", "file": {"filename": "a.bin", "file_id": "f"}},
            "messages[0].content[0].file.file_id",
            "uploaded file ids are not supported",
        ),
        (_file_part("blob.exe", "MZ\x00\x01binary"), "messages", "blob.exe"),
    ],
)
def test_bad_file_parts_are_400(
    server: Server, part: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        server.client().chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": [part, {"type": "text", "text": "hi"}]}],  # type: ignore[list-item]
        )
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == param and message in error["message"]
    assert server.text.history == []
