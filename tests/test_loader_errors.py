"""The loader's messages for the most common mistakes, asserted word for word."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lollms_runtime import loader
from lollms_runtime.errors import PersonalityError
from lollms_runtime.loader import load_personality
from lollms_runtime.plugins import PluginHost

HEAD = "schema: 1\nid: bot\nname: Bot\n"

STEP_KINDS = (
    "call, condition, for_each, generate, loop, post_process, reply, retrieve, set, text_to_image"
)

# (what went wrong, file content, the exact message). The file is always called p.yaml.
MISTAKES = [
    (
        "typo in a key",
        HEAD + "descripton: Paints.\n",
        "p.yaml:4:1: descripton: unknown key 'descripton'\n    hint: did you mean 'description'?",
    ),
    (
        "typo in a nested key",
        HEAD + "sampling:\n  temprature: 0.5\n",
        "p.yaml:5:3: sampling.temprature: unknown key 'temprature'\n"
        "    hint: did you mean 'temperature'?",
    ),
    (
        "a LoLLMs key name",
        HEAD + "welcome_message: Hi!\n",
        "p.yaml:4:1: welcome_message: unknown key 'welcome_message'\n"
        "    hint: in lollms-runtime this is 'welcome'",
    ),
    (
        "wrong type",
        HEAD + "examples: Draw a cat.\n",
        "p.yaml:4:11: examples: expected a list, got a string ('Draw a cat.')\n"
        "    hint: Example prompts shown as clickable suggestions.",
    ),
    (
        "unknown step kind close to a real one",
        HEAD + "pipeline:\n  - generat: {id: answer}\n",
        "p.yaml:5:5: pipeline[0].generat: unknown step kind 'generat'\n"
        f"    hint: did you mean 'generate'? Known step kinds: {STEP_KINDS}",
    ),
    (
        "unknown step kind",
        HEAD + "pipeline:\n  - paint: {}\n",
        "p.yaml:5:5: pipeline[0].paint: unknown step kind 'paint'\n"
        f"    hint: Known step kinds: {STEP_KINDS} (a plugin may provide it: see `lollms plugins`)",
    ),
    (
        "temperature out of range",
        HEAD + "sampling:\n  temperature: 3.5\n",
        "p.yaml:5:16: sampling.temperature: 3.5 is above the maximum of 2\n"
        "    hint: Randomness between 0 (always the most likely token) and 2.",
    ),
    (
        "step temperature out of range",
        HEAD + "pipeline:\n  - generate:\n      temperature: -1\n",
        "p.yaml:6:20: pipeline[0].generate.temperature: -1 is below the minimum of 0\n"
        "    hint: Randomness for this step (0 = greedy).",
    ),
    (
        "duplicate key",
        HEAD + "description: one\ndescription: two\n",
        "p.yaml:5:1: description: duplicate key 'description' (first defined at line 4)\n"
        "    hint: YAML keeps only the last value: remove or rename one of them",
    ),
    (
        "YAML syntax error",
        HEAD + "description: Paints: anything\n",
        "p.yaml:4:20: YAML syntax error: mapping values are not allowed in this context\n"
        "    hint: check the indentation here, or quote a value that contains ': '",
    ),
    (
        "unclosed quote",
        'schema: 1\nid: bot\nname: "Bot\n',
        "p.yaml:4:1: YAML syntax error: while scanning a quoted scalar "
        "found unexpected end of stream\n"
        "    hint: check the indentation and quoting around this place",
    ),
    (
        "tab indentation",
        HEAD + "sampling:\n\ttemperature: 0.5\n",
        "p.yaml:5:1: YAML syntax error: while scanning for the next token "
        "found character that cannot start any token\n"
        "    hint: indent with spaces, not tabs",
    ),
    (
        "missing required field",
        "schema: 1\nid: bot\n",
        "p.yaml:1:1: missing required key 'name'\n    hint: Display name.",
    ),
    (
        "step with two keys",
        HEAD + "pipeline:\n  - generate: {id: answer}\n    reply: {}\n",
        "p.yaml:5:5: pipeline[0]: a step must have exactly one key, its kind "
        "(found: generate, reply)\n"
        '    hint: put the options under the kind, e.g. "- generate: {id: answer}"',
    ),
    (
        "bad on_error",
        HEAD + "pipeline:\n  - generate: {id: answer, on_error: ignore}\n",
        "p.yaml:5:38: pipeline[0].generate.on_error: 'ignore' is not one of: "
        "fail, continue, fallback\n"
        "    hint: fail ends the turn, continue skips the step, fallback uses the fallback value.",
    ),
    (
        "bad enum close to a value",
        HEAD + "pipeline:\n  - generate: {id: answer, on_error: continu}\n",
        "p.yaml:5:38: pipeline[0].generate.on_error: 'continu' is not one of: "
        "fail, continue, fallback\n"
        "    hint: did you mean 'continue'?",
    ),
    (
        "invalid id",
        "schema: 1\nid: My Bot\nname: Bot\n",
        "p.yaml:2:5: id: 'My Bot' is not a valid id\n"
        "    hint: Unique identifier: lowercase letters, digits, '_' and '-', "
        "at most 64 characters (e.g. gpt_for_art).",
    ),
    (
        "version written as a number",
        HEAD + "version: 1.0\n",
        'p.yaml:4:10: version: expected a string, got a number (1.0)\n    hint: quote it: "1.0" '
        '(Version of the personality, written as a quoted string such as "1.0.0".)',
    ),
    (
        "empty file",
        "",
        "p.yaml:1:1: the file is empty\n    hint: start from `lollms new NAME`",
    ),
    (
        "a list instead of a mapping",
        "- schema: 1\n",
        "p.yaml:1:1: expected a mapping of keys, got a list\n"
        "    hint: a personality file starts with keys like `schema: 1` and `id: my_bot`",
    ),
    (
        "a LoLLMs config.yaml",
        "ai_message_prefix: '### Assistant'\nname: Old\npersonality_conditioning: hi\n",
        "p.yaml:1:1: ai_message_prefix: this is a LoLLMs personality config, "
        "not a lollms-runtime personality\n"
        "    hint: convert it: lollms import '.'",
    ),
    (
        "a newer format version",
        "schema: 9\nid: bot\nname: Bot\n",
        "p.yaml:1:9: schema: written for format version 9; "
        "this lollms-runtime reads versions up to 1\n"
        "    hint: upgrade lollms-runtime: pip install -U lollms-runtime",
    ),
    (
        "unknown post_process operation",
        HEAD + "pipeline:\n  - post_process: {ops: [strip, frist_paragraph]}\n",
        "p.yaml:5:33: pipeline[0].post_process.ops[1].frist_paragraph: "
        "unknown operation 'frist_paragraph'\n"
        "    hint: did you mean 'first_paragraph'? Known operations: extract_code, "
        "extract_json, first_paragraph, regex_extract, regex_replace, remove_prefix, "
        "remove_suffix, strip, template, truncate, truncate_sentence",
    ),
    (
        "condition without its branch",
        HEAD + "pipeline:\n  - condition: {then: [reply]}\n",
        "p.yaml:5:5: pipeline[0].condition: needs one of: 'if' with 'then', "
        "'ask' with 'then', 'switch' with 'cases', 'choose'\n"
        "    hint: Branching: if/elif/else on an expression or a yes/no question the model "
        "answers; switch on a value; choose among options by the model.",
    ),
    (
        "call with two targets",
        HEAD + "pipeline:\n  - call: {pipeline: a, personality: b}\n",
        "p.yaml:5:5: pipeline[0].call: use only one of: personality, pipeline\n"
        "    hint: Run a named sub-pipeline of this file, or another personality, "
        "and use its reply.",
    ),
    (
        "setting default of the wrong type",
        HEAD + "settings:\n  paint: {type: boolean, default: 'yes'}\n",
        "p.yaml:5:35: settings.paint.default: expected a boolean, got a string ('yes')\n"
        "    hint: The default must be a value of the setting's type (boolean).",
    ),
    (
        "setting default outside its range",
        HEAD + "settings:\n  steps: {type: integer, minimum: 1, maximum: 50, default: 80}\n",
        "p.yaml:5:60: settings.steps.default: 80 is above the maximum of 50\n"
        "    hint: the default must be a value the setting allows",
    ),
    (
        "setting default not among its choices",
        HEAD + "settings:\n  width: {type: integer, enum: [256, 512], default: 300}\n",
        "p.yaml:5:53: settings.width.default: 300 is not one of: 256, 512\n"
        "    hint: the default must be a value the setting allows",
    ),
    (
        "template syntax error",
        HEAD + 'pipeline:\n  - generate: {prompt: "Describe {{ message }"}\n',
        "p.yaml:5:24: pipeline[0].generate.prompt: template syntax error: unexpected '}'\n"
        "    hint: check that every {{ has its }} and every {% if %} its {% endif %}",
    ),
    (
        "expression written as a template",
        HEAD + 'pipeline:\n  - reply: {when: "{{ settings.paint }}"}\n',
        "p.yaml:5:19: pipeline[0].reply.when: expression syntax error: "
        "expected token ':', got '}'\n"
        "    hint: write a Jinja expression, without {{ }}: e.g. settings.paint and message",
    ),
    (
        "unfinished condition in a nested branch",
        HEAD + "pipeline:\n  - condition:\n      if: 'true'\n      then:\n"
        "        - loop: {while: 'n <', steps: [reply]}\n",
        "p.yaml:8:25: pipeline[0].condition.then[0].loop.while: expression syntax error: "
        "unexpected 'end of template'\n"
        "    hint: write a Jinja expression, without {{ }}: e.g. settings.paint and message",
    ),
    (
        "setting without a default",
        HEAD + "settings:\n  width: {type: integer}\n",
        "p.yaml:5:3: settings.width: missing required key 'default'\n"
        "    hint: Value used until the user changes it.",
    ),
]


@pytest.fixture(scope="module")
def host() -> PluginHost:
    """Built-ins only; shared by the module since these tests never change it."""
    from lollms_runtime.plugins import get_plugin_manager

    return PluginHost(get_plugin_manager(load_entry_points=False))


def error_text(text: str, host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PersonalityError) as caught:
        load_personality("p.yaml", host)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_common_mistake_message(
    text: str,
    expected: str,
    host: PluginHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert error_text(text, host, tmp_path, monkeypatch) == expected


def test_several_errors_are_reported_at_once_most_relevant_first(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = textwrap.dedent(
        """\
        schema: 1
        id: Bot
        name: Bot
        sampling:
          temperature: 5
          top_k: many
        pipeline:
          - generate: {id: a, tempreature: 0.5}
          - reply: {text: 3}
        """
    )
    lines = error_text(text, host, tmp_path, monkeypatch).splitlines()
    located = [line for line in lines if not line.startswith("    hint:")]
    assert located == [
        # the shallowest error first (jsonschema's best_match), then in the order of the file
        "p.yaml:2:5: id: 'Bot' is not a valid id",
        "p.yaml:5:16: sampling.temperature: 5 is above the maximum of 2",
        "p.yaml:6:10: sampling.top_k: expected an integer, got a string ('many')",
        "p.yaml:8:23: pipeline[0].generate.tempreature: unknown key 'tempreature'",
        "p.yaml:9:19: pipeline[1].reply.text: expected a string, got an integer (3)",
    ]
    assert lines.count("    hint: did you mean 'temperature'?") == 1


def test_equally_relevant_errors_start_with_the_first_in_the_file(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = HEAD + "pipeline:\n  - condition: {then: [reply]}\n  - call: {}\n"
    located = [
        line
        for line in error_text(text, host, tmp_path, monkeypatch).splitlines()
        if not line.startswith(" ")
    ]
    assert [line.split(": ")[0] for line in located] == ["p.yaml:5:5", "p.yaml:6:5"]


def test_duplicate_keys_are_all_reported(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = HEAD + "sampling:\n  top_k: 1\n  top_k: 2\nname: Again\n"
    lines = error_text(text, host, tmp_path, monkeypatch).splitlines()
    assert lines[0] == "p.yaml:6:3: sampling.top_k: duplicate key 'top_k' (first defined at line 5)"
    assert lines[2] == "p.yaml:7:1: name: duplicate key 'name' (first defined at line 3)"


def test_errors_inside_a_misshapen_step_are_not_repeated(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = HEAD + "pipeline:\n  - generate: {temperature: 9}\n    reply: {text: 1}\n"
    message = error_text(text, host, tmp_path, monkeypatch)
    assert message.count("p.yaml:") == 1
    assert "exactly one key" in message


def test_missing_file_and_folder(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(PersonalityError) as caught:
        load_personality(tmp_path, host)
    assert str(caught.value) == (
        f"{tmp_path / 'personality.yaml'}:1:1: file not found\n"
        "    hint: give a personality.yaml or its folder"
    )


def test_not_utf8(host: PluginHost, tmp_path: Path) -> None:
    file = tmp_path / "personality.yaml"
    file.write_bytes(HEAD.encode() + b"description: caf\xe9\n")
    with pytest.raises(PersonalityError) as caught:
        load_personality(file, host)
    assert str(caught.value) == (
        f"{file}:1:1: not UTF-8 text (invalid continuation byte)\n    hint: save it as UTF-8"
    )


def test_a_valid_file_becomes_a_typed_personality(host: PluginHost, tmp_path: Path) -> None:
    file = tmp_path / "personality.yaml"
    file.write_text(
        textwrap.dedent(
            """\
            schema: 1
            id: artbot
            name: Art Bot
            version: "2.0.0"
            welcome: Tell me what to imagine.
            user_prefix: "### User:"
            ai_prefix: "### Artbot:"
            avatar: assets/logo.png
            sampling: {temperature: 0.8, n_predict: 64, stop: ["### User"], logit_bias: {"42": -5}}
            settings:
              width: {type: integer, enum: [256, 512], default: 512}
            pipeline:
              - generate
              - reply:
            """
        ),
        encoding="utf-8",
    )
    p = load_personality(file, host, origin="test")
    assert (p.id, p.name, p.version, p.origin) == ("artbot", "Art Bot", "2.0.0", "test")
    assert p.welcome == ("Tell me what to imagine.",)
    assert p.prefixes is not None and p.prefixes.ai_prefix == "### Artbot:"
    assert p.avatar == tmp_path / "assets" / "logo.png"
    assert (p.sampling.temperature, p.sampling.max_tokens) == (0.8, 64)
    assert p.sampling.stop == ("### User",) and p.sampling.logit_bias == {42: -5.0}
    assert p.settings["width"].enum == (256, 512)
    assert p.resolve_settings({"width": "256"}) == {"width": 256}
    # the short forms `- generate` and `- reply:` are normalized to mappings
    assert p.pipeline == ({"generate": {}}, {"reply": {}})


def test_schema_versions_migrate_to_the_current_one(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration lifts an older file to the current version before it is validated."""

    def v1_to_v2(data: dict[str, object]) -> dict[str, object]:
        data["conditioning"] = data.pop("system_prompt")
        return data

    monkeypatch.setattr(loader, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(loader, "MIGRATIONS", {1: v1_to_v2})
    file = tmp_path / "personality.yaml"
    file.write_text(HEAD + "system_prompt: Be brief.\n", encoding="utf-8")
    p = load_personality(file, host)
    assert p.conditioning == "Be brief."
    assert p.raw["schema"] == 2


def test_short_forms_are_normalized_only_where_steps_go(host: PluginHost, tmp_path: Path) -> None:
    file = tmp_path / "personality.yaml"
    file.write_text(
        HEAD
        + textwrap.dedent(
            """\
            pipeline:
              - generate: {stop: ["###"]}
              - condition:
                  choose: [a, b]
                  cases: {a: [reply]}
                  default: [{set: {x: 1}}, reply]
              - condition:
                  if: "true"
                  then: [generate]
                  elif: [{if: "false", then: [reply]}]
              - post_process: {ops: [strip, {truncate: 5}]}
              - reply: {images: ["{{ x }}"]}
            pipelines:
              sub: [reply]
            """
        ),
        encoding="utf-8",
    )
    p = load_personality(file, host)
    assert p.pipeline == (
        {"generate": {"stop": ["###"]}},
        {
            "condition": {
                "choose": ["a", "b"],
                "cases": {"a": [{"reply": {}}]},
                "default": [{"set": {"x": 1}}, {"reply": {}}],
            }
        },
        {
            "condition": {
                "if": "true",
                "then": [{"generate": {}}],
                "elif": [{"if": "false", "then": [{"reply": {}}]}],
            }
        },
        {"post_process": {"ops": [{"strip": None}, {"truncate": 5}]}},
        {"reply": {"images": ["{{ x }}"]}},
    )
    assert p.pipelines == {"sub": ({"reply": {}},)}
