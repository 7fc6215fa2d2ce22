"""The openai backend against a tiny scripted HTTP server on loopback: retries and backoff,
timeouts, refused fields, streaming and stops, cancel, choices, and the request it sends."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lollms_runtime.backends.base import ChatMessage, GenerationRequest, Sampling
from lollms_runtime.remote.backend import OpenAITextBackend
from lollms_runtime.remote.choose import NoChoice, match_answer, option_probabilities
from lollms_runtime.remote.client import Client, RemoteError, RequestRefused
from lollms_runtime.remote.endpoints import Endpoint, RemoteModel


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON body (non-streamed)
    events: list[Any] | None = None  # SSE events (dicts, or raw strings sent as is)
    delay: float = 0.0  # before answering
    gap: float = 0.0  # between events
    drop: bool = False  # close the connection without an answer
    drop_after: int | None = None  # close the stream after this many events
    headers: dict[str, str] = field(default_factory=dict)


class Script:
    """What the server answers, in order, and what it was sent."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.owned_by = "someone"
        self.meta: dict[str, Any] | None = None  # llama.cpp's model facts in its model list
        self.sent_events = 0
        self.client_closed = threading.Event()

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            model: dict[str, Any] = {"id": "m1", "owned_by": script.owned_by}
            if script.meta is not None:
                model["meta"] = script.meta
            body = {"object": "list", "data": [{"id": "other"}, model]}
            self._json(200, body, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            script.requests.append((self.path, json.loads(self.rfile.read(length))))
            reply = script.replies.pop(0) if script.replies else Reply(500, {"error": "unscripted"})
            time.sleep(reply.delay)
            if reply.drop:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if reply.events is None:
                self._json(reply.status, reply.body, reply.headers)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for index, event in enumerate(reply.events):
                    if reply.drop_after is not None and index >= reply.drop_after:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    text = event if isinstance(event, str) else f"data: {json.dumps(event)}\n\n"
                    self.wfile.write(text.encode())
                    self.wfile.flush()
                    script.sent_events += 1
                    time.sleep(reply.gap)
            except (BrokenPipeError, ConnectionResetError):
                script.client_closed.set()

        def _json(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[Script, str]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def backend_for(url: str, sleeps: list[float] | None = None, **endpoint: Any) -> OpenAITextBackend:
    settings: dict[str, Any] = {"connect_timeout": 2.0, "read_timeout": 5.0, "retries": 2}
    settings.update(endpoint)
    point = Endpoint(name="test", url=url, **settings)
    record = sleeps if sleeps is not None else []
    client = Client(point, sleep=lambda seconds, cancel: record.append(seconds))
    return OpenAITextBackend(RemoteModel(point, "m1"), client)


def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


USAGE = {
    "choices": [],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}


def ask(text: str = "Hi", **sampling: Any) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage("system", "Be brief."), ChatMessage("user", text)],
        sampling=Sampling(**sampling),
    )


