"""lollms-speech: the speak step with the real espeak-ng, its own backend hook, errors, cancel,
and the package installed through its entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PLUGIN_ROOT.parents[1]
sys.path.insert(0, str(PLUGIN_ROOT))  # the plugin under test, installed or not

from lollms_speech import plugin  # noqa: E402
from lollms_speech.backends import PiperBackend, SpeechError, Voice  # noqa: E402
from lollms_speech.speech import speakable, split_sentences  # noqa: E402

from lollms_runtime.engine import Engine, Turn  # noqa: E402
from lollms_runtime.errors import PersonalityError  # noqa: E402
from lollms_runtime.events import (  # noqa: E402
    ArtifactProduced,
    Done,
    Progress,
    StepFinished,
    TurnError,
)
from lollms_runtime.loader import load_personality  # noqa: E402
from lollms_runtime.plugins import PluginHost, get_plugin_manager, hookimpl  # noqa: E402
from lollms_runtime.testing import ScriptedTextBackend  # noqa: E402

NARRATOR = PLUGIN_ROOT / "lollms_speech" / "narrator"
STORY = "The keeper lit the lamp. Ships came home safely! He smiled, and slept."


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOLLMS_LOAD_PLUGINS", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _espeak_installed() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: run `make system-deps` (or apt-get install espeak-ng)")


def host_with(*plugins: object) -> PluginHost:
    """A fresh plugin host: the built-ins, this plugin and ``plugins`` (no installed entry points)."""
    return PluginHost(get_plugin_manager(extra_plugins=[*plugins, plugin], load_entry_points=False))


def personality(tmp_path: Path, pipeline: str, host: PluginHost, head: str = "") -> Any:
    (tmp_path / "p.yaml").write_text(
        f"schema: 1\nid: talker\nname: Talker\nlanguage: english\n{head}pipeline:\n{pipeline}",
        encoding="utf-8",
    )
    return load_personality(tmp_path / "p.yaml", host)


def run(host: PluginHost, who: Any, message: str, folder: Path, **turn: Any) -> list[Any]:
    backend = ScriptedTextBackend(STORY)
    return list(Engine(host, backend).run_turn(Turn(who, message, artifacts_dir=folder, **turn)))


def turn_error(events: list[Any]) -> TurnError:
    (error,) = [e for e in events if isinstance(e, TurnError)]
    return error


def wav_seconds(path: str | Path) -> float:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getnframes() / wav.getframerate()


def test_sentences_are_split_in_order_and_markup_is_not_read() -> None:
    text = "# Title\nFirst **bold** one. Second one? Third!\n\n- a list item\n- [a link](http://x)"
    assert split_sentences(speakable(text)) == [
        "Title First bold one.",
        "Second one?",
        "Third!",
        "- a list item",
        "- a link",
    ]
    long = "word, " * 200
    parts = split_sentences(long, max_chars=100)
    assert all(len(p) <= 100 for p in parts) and " ".join(parts).split() == long.split()
    assert split_sentences("  ...  \n\n !? ") == []


def test_narrator_speaks_its_story_sentence_by_sentence_in_its_own_voice(tmp_path: Path) -> None:
    host = host_with()
    events = run(host, load_personality(NARRATOR, host), "a lighthouse", tmp_path)
    assert isinstance(events[-1], Done) and events[-1].status == "ok"
    progress = [(e.done, e.total) for e in events if isinstance(e, Progress)]
    assert progress == [(1, 3), (2, 3), (3, 3)]  # one event per sentence, before the end
    (spoken,) = [e for e in events if isinstance(e, StepFinished) and e.kind == "speak"]
    out = spoken.output
    assert out["audio"] == str(tmp_path / "reading.wav") and out["mime"] == "audio/wav"
    assert (out["backend"], out["voice"]) == ("espeak", "en-gb+m3")  # the narrator's default voice
    assert [Path(p).name for p in out["parts"]] == [f"reading.part{i}.wav" for i in (1, 2, 3)]
    parts = sum(wav_seconds(p) for p in out["parts"])
    assert 2.0 < parts < wav_seconds(out["audio"]) < parts + 0.5  # joined, with short pauses
    assert spoken.detail.startswith("3 sentence(s), ")
    # Each sentence as it is spoken, then the whole file: audio artifacts the recorder keeps.
    audio = [e for e in events if isinstance(e, ArtifactProduced)]
    assert [(str(e.path), e.kind, e.mime, e.part) for e in audio] == [
        *((p, "audio", "audio/wav", True) for p in out["parts"]),
        (out["audio"], "audio", "audio/wav", False),
    ]
    assert {e.step_id for e in audio} == {"reading"} and audio[-1].params["parts"] == 3

    again = run(host, load_personality(NARRATOR, host), "again", tmp_path)
    (second,) = [e for e in again if isinstance(e, StepFinished) and e.kind == "speak"]
    assert second.output["audio"] == str(tmp_path / "reading-1.wav")  # never overwritten


def test_the_recorder_keeps_the_audio_with_the_answer(tmp_path: Path) -> None:
    from lollms_runtime.recorder import record_turn
    from lollms_runtime.store import Store

    host = host_with()
    store = Store(tmp_path / "d.sqlite3")
    discussion = store.create_discussion("narrator")
    folder = store.artifact_dir(discussion.id)
    events = list(
        record_turn(
            store, discussion.id, iter(run(host, load_personality(NARRATOR, host), "a fox", folder))
        )
    )
    assert isinstance(events[-1], Done) and events[-1].status == "ok"
    answer = store.thread(discussion.id)[-1]
    kept = store.artifacts(answer.id)
    assert [(a.kind, a.mime, a.step_id) for a in kept] == [("audio", "audio/wav", "reading")] * 4
    whole = [a for a in kept if a.params.get("part") is None]  # what the app plays
    assert len(whole) == 1 and whole[0].params["parts"] == 3
    assert store.resolve_artifact(whole[0].path) == folder / "reading.wav"
    assert wav_seconds(store.resolve_artifact(whole[0].path)) > 1.0


def test_voice_and_speed_come_from_templates(tmp_path: Path) -> None:
    host = host_with()
    who = personality(
        tmp_path,
        "  - speak: {id: a, text: Hello there, voice: '{{ settings.v }}', speed: '{{ settings.s }}'}\n",
        host,
        "settings:\n  v: {type: string, default: en}\n  s: {type: number, default: 1}\n",
    )

    def audio(voice: str, speed: float) -> bytes:
        folder = tmp_path / f"{voice}-{speed}"
        events = run(host, who, "x", folder, settings={"v": voice, "s": speed})
        assert isinstance(events[-1], Done) and events[-1].status == "ok", events
        return (folder / "a.wav").read_bytes()

    slow, fast = audio("en-us", 0.5), audio("en-us", 2.0)
    assert len(slow) > 2 * len(fast)
    assert audio("en-us+f3", 1.0) != audio("en-us+m3", 1.0)


def test_bad_voices_end_the_step_with_a_clear_message(tmp_path: Path) -> None:
    host = host_with()
    for voice, message in [
        ("xx-nowhere", "espeak-ng failed: Error: The specified espeak-ng voice does not exist."),
        ("-w/etc/passwd", "voice '-w/etc/passwd' is not a valid name"),
    ]:
        who = personality(tmp_path, f"  - speak: {{id: s, text: Hi, voice: '{voice}'}}\n", host)
        events = run(host, who, "x", tmp_path)
        (error,) = [e for e in events if isinstance(e, TurnError)]
        assert error.message == f"step 's' (speak) failed: {message}"
    who = personality(tmp_path, "  - speak: {id: s, text: Hi, backend: nope}\n", host)
    (error,) = [e for e in run(host, who, "x", tmp_path) if isinstance(e, TurnError)]
    assert error.message == "step 's' (speak) failed: no speech backend named 'nope'"
    assert error.hint == "known speech backends: espeak, piper"


def test_speak_options_are_validated_at_load(tmp_path: Path) -> None:
    host = host_with()
    with pytest.raises(PersonalityError) as caught:
        personality(tmp_path, "  - speak: {text: Hi, speed: 9}\n", host)
    assert str(caught.value) == (
        f"{tmp_path / 'p.yaml'}:6:30: pipeline[0].speak.speed: 9 is above the maximum of 4\n"
        "    hint: Speaking speed, 1 = normal (a number or a template)."
    )


def test_cancelling_stops_between_sentences(tmp_path: Path) -> None:
    host = host_with()
    who = personality(tmp_path, "  - speak: {id: s, text: 'One. Two. Three. Four.'}\n", host)
    turn = Turn(who, "x", artifacts_dir=tmp_path)
    events: list[Any] = []
    for event in Engine(host, ScriptedTextBackend()).run_turn(turn):
        events.append(event)
        if isinstance(event, Progress):
            turn.cancel.set()
    assert [(e.done, e.total) for e in events if isinstance(e, Progress)] == [(1, 4)]
    assert isinstance(events[-1], Done) and events[-1].status == "cancelled"
    assert not (tmp_path / "s.wav").exists()


def test_the_steps_time_limit_holds_between_sentences(tmp_path: Path) -> None:
    host = host_with()
    who = personality(tmp_path, "  - speak: {id: s, text: 'One. Two.', timeout: 0.001}\n", host)
    events = run(host, who, "x", tmp_path)
    assert [(e.done, e.total) for e in events if isinstance(e, Progress)] == [(1, 2)]
    assert turn_error(events).message == (
        "step 's' (speak) failed: step 's' took longer than its time limit"
    )


class Beeper:
    """A third-party speech backend, registered through lollms-speech's own hook."""

    name = "beep"
    summary = "one short beep per sentence (test)"

    def synthesize(self, text: str, voice: Voice, out: Path, cancel: Any = None) -> Path:
        with wave.open(str(out), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(b"\x10\x20" * 800)
        return out


class BeepPlugin:
    @hookimpl(optionalhook=True)  # the hook is lollms-speech's, added when speak first runs
    def register_speech_backends(self, register: Any) -> None:
        register(Beeper())


def test_a_plugin_adds_a_speech_backend_through_the_plugins_own_hook(tmp_path: Path) -> None:
    host = host_with(BeepPlugin())  # registered before lollms-speech: not refused by the host
    assert host.failures == []
    who = personality(tmp_path, "  - speak: {id: s, text: 'One. Two.', backend: beep}\n", host)
    events = run(host, who, "x", tmp_path)
    assert isinstance(events[-1], Done) and events[-1].status == "ok"
    assert wav_seconds(tmp_path / "s.wav") == pytest.approx(0.1 + 0.15 + 0.1)
    assert sorted(plugin.speech_backends(host.pm)) == ["beep", "espeak", "piper"]


def test_piper_says_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # as if piper-tts were not installed
    voices = tmp_path / "home" / "voices"
    with pytest.raises(SpeechError) as caught:
        PiperBackend().synthesize("Hi", Voice("en_US-lessac-medium"), tmp_path / "x.wav")
    assert str(caught.value) == "no Piper voice named 'en_US-lessac-medium'"
    assert caught.value.hint.startswith("download en_US-lessac-medium.onnx and ")
    assert str(voices) in caught.value.hint
    voices.mkdir(parents=True)
    (voices / "en_US-lessac-medium.onnx").write_bytes(b"not really a model")
    with pytest.raises(SpeechError) as caught:
        PiperBackend().synthesize("Hi", Voice("en_US-lessac-medium"), tmp_path / "x.wav")
    assert str(caught.value) == (
        "the piper backend needs the piper-tts package, which is not installed"
    )
    assert caught.value.hint.startswith("pip install 'lollms-speech[piper]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This plugin installed through its entry point into a folder for PYTHONPATH."""
    return install_plugin(tmp_path_factory.mktemp("speech-site"))


def test_installed_through_its_entry_point(site: Path) -> None:
    env = {"LOLLMS_LOAD_PLUGINS": "speech"}
    done = lollms("plugins", "--json", site=site, env=env)
    data = json.loads(done.stdout)
    assert "speak" in data["step_kinds"] and data["failures"] == []
    listed = json.loads(lollms("list", "--json", site=site, env=env).stdout)
    assert [(e["id"], e["origin"]) for e in listed] == [("narrator", "plugin speech")]
    tested = lollms("test", "narrator", site=site, env=env)  # its scripted test, with the voice
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.model
def test_lollms_run_speaks_the_real_models_story(
    site: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    models = os.environ.get("LOLLMS_MODELS_DIR") or str(tmp_path_factory.mktemp("models"))
    env = {"LOLLMS_LOAD_PLUGINS": "speech", "HF_HUB_OFFLINE": "1", "LOLLMS_MODELS_DIR": models}
    done = lollms("run", "narrator", "a cat", "--max-tokens", "30", "--trace", site=site, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # the story the model wrote
    # The file, from its own line (the trace's output preview is cut at 500 characters).
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("[audio] ")]
    audio = Path(line.removeprefix("[audio] "))
    assert audio.parent.parent == tmp_path / "home" / "artifacts"  # the discussion's folder
    assert audio.name == "reading.wav" and wav_seconds(audio) > 0.5
    assert f"[audio] {audio}" in done.stderr.splitlines()  # the file, as for an image


def install_plugin(target: Path) -> Path:
    """This plugin installed into ``target`` (a folder for PYTHONPATH), offline, without deps."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "--no-index", "--target", str(target), str(PLUGIN_ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


def lollms(*args: str, site: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "lollms_runtime.cli", *args],
        env=full,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_step_kinds_example_is_a_valid_pipeline(tmp_path: Path) -> None:
    head, steps = plugin.SPEAK.example.split("pipeline:\n")
    who = personality(tmp_path, steps, host_with(), head)
    assert [next(iter(step)) for step in who.pipeline] == ["generate", "speak", "reply"]


def test_the_api_links_the_spoken_audio(tmp_path: Path) -> None:
    """A real HTTP API on loopback: the answer carries an ``audio`` link served by /v1/files."""
    import socket
    import urllib.request

    from lollms_runtime.api.server import APIConfig, create_api
    from lollms_runtime.api.serving import Served
    from lollms_runtime.conversation import ConversationService
    from lollms_runtime.runtime import Runtime
    from lollms_runtime.store import Store

    host = host_with()
    runtime = Runtime(host=host)
    runtime.engine = Engine(
        host, ScriptedTextBackend(STORY), resolve_personality=runtime.catalog.get
    )
    store = Store(tmp_path / "d.sqlite3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    served = Served(
        create_api(
            ConversationService(runtime, store), store.artifacts_root, APIConfig(keys=["k"])
        ),
        "127.0.0.1",
        port,
    )
    served.serve(block=False)
    try:
        body = {"model": "narrator", "messages": [{"role": "user", "content": "a fox"}]}
        headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        request = urllib.request.Request(url, json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        (link,) = answer["audio"]  # the whole speech, not its sentences
        assert link.startswith(f"http://127.0.0.1:{port}/v1/files/") and link.endswith(".wav")
        assert f"[audio]({link})" in answer["choices"][0]["message"]["content"]
        fetched = urllib.request.Request(link, headers={"Authorization": "Bearer k"})
        with urllib.request.urlopen(fetched, timeout=10) as got:
            assert got.read(4) == b"RIFF"
    finally:
        served.close()
        store.close()
