"""The plugin host: built-ins and plugins through the same hooks, failures reported by name."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from conftest import TEST_PLUGINS, run_lollms

from lollms_runtime.contracts import PostProcessor, StepKind, StepProblem
from lollms_runtime.engine import Engine, Turn
from lollms_runtime.errors import PersonalityError
from lollms_runtime.events import Done, Reply, StepFinished, Token
from lollms_runtime.loader import load_personality
from lollms_runtime.plugins import DEFAULT_PLUGINS, PluginHost, get_plugin_manager, hookimpl
from lollms_runtime.testing import ScriptedTextBackend

SHOUTER = "schema: 1\nid: loud\nname: Loud\npipeline:\n  - shout: {text: hi, times: 9}\n"
SHOUT_TOO_MANY = (
    "p.yaml:5:30: pipeline[0].shout.times: 9 is above the maximum of 3\n"
    "    hint: How many times to shout it."
)


@pytest.fixture
def test_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The test plugin's module, imported from its source folder (for in-process tests)."""
    monkeypatch.syspath_prepend(str(TEST_PLUGINS / "lollms-test-plugin"))
    import lollms_test_plugin

    lollms_test_plugin.EVENTS.clear()
    yield lollms_test_plugin
    sys.modules.pop("lollms_test_plugin", None)


def host_with(*plugins: object) -> PluginHost:
    """A fresh manager per test: the built-ins plus ``plugins``, no installed entry points."""
    return PluginHost(get_plugin_manager(extra_plugins=plugins, load_entry_points=False))


# -- in process ----------------------------------------------------------------------------


def test_builtins_register_through_the_hooks(plugin_host: PluginHost) -> None:
    assert plugin_host.plugin_names() == list(DEFAULT_PLUGINS)
    assert {"generate", "condition", "post_process", "text_to_image", "reply", "set"} <= set(
        plugin_host.step_kinds
    )
    assert {"strip", "first_paragraph", "extract_json"} <= set(plugin_host.postprocessors)
    assert plugin_host.failures == []


def test_the_built_in_commands_register_through_the_hook(plugin_host: PluginHost) -> None:
    import argparse

    impls = plugin_host.pm.hook.register_commands.get_hookimpls()
    assert sorted(impl.plugin_name for impl in impls) == [
        "lollms_runtime.default_plugins.commands",
        "lollms_runtime.default_plugins.knowledge",
    ]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model")
    plugin_host.pm.hook.register_commands(subparsers=sub, common=common)
    assert {"list", "show", "validate", "new", "plugins", "schema", "run", "serve"} <= set(
        sub.choices
    )
    assert parser.parse_args(["validate", "x", "--model", "m"]).model == "m"  # the shared options


