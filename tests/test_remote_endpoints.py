"""Which endpoint a model spec names (inline `openai:` URLs and models.yaml), how the runtime
picks the openai backend for it, and `lollms models` listing the endpoints."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import run_lollms

from lollms_runtime.errors import LollmsError, PersonalityError
from lollms_runtime.plugins import PluginHost
from lollms_runtime.remote.backend import OpenAITextBackend
from lollms_runtime.remote.endpoints import claims, load_endpoints, personality_may_use, resolve
from lollms_runtime.runtime import Runtime


def home() -> Path:
    path = Path(os.environ["LOLLMS_HOME"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_models(text: str) -> Path:
    path = home() / "models.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MODELS = """\
endpoints:
  studio:
    url: http://127.0.0.1:1234/v1/
    models: [qwen2.5-7b-instruct, llama-3.2-3b]
    api_key_env: STUDIO_KEY
    read_timeout: 60
    retries: 1
    server: lmstudio
  vllm:
    url: http://10.0.0.5:8000/v1
"""


def test_inline_spec() -> None:
    remote = resolve("openai:http://127.0.0.1:8080/v1#smollm")
    assert (remote.endpoint.url, remote.model) == ("http://127.0.0.1:8080/v1", "smollm")
    assert remote.endpoint.api_key == ""  # an inline URL is sent no key
    assert resolve("openai:https://example.org/v1").model == ""
    assert claims("openai:http://x/v1") and not claims("default")
    assert not claims("mlx-community/Qwen2.5-0.5B-Instruct-4bit")


def test_inline_spec_errors() -> None:
    with pytest.raises(LollmsError, match=r"is not an http\(s\) URL"):
        resolve("openai:ftp://host/v1#m")
    with pytest.raises(LollmsError, match="no endpoint named 'nowhere'"):
        resolve("openai:nowhere")


def test_models_file_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    write_models(MODELS)
    monkeypatch.setenv("STUDIO_KEY", "sk-studio")
    endpoints = load_endpoints()
    studio = endpoints["studio"]
    assert studio.url == "http://127.0.0.1:1234/v1"
    assert (studio.read_timeout, studio.retries, studio.server) == (60.0, 1, "lmstudio")
    assert studio.api_key == "sk-studio"
    assert resolve("studio").model == "qwen2.5-7b-instruct"  # its first model
    assert resolve("studio#llama-3.2-3b").model == "llama-3.2-3b"
    assert resolve("openai:vllm#mistral").endpoint.url == "http://10.0.0.5:8000/v1"
    # An inline URL the file names gets the file's key and settings.
    assert resolve("openai:http://127.0.0.1:1234/v1#x").endpoint.api_key_env == "STUDIO_KEY"
    assert claims("studio") and claims("studio#llama-3.2-3b") and not claims("elsewhere")


def test_a_personality_may_only_pick_endpoints_the_user_named() -> None:
    assert not personality_may_use("studio")  # no models file yet
    write_models(MODELS)
    assert personality_may_use("studio") and personality_may_use("studio#llama-3.2-3b")
    assert personality_may_use("openai:vllm#mistral")
    assert personality_may_use("openai:http://127.0.0.1:1234/v1#qwen")  # the file names it
    assert not personality_may_use("openai:http://attacker.example/v1#m")
    assert not personality_may_use("elsewhere") and not personality_may_use("openai:")


def test_models_file_errors_name_file_line_and_column() -> None:
    path = write_models(
        "endpoints:\n  a:\n    url: localhost:8080\n    colour: red\n  b:\n    url: http://h/v1\n"
        "    retries: many\n"
    )
    with pytest.raises(PersonalityError) as caught:
        load_endpoints()
    text = str(caught.value)
    assert f"{path}:3:10: endpoints.a.url: 'localhost:8080' is not an http(s) URL" in text
    assert f"{path}:4:5: endpoints.a.colour: unknown key 'colour'" in text
    assert f"{path}:7:14: endpoints.b.retries: 'retries' must be a number, got 'many'" in text
    write_models("endpoints: [a, b]\n")
    with pytest.raises(PersonalityError, match="needs an 'endpoints:' mapping"):
        load_endpoints()


def test_runtime_routes_remote_specs_to_the_openai_backend(plugin_host: PluginHost) -> None:
    write_models(MODELS)
    runtime = Runtime(host=plugin_host, model="openai:http://127.0.0.1:9/v1#m")
    backend = runtime.text_backend()
    assert isinstance(backend, OpenAITextBackend)
    assert backend.model_id == "openai:http://127.0.0.1:9/v1#m"
    assert runtime.text_backend_for("studio") == "openai"
    assert runtime.text_backend_for("default") == "mlx"  # local specs are untouched
    assert runtime.text_backend(model="studio") is runtime.text_backend(model="studio")


class _Models(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        data = json.dumps({"data": [{"id": "served-a"}, {"id": "served-b"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def models_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_lollms_models_lists_endpoints_and_their_models(models_server: str) -> None:
    write_models(
        f"endpoints:\n  up:\n    url: {models_server}\n    models: [pinned]\n"
        "  down:\n    url: http://127.0.0.1:9/v1\n"
    )
    done = run_lollms("models")
    assert done.returncode == 0, done.stderr
    assert "remote up" in done.stdout and f"{models_server}  (reachable)" in done.stdout
    for model in ("pinned", "served-a", "served-b"):
        assert f"--model up#{model}" in done.stdout
    assert "http://127.0.0.1:9/v1  (unreachable)" in done.stdout
    assert "cannot reach the model server at http://127.0.0.1:9/v1" in done.stdout
    listed = json.loads(run_lollms("models", "--json").stdout)
    remote = {m["id"]: m for m in listed if m["kind"] == "remote"}
    assert remote["up"]["served"] == ["served-a", "served-b"] and remote["up"]["reachable"]
    assert remote["down"]["reachable"] is False and remote["down"]["served"] is None


def test_lollms_run_with_an_unreachable_server_is_a_clean_error() -> None:
    done = run_lollms(
        "run", "assistant", "Hi", "--model", "openai:http://127.0.0.1:9/v1", "--no-save"
    )
    assert done.returncode != 0
    assert "cannot reach the model server at http://127.0.0.1:9/v1" in done.stderr
    assert "start the server" in done.stderr
    assert "Traceback" not in done.stderr and "bug" not in done.stderr