def answer(text: str, logprobs: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
    if logprobs is not None:
        top = [{"token": t, "logprob": lp} for t, lp in logprobs]
        choice["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
    return {"choices": [choice]}


# -- streaming ---------------------------------------------------------------------------------
def test_stream_yields_text_and_usage(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(
        Reply(events=[": keep-alive\n\n", chunk("Hel"), chunk("lo"), chunk("", "stop"), USAGE])
    )
    chunks = list(backend_for(url).stream(ask()))
    assert "".join(c.text for c in chunks) == "Hello"
    last = chunks[-1]
    assert (last.finish_reason, last.prompt_tokens, last.cached_tokens) == ("stop", 12, 4)
    assert last.generation_tokens == 3
    path, body = script.requests[0]
    assert path == "/v1/chat/completions"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stop_strings_never_leak_even_split_across_events(server: tuple[Script, str]) -> None:
    script, url = server
    pieces = ["The answer", " is 4.\n##", "# Us", "er: and more", " text"]
    script.add(Reply(events=[chunk(p) for p in pieces] + [chunk("", "stop")], gap=0.05))
    chunks = list(backend_for(url).stream(ask(stop=("### User",))))
    text = "".join(c.text for c in chunks)
    assert text == "The answer is 4.\n"
    assert chunks[-1].finish_reason == "stop"
    assert script.requests[0][1]["stop"] == ["### User"]  # the server may stop early too


def test_length_finish_is_reported(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(events=[chunk("a b c"), chunk("", "length")]))
    assert list(backend_for(url).stream(ask()))[-1].finish_reason == "length"


def test_cancel_closes_the_stream(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(events=[chunk(f"w{i} ") for i in range(200)], gap=0.02))
    cancel = threading.Event()
    seen: list[str] = []
    finish = None
    for piece in backend_for(url).stream(ask(), cancel):
        seen.append(piece.text)
        finish = piece.finish_reason
        cancel.set()
    assert finish == "cancelled"
    assert len([s for s in seen if s]) <= 2
    assert script.client_closed.wait(5), "the server kept writing to a closed stream"
    assert script.sent_events < 200


# -- retries, backoff and timeouts ------------------------------------------------------------
def test_5xx_and_dropped_connections_are_retried_with_backoff(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(503, {"error": {"message": "loading"}}), Reply(drop=True))
    script.add(Reply(events=[chunk("ok"), chunk("", "stop")]))
    sleeps: list[float] = []
    text = "".join(c.text for c in backend_for(url, sleeps).stream(ask()))
    assert text == "ok"
    assert len(script.requests) == 3
    assert sleeps == [0.5, 1.0]  # exponential backoff


def test_429_honours_retry_after(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(429, {"error": "slow down"}, headers={"Retry-After": "3"}))
    script.add(Reply(200, answer("fine")))
    sleeps: list[float] = []
    got, _ = backend_for(url, sleeps).send({"messages": [], "max_tokens": 1})
    assert got["choices"][0]["message"]["content"] == "fine"
    assert sleeps == [3.0]


def test_retries_give_up_with_an_actionable_error(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(*[Reply(502, {"error": "bad gateway"})] * 3)
    with pytest.raises(RemoteError) as caught:
        list(backend_for(url).stream(ask()))
    assert "HTTP 502" in str(caught.value) and "after 3 attempt(s)" in str(caught.value)
    assert "try again later" in caught.value.hint
    assert len(script.requests) == 3


# With a cancel event (as the engine always passes) the stream is read by a helper thread.
WITH_AND_WITHOUT_CANCEL = pytest.mark.parametrize("cancellable", [False, True])


@WITH_AND_WITHOUT_CANCEL
def test_no_retry_after_the_first_token(server: tuple[Script, str], cancellable: bool) -> None:
    script, url = server
    script.add(Reply(events=[chunk("Half an"), chunk(" answer")], drop_after=1))
    script.add(Reply(events=[chunk("a second answer"), chunk("", "stop")]))
    shown: list[str] = []
    cancel = threading.Event() if cancellable else None
    with pytest.raises(RemoteError) as caught:
        for piece in backend_for(url).stream(ask(), cancel):
            shown.append(piece.text)
    assert "".join(shown) == "Half an"
    assert "before the answer finished" in str(caught.value)
    assert len(script.requests) == 1  # the second answer was never asked for


def test_unreachable_server_is_a_clean_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    backend = backend_for(f"http://127.0.0.1:{port}/v1", sleeps, retries=1)
    with pytest.raises(RemoteError) as caught:
        list(backend.stream(ask()))
    assert f"cannot reach the model server at http://127.0.0.1:{port}/v1" in str(caught.value)
    assert "start the server" in caught.value.hint
    assert sleeps == [0.5]


def test_read_timeout(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(200, answer("late"), delay=1.5))
    backend = backend_for(url, read_timeout=0.3, retries=0)
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        backend.send({"messages": [], "max_tokens": 1})
    assert time.monotonic() - started < 1.4
    assert "did not answer within 0.3 s" in str(caught.value)
    assert "read_timeout" in caught.value.hint


@WITH_AND_WITHOUT_CANCEL
def test_timeout_between_events_mid_stream(server: tuple[Script, str], cancellable: bool) -> None:
    script, url = server
    script.add(Reply(events=[chunk("a"), chunk("b")], gap=1.5))
    cancel = threading.Event() if cancellable else None
    with pytest.raises(RemoteError, match=r"stopped sending for 0\.3 s"):
        list(backend_for(url, read_timeout=0.3, retries=0).stream(ask(), cancel))


def test_cancel_interrupts_the_backoff(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(503, {"error": "busy"}), Reply(503, {"error": "busy"}))
    point = Endpoint(name="t", url=url, retries=3)
    backend = OpenAITextBackend(RemoteModel(point, "m1"), Client(point, backoff=30.0))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(RemoteError, match="cancelled"):
        list(backend.stream(ask(), cancel))
    assert time.monotonic() - started < 5


def test_auth_and_not_found_errors(server: tuple[Script, str], monkeypatch: Any) -> None:
    script, url = server
    monkeypatch.setenv("TEST_KEY", "sk-test")
    script.add(Reply(401, {"error": {"message": "bad key"}}), Reply(404, {"error": "no such"}))
    backend = backend_for(url, api_key_env="TEST_KEY")
    with pytest.raises(RemoteError) as caught:
        list(backend.stream(ask()))
    assert "refused the key" in str(caught.value) and "$TEST_KEY" in caught.value.hint
    with pytest.raises(RemoteError) as caught:
        list(backend.stream(ask()))
    assert "not found" in str(caught.value) and "/v1" in caught.value.hint


# -- the request: messages and sampling --------------------------------------------------------
def test_sampling_and_messages_are_mapped(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(events=[chunk("x"), chunk("", "stop")]))
    request = GenerationRequest(
        messages=[
            ChatMessage("system", "You are Artbot."),
            ChatMessage("user", "Imagine a cat."),
            ChatMessage("assistant", "A cat in the sun."),
            ChatMessage("user", "Add a hat."),
        ],
        sampling=Sampling(
            temperature=0.6,
            top_k=40,
            top_p=0.9,
            min_p=0.05,
            repetition_penalty=1.1,
            repetition_context_size=32,
            max_tokens=77,
            stop=("a", "b", "c", "d", "e"),
            seed=7,
            presence_penalty=0.5,
        ),
    )
    list(backend_for(url).stream(request))
    body = script.requests[0][1]
    assert body["model"] == "m1"
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == "You are Artbot."
    expected = {
        "temperature": 0.6,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "repetition_context_size": 32,
        "max_tokens": 77,
        "seed": 7,
        "presence_penalty": 0.5,
        "stop": ["a", "b", "c", "d"],  # four at most; the fifth is still cut here
    }
    assert {k: body[k] for k in expected} == expected
    assert "frequency_penalty" not in body and "logit_bias" not in body


def test_answer_prefix_asks_to_continue(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(events=[chunk(" more"), chunk("", "stop")]))
    request = GenerationRequest(messages=[ChatMessage("user", "Go on")], answer_prefix="Once")
    list(backend_for(url).stream(request))
    body = script.requests[0][1]
    assert body["messages"][-1] == {"role": "assistant", "content": "Once"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_refused_fields_are_dropped_noted_and_not_sent_again(server: tuple[Script, str]) -> None:
    script, url = server
    refusal = {"error": {"message": "Unrecognized request arguments supplied: top_k, min_p"}}
    script.add(Reply(400, refusal), Reply(events=[chunk("fine"), chunk("", "stop")]))
    script.add(Reply(events=[chunk("again"), chunk("", "stop")]))
    backend = backend_for(url)
    first = list(backend.stream(ask(top_k=20, min_p=0.1, temperature=0.5)))
    assert "".join(c.text for c in first) == "fine"
    assert first[-1].note == "not sent (refused by the endpoint): min_p, top_k"
    assert "top_k" in script.requests[0][1]
    assert "top_k" not in script.requests[1][1] and "min_p" not in script.requests[1][1]
    second = list(backend.stream(ask(top_k=20, min_p=0.1)))
    assert "top_k" not in script.requests[2][1]
    assert second[-1].note == "not sent (refused by the endpoint): min_p, top_k"


def test_a_refusal_of_the_request_itself_is_not_retried(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(400, {"error": {"message": "'messages' is too long for the context"}}))
    backend = backend_for(url)
    with pytest.raises(RequestRefused, match="too long"):
        list(backend.stream(ask(top_k=20)))
    assert len(script.requests) == 1 and not backend.refused


# -- model-judged choices ----------------------------------------------------------------------
def test_choice_from_first_token_logprobs(server: tuple[Script, str]) -> None:
    script, url = server
    top = [("The", -0.7), ("No", -1.5), ("Yes", -2.9), ("Ġyes", -3.3), ("no", -4.4)]
    script.add(Reply(200, answer("The", top)))
    result = backend_for(url).choose(ask("Is it raining?"), ["yes", "no"])
    assert (result.choice, result.method) == ("no", "first-token logprobs")
    yes = pytest.approx(0.0916 / (0.0916 + 0.2354), rel=0.01)
    assert result.probabilities["yes"] == yes
    body = script.requests[0][1]
    assert body["logprobs"] is True and body["top_logprobs"] == 10
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0
    assert "top_k" not in body and "stop" not in body


def test_options_sharing_a_first_token_go_on_to_constrained_decoding(
    server: tuple[Script, str],
) -> None:
    script, url = server
    script.owned_by = "vllm"
    script.add(Reply(200, answer("trans", [("trans", -0.1), ("sum", -3.0)])))
    script.add(Reply(200, answer("transform")))
    result = backend_for(url).choose(ask(), ["translate", "transform", "summarize"])
    assert result.choice == "transform"
    assert result.method == "constrained decoding (vLLM structured_outputs choice)"
    constrained = script.requests[1][1]
    assert constrained["structured_outputs"] == {"choice": ["translate", "transform", "summarize"]}
    assert "logprobs" not in constrained


def test_llama_cpp_gets_a_grammar(server: tuple[Script, str]) -> None:
    script, url = server
    script.owned_by = "llamacpp"
    script.add(Reply(200, answer("no")), Reply(200, answer("yes")))  # no logprobs returned
    result = backend_for(url).choose(ask(), ["yes", 'say "no"'])
    assert result.choice == "yes"
    assert result.method == "constrained decoding (llama.cpp grammar)"
    assert script.requests[1][1]["grammar"] == 'root ::= "yes" | "say \\"no\\""'


def test_the_model_size_comes_from_llama_cpp_model_list(server: tuple[Script, str]) -> None:
    script, url = server
    script.owned_by = "llamacpp"
    script.meta = {"n_vocab": 49152, "n_params": 134515008, "size": 91000000}
    backend = backend_for(url)
    assert backend.parameters == 134515008
    assert backend.server_kind() == "llama.cpp"  # the list is read once for both


@pytest.mark.parametrize("meta", [None, {}, {"n_params": "135M"}, {"n_params": True}, [1]])
def test_a_server_that_does_not_say_its_model_size_gives_none(
    server: tuple[Script, str], meta: Any
) -> None:
    script, url = server
    script.meta = meta
    assert backend_for(url).parameters is None


def test_response_format_for_other_servers(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(400, {"error": "logprobs are not supported"}))
    script.add(Reply(200, answer('{"choice": "chat"}')))
    backend = backend_for(url)
    result = backend.choose(ask(), ["translate", "chat"])
    assert (result.choice, result.method) == ("chat", "constrained decoding (response_format enum)")
    schema = script.requests[1][1]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["choice"]["enum"] == ["translate", "chat"]
    assert "logprobs" in backend.refused  # not asked again


def test_short_answer_parsed_when_nothing_else_works(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(200, answer("Maybe")))  # no logprobs
    script.add(Reply(400, {"error": {"message": "response_format is not supported"}}))
    script.add(Reply(200, answer("Yes, definitely.")))
    result = backend_for(url).choose(ask(), ["yes", "no"])
    assert result.choice == "yes"
    assert result.method == (
        "short answer parsed; the endpoint returned no logprobs; "
        "response_format refused by the endpoint"
    )


def test_ignored_constraint_answer_is_parsed_without_asking_again(
    server: tuple[Script, str],
) -> None:
    script, url = server
    script.add(Reply(200, answer("x")), Reply(200, answer("I think: summarize.")))
    result = backend_for(url).choose(ask(), ["translate", "summarize"])
    assert result.choice == "summarize"
    assert "ignored response_format" in result.method
    assert len(script.requests) == 2


def test_no_matching_answer_is_a_clear_failure(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(200, answer("x")), Reply(200, answer("I cannot decide.")))
    with pytest.raises(NoChoice) as caught:
        backend_for(url).choose(ask(), ["yes", "no"])
    assert "the model answered 'I cannot decide.', which matches none of the options (yes, no)" in (
        str(caught.value)
    )
    assert "logprobs" in caught.value.hint


def test_option_probabilities_and_answer_matching() -> None:
    assert option_probabilities([("The", -0.1), ("I", -1.0)], ["yes", "no"]) is None
    shares = option_probabilities([("▁Yes", -0.5), ("Hmm", -1.0)], ["yes", "no"])
    assert shares is not None and shares[0] > 0.9 and shares[1] > 0
    assert match_answer("**No.**", ["yes", "no"]) == 1
    assert match_answer("yes please", ["yes", "yes please"]) == 1
    assert match_answer("It is a translation task: translate", ["translate", "chat"]) == 0
    assert match_answer("yes or no", ["yes", "no"]) == 0  # it starts with an option
    assert match_answer("either one, chat or translate", ["translate", "chat"]) is None


# -- through the engine: what the trace says ---------------------------------------------------
PERSONALITY = """\
schema: 1
id: remote_probe
name: Remote probe
conditioning: Be brief.
sampling: {temperature: 0.5, top_k: 40, max_tokens: 8}
pipeline:
  - condition:
      id: polite
      ask: Is the message polite?
      then: [{generate: {id: answer}}]
      else: [{generate: {id: answer, prompt: "Say sorry."}}]
  - reply: {text: "{{ answer }}"}
"""


def test_the_trace_names_the_choice_method_and_refused_fields(
    server: tuple[Script, str], tmp_path: Path
) -> None:
    from lollms_runtime.events import Done, StepFinished
    from lollms_runtime.events import Reply as Answer
    from lollms_runtime.runtime import Runtime

    script, url = server
    folder = tmp_path / "remote_probe"
    folder.mkdir()
    (folder / "personality.yaml").write_text(PERSONALITY, encoding="utf-8")
    script.add(Reply(200, answer("Yes", [("Yes", -0.2), ("No", -2.0)])))
    script.add(Reply(400, {"error": {"message": "top_k is not a valid argument"}}))
    script.add(Reply(events=[chunk("Hello"), chunk(" there."), chunk("", "stop"), USAGE]))
    runtime = Runtime(personalities=[tmp_path], model=f"openai:{url}#m1")
    events = list(runtime.run("remote_probe", "Please help, thank you!"))
    assert isinstance(events[-1], Done) and events[-1].status == "ok", events
    finished = {e.step_id: e for e in events if isinstance(e, StepFinished)}
    assert finished["polite"].output == "then"
    assert "(p=0.86, first-token logprobs)" in finished["polite"].detail
    assert finished["answer"].detail == "not sent (refused by the endpoint): top_k"
    assert (finished["answer"].prompt_tokens, finished["answer"].cached_tokens) == (12, 4)
    assert next(e for e in events if isinstance(e, Answer)).text == "Hello there."


def test_cancel_returns_at_once_while_the_server_is_silent(server: tuple[Script, str]) -> None:
    script, url = server
    script.add(Reply(events=[chunk("first"), chunk("late"), chunk("", "stop")], gap=3.0))
    cancel = threading.Event()
    stream = backend_for(url).stream(ask(), cancel)
    assert next(stream).text == "first"
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    rest = list(stream)
    assert time.monotonic() - started < 1.5  # not the 3 s the server takes for its next event
    assert [c.text for c in rest] == [""] and rest[-1].finish_reason == "cancelled"


def test_a_raw_prompt_goes_to_completions(server: tuple[Script, str]) -> None:
    script, url = server
    text_chunk = {"choices": [{"index": 0, "text": "Paris", "finish_reason": None}]}
    script.add(Reply(events=[text_chunk, {"choices": [{"text": "", "finish_reason": "stop"}]}]))
    legacy = {
        "choices": [{"text": "yes", "logprobs": {"top_logprobs": [{" yes": -0.1, " no": -3}]}}]
    }
    script.add(Reply(200, legacy))
    backend = backend_for(url)
    request = GenerationRequest(messages=[], raw_prompt="Q: capital of France?\nA:")
    assert "".join(c.text for c in backend.stream(request)) == "Paris"
    path, body = script.requests[0]
    assert path == "/v1/completions" and body["prompt"] == "Q: capital of France?\nA:"
    assert "messages" not in body
    result = backend.choose(request, ["yes", "no"])
    assert (result.choice, result.method) == ("yes", "first-token logprobs")
    assert script.requests[1][1]["logprobs"] == 10  # the completions API's own shape