def test_a_plugin_step_kind_is_validated_like_a_builtin(
    test_plugin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = host_with(test_plugin)
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(SHOUTER, encoding="utf-8")
    with pytest.raises(PersonalityError) as caught:
        load_personality("p.yaml", host)
    assert str(caught.value) == SHOUT_TOO_MANY

    Path("p.yaml").write_text(SHOUTER.replace("times: 9", "volume: 9"), encoding="utf-8")
    with pytest.raises(PersonalityError) as caught:
        load_personality("p.yaml", host)
    assert str(caught.value) == (
        "p.yaml:5:23: pipeline[0].shout.volume: unknown key 'volume'\n"
        "    hint: allowed keys here: fallback, id, on_error, retries, text, timeout, times, "
        "title, when"
    )
    Path("p.yaml").write_text(SHOUTER.replace("times: 9", "times: 2"), encoding="utf-8")
    assert load_personality("p.yaml", host).pipeline == ({"shout": {"text": "hi", "times": 2}},)


def test_plugin_step_kind_and_operation_run_in_the_engine_and_lifecycle_hooks_fire(
    test_plugin: ModuleType,
) -> None:
    host = host_with(test_plugin)
    folder = TEST_PLUGINS / "lollms-test-plugin" / "lollms_test_plugin" / "shouter"
    personality = load_personality(folder, host)
    engine = Engine(host, ScriptedTextBackend())
    events = list(engine.run_turn(Turn(personality, "hey")))
    reply = next(e for e in events if isinstance(e, Reply))
    assert reply.text == "HEY HEY / YEH YEH"
    assert isinstance(events[-1], Done) and events[-1].status == "ok"
    assert test_plugin.EVENTS == [
        ("lollms_turn_started", "hey"),
        ("lollms_step_finished", "loud"),
        ("lollms_step_finished", "backwards"),
        ("lollms_step_finished", "reply_3"),  # the engine names steps without an id
        ("lollms_turn_finished", "ok"),
    ]


def test_lollms_startup_reaches_plugins(test_plugin: ModuleType) -> None:
    # No runtime object exists yet in this checkout; the hook's contract is that plugins get it.
    host = host_with(test_plugin)
    runtime = object()
    host.pm.hook.lollms_startup(runtime=runtime)
    assert [("lollms_startup", runtime)] == test_plugin.EVENTS


def test_backends_and_personalities_are_collected(test_plugin: ModuleType) -> None:
    host = host_with(test_plugin)
    assert host.text_backends["echo"].create("some-model").model_id == "some-model"
    assert "blank" in host.image_backends
    assert host.personality_sources == [
        (Path(test_plugin.__file__).parent / "shouter", "lollms_test_plugin")
    ]


class Overrider:
    """Replaces the built-in reply kind: a plugin's registration wins over a built-in."""

    @hookimpl
    def register_step_kinds(self, register: Any) -> None:
        register(StepKind("reply", {"type": "object"}, summary="replaced"))


def test_a_plugin_may_override_a_builtin() -> None:
    host = host_with(Overrider())
    assert host.step_kinds["reply"].summary == "replaced"


class Checking:
    """A kind whose own load-time check knows what its schema cannot: which rooms exist."""

    rooms: ClassVar[list[str]] = []

    @staticmethod
    def check(body: Any) -> list[StepProblem]:
        if body["room"] == "boom":
            raise RuntimeError("the plugin has a bug")
        if body["room"] in Checking.rooms:
            return []
        return [StepProblem(f"no room '{body['room']}'", "rooms: hall, kitchen", ("room",))]

    @hookimpl
    def register_step_kinds(self, register: Any) -> None:
        schema = {"type": "object", "properties": {"room": {"type": "string"}}}
        register(StepKind("visit", schema, check=Checking.check))


def test_a_kinds_load_time_check_reports_located_problems(tmp_path: Path) -> None:
    Checking.rooms[:] = ["hall", "kitchen"]
    host = host_with(Checking())
    file = tmp_path / "p.yaml"

    def load(room: str) -> Any:
        steps = f"  - reply: {{text: hi}}\n  - condition:\n      if: message\n      then:\n        - visit: {{room: {room}}}\n"
        file.write_text(f"schema: 1\nid: v\nname: V\npipeline:\n{steps}", encoding="utf-8")
        return load_personality(file, host)

    assert load("hall").pipeline
    with pytest.raises(PersonalityError) as caught:
        load("attic")  # nested steps are checked too
    assert str(caught.value) == (
        f"{file}:9:25: pipeline[1].condition.then[0].visit.room: no room 'attic'\n"
        "    hint: rooms: hall, kitchen"
    )
    Checking.rooms.append("attic")  # read at each load: no new host needed
    assert load("attic").pipeline
    with pytest.raises(PersonalityError) as caught:
        load("boom")
    assert str(caught.value).startswith(
        f"{file}:9:18: pipeline[1].condition.then[0].visit: the check of step kind 'visit' "
        "failed: RuntimeError: the plugin has a bug"
    )


class DescribingBadly:
    @hookimpl
    def describe_plugin(self, report: Any) -> None:
        raise OSError("cannot read rooms.json")


def test_lollms_plugins_shows_what_plugins_describe(
    test_plugin: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lollms_runtime import cli, loader

    pm = get_plugin_manager(load_entry_points=False)
    pm.register(test_plugin, name="rooms")
    pm.register(DescribingBadly(), name="broken_rooms")
    monkeypatch.setattr(loader, "_default_host", PluginHost(pm))
    assert cli.main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    lines = ["shout: up to 3 times", "chorus: verses sung together"]
    assert data["sections"] == [{"plugin": "rooms", "title": "Shouting", "lines": lines}]
    assert data["failures"] == [
        {
            "name": "broken_rooms",
            "stage": "describe_plugin",
            "error": "OSError('cannot read rooms.json')",
        }
    ]
    assert cli.main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith(
        "\nShouting (rooms):\n  shout: up to 3 times\n  chorus: verses sung together\n"
    )
    assert err == "FAILED broken_rooms (describe_plugin): OSError('cannot read rooms.json')\n"


class HalfRegistering:
    @hookimpl
    def register_step_kinds(self, register: Any) -> None:
        register(StepKind("half", {"type": "object"}))
        raise ValueError("cannot finish")

    @hookimpl
    def register_postprocessors(self, register: Any) -> None:
        register(PostProcessor("shouty", lambda value, args, ctx: str(value).upper()))


def test_a_raising_hook_is_reported_and_its_half_registration_dropped() -> None:
    host = host_with(HalfRegistering())
    assert "half" not in host.step_kinds
    assert "generate" in host.step_kinds
    assert "shouty" in host.postprocessors  # its other hooks still count
    assert [str(f) for f in host.failures] == [
        "plugin 'HalfRegistering' failed (register_step_kinds): ValueError: cannot finish"
    ]
    assert "raise ValueError" in host.failures[0].detail  # the traceback is kept for the log


class WrongThing:
    @hookimpl
    def register_step_kinds(self, register: Any) -> None:
        register({"name": "dict_kind"})


def test_registering_the_wrong_type_names_what_was_expected() -> None:
    host = host_with(WrongThing())
    assert "dict_kind" not in host.step_kinds
    assert host.failures[0].error == "TypeError: expected a StepKind, got dict"


class UnknownHook:
    @hookimpl
    def register_stepkinds(self, register: Any) -> None:
        raise AssertionError("never called")


class BadSignature:
    @hookimpl
    def register_postprocessors(self, registrar: Any) -> None:
        raise AssertionError("never called")


def test_unknown_hooks_and_bad_signatures_are_refused_by_name() -> None:
    host = host_with(UnknownHook(), BadSignature())
    assert [str(f) for f in host.failures] == [
        "plugin 'UnknownHook' failed (register): implements unknown hook 'register_stepkinds' "
        "(did you mean 'register_step_kinds'?)",
        "plugin 'BadSignature' failed (register): hook 'register_postprocessors' takes (register) "
        "but the plugin's implementation takes (registrar)",
    ]
    # neither is left registered, and the built-ins are all there
    assert host.plugin_names() == list(DEFAULT_PLUGINS)


# -- installed for real, in a subprocess ---------------------------------------------------

# Only the test plugins load, whatever else is installed in the environment running the tests.
ONLY_TEST_PLUGINS = {
    "LOLLMS_LOAD_PLUGINS": "test_plugin,broken_plugin,raising_hook,unknown_hook,bad_signature"
}
BROKEN = "warning: plugin 'broken_plugin' failed (import): RuntimeError: this plugin is broken on purpose"


def test_installed_plugins_load_and_broken_ones_are_reported(test_plugins_site: Path) -> None:
    done = run_lollms("plugins", "--json", pythonpath=[test_plugins_site], env=ONLY_TEST_PLUGINS)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert "shout" in data["step_kinds"] and "reverse" in data["postprocessors"]
    assert data["text_backends"] == [
        "echo",
        "mlx",
        "openai",
    ]  # the plugin's, next to the built-in ones
    assert data["image_backends"] == ["a1111", "blank", "mlx-diffusion", "openai-images"]
    assert "half_registered" not in data["step_kinds"]
    assert "never_registered" not in data["postprocessors"]
    names = [p["name"] for p in data["plugins"]]
    builtins = len(DEFAULT_PLUGINS)
    assert sorted(names[:-builtins]) == ["raising_hook", "test_plugin"]  # the others were refused
    assert names[-builtins:] == list(DEFAULT_PLUGINS)
    hooks = next(p["hooks"] for p in data["plugins"] if p["name"] == "test_plugin")
    assert "register_step_kinds" in hooks and "lollms_turn_finished" in hooks
    failures = {f["name"]: (f["stage"], f["error"]) for f in data["failures"]}
    assert failures == {
        "broken_plugin": ("import", "RuntimeError: this plugin is broken on purpose"),
        "raising_hook": ("register_step_kinds", "ValueError: cannot register my step kinds"),
        "unknown_hook": (
            "register",
            "implements unknown hook 'register_stepkinds' (did you mean 'register_step_kinds'?)",
        ),
        "bad_signature": (
            "register",
            "hook 'register_step_kinds' takes (register) but the plugin's implementation "
            "takes (registrar)",
        ),
    }


def test_installed_plugin_step_kind_is_enforced(test_plugins_site: Path, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(SHOUTER, encoding="utf-8")
    done = run_lollms(
        "validate", "p.yaml", pythonpath=[test_plugins_site], env=ONLY_TEST_PLUGINS, cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.startswith(SHOUT_TOO_MANY + "\n")
    assert BROKEN in done.stderr.splitlines()  # reported, and validation still ran


def test_installed_plugin_personality_and_command(test_plugins_site: Path) -> None:
    done = run_lollms("list", "--json", pythonpath=[test_plugins_site], env=ONLY_TEST_PLUGINS)
    assert done.returncode == 0
    assert [(e["id"], e["origin"]) for e in json.loads(done.stdout)] == [
        ("test_shouter", "plugin test_plugin")
    ]
    assert BROKEN in done.stderr.splitlines()
    assert (
        "warning: plugin 'raising_hook' failed (register_personalities): "
        "OSError: my personality folder is gone"
    ) in done.stderr.splitlines()

    hello = run_lollms(
        "test-hello", "plugins", pythonpath=[test_plugins_site], env=ONLY_TEST_PLUGINS
    )
    assert (hello.returncode, hello.stdout) == (0, "hello, plugins\n")


def test_load_plugins_env_restricts_what_loads(test_plugins_site: Path, tmp_path: Path) -> None:
    env = {"LOLLMS_LOAD_PLUGINS": "test_plugin"}
    done = run_lollms("plugins", "--json", pythonpath=[test_plugins_site], env=env)
    data = json.loads(done.stdout)
    assert [p["name"] for p in data["plugins"]] == ["test_plugin", *DEFAULT_PLUGINS]
    assert data["failures"] == [] and "shout" in data["step_kinds"]
    assert done.stderr == ""

    (tmp_path / "p.yaml").write_text(SHOUTER, encoding="utf-8")
    done = run_lollms(
        "validate",
        "p.yaml",
        pythonpath=[test_plugins_site],
        env={"LOLLMS_LOAD_PLUGINS": ""},
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "p.yaml:5:5: pipeline[0].shout: unknown step kind 'shout'"
    assert "(a plugin may provide it: see `lollms plugins`)" in done.stderr


# -- parity: a plugin kind does what the built-ins do, through the same declarations ----------

CHORUS = """schema: 1
id: choir
name: Choir
pipeline:
  - chorus:
      id: sung
      name: song
      lead: "{{ message }}"
      verses:
        - generate: {id: verse}
  - reply: {text: "{{ song }}"}
"""


def test_a_plugin_kind_defines_a_name_streams_into_the_reply_and_holds_nested_steps(
    test_plugin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = host_with(test_plugin)
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(CHORUS, encoding="utf-8")
    personality = load_personality("p.yaml", host)
    backend = ScriptedTextBackend("la la")
    events = list(Engine(host, backend).run_turn(Turn(personality, "sing")))
    tokens = [(e.step_id, e.text, e.visible) for e in events if isinstance(e, Token)]
    # The nested generate is not what the reply shows: its tokens are hidden; the chorus's are
    # the visible draft, like a generate whose id the reply shows.
    assert tokens == [
        ("verse", "la", False),
        ("verse", " la", False),
        ("sung", "sing", True),
        ("sung", " la", True),
        ("sung", " la", True),
    ]
    finished = [(e.step_id, e.path) for e in events if isinstance(e, StepFinished)]
    assert finished == [
        ("verse", "pipeline[0].chorus.verses[0]"),
        ("sung", "pipeline[0]"),
        ("reply_3", "pipeline[1]"),
    ]
    assert next(e for e in events if isinstance(e, Reply)).text == "sing la la"


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        (  # the name a plugin kind defines, read before the step that sets it
            '  - reply: {text: "{{ song }}"}\n  - chorus: {name: song, lead: "{{ message }}"}\n',
            "p.yaml:5:19: pipeline[0].reply.text: 'song' is used before the step that sets it\n"
            "    hint: move this after the step with id 'song', or set it earlier",
        ),
        (  # inside its nested steps, like the steps of a built-in loop
            "  - chorus:\n"
            "      name: song\n"
            '      lead: "hi"\n'
            "      verses:\n"
            '        - generate: {prompt: "{{ later }}"}\n'
            '        - set: {later: "x"}\n',
            "p.yaml:9:30: pipeline[0].chorus.verses[0].generate.prompt: 'later' is used before "
            "the step that sets it\n"
            "    hint: move this after the step with id 'later', or set it earlier",
        ),
        (  # its template options are checked like a built-in's
            '  - chorus: {name: song, lead: "{{ mesage }}"}\n',
            "p.yaml:5:32: pipeline[0].chorus.lead: unknown name 'mesage'\n"
            "    hint: did you mean 'message'? names available here: history, lore, message, model, "
            "now, personality, settings",
        ),
    ],
    ids=["used before set", "nested", "typo"],
)
def test_a_plugin_kind_is_checked_like_a_builtin(
    test_plugin: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pipeline: str,
    expected: str,
) -> None:
    host = host_with(test_plugin)
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(
        f"schema: 1\nid: choir\nname: Choir\npipeline:\n{pipeline}", encoding="utf-8"
    )
    with pytest.raises(PersonalityError) as caught:
        load_personality("p.yaml", host)
    assert str(caught.value) == expected


def test_names_set_inside_a_plugin_kind_are_known_after_it(
    test_plugin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = host_with(test_plugin)
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(
        CHORUS.replace('{text: "{{ song }}"}', '{text: "{{ song }} / {{ verse }} / {{ sung }}"}'),
        encoding="utf-8",
    )
    personality = load_personality("p.yaml", host)
    events = list(Engine(host, ScriptedTextBackend("la")).run_turn(Turn(personality, "sing")))
    assert next(e for e in events if isinstance(e, Reply)).text == "sing la / la / sing la"


def test_lollms_step_finished_receives_the_real_step_finished(
    test_plugin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = host_with(test_plugin)
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(
        "schema: 1\nid: obs\nname: Obs\npipeline:\n"
        "  - generate: {id: answer, max_tokens: 5}\n"
        '  - generate: {id: skipped, when: "false"}\n'
        '  - post_process: {id: broken, input: "x", ops: [extract_json], on_error: continue}\n'
        "  - post_process:\n"
        '      {id: saved, input: "x", ops: [extract_json], on_error: fallback, fallback: "{}"}\n'
        '  - reply: {text: "{{ answer }}"}\n',
        encoding="utf-8",
    )
    personality = load_personality("p.yaml", host)
    events = list(Engine(host, ScriptedTextBackend("one two")).run_turn(Turn(personality, "hi")))
    emitted = [e for e in events if isinstance(e, StepFinished)]
    received = [result for _step, result in test_plugin.FINISHED]
    # The very events of the turn, for every status, with their duration, tokens and detail.
    assert received == emitted
    assert [(r.step_id, r.status) for r in received] == [
        ("answer", "ok"),
        ("skipped", "skipped"),
        ("broken", "failed"),
        ("saved", "fallback"),
        ("reply_5", "ok"),
    ]
    answer = received[0]
    assert (answer.generation_tokens, answer.output) == (2, "one two")
    assert answer.prompt_tokens > 0 and answer.duration > 0
    assert received[1].detail == "when: false was false"
    assert received[2].error and received[3].output == "{}"
    steps = [step for step, _result in test_plugin.FINISHED]
    assert steps[0] == {"generate": {"id": "answer", "max_tokens": 5}}
