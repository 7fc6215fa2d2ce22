"""`lollms list/show/validate/new/plugins/schema`: output, exit codes, where personalities come from."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from conftest import pip_install_target, run_lollms

from lollms_runtime import cli, loader
from lollms_runtime.catalog import Catalog
from lollms_runtime.errors import LollmsError
from lollms_runtime.plugins import PluginHost

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def lollms(
    plugin_host: PluginHost, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """``lollms ARGS`` in process, on a fresh built-ins-only host: (exit code, stdout, stderr)."""
    monkeypatch.setattr(loader, "_default_host", plugin_host)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write(folder: Path, pid: str, name: str, category: str = "art", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "personality.yaml"
    file.write_text(
        f'schema: 1\nid: {pid}\nname: {name}\nversion: "1.0"\ncategory: {category}\n{extra}',
        encoding="utf-8",
    )
    return file


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """Two personalities in category folders, like a real collection."""
    root = tmp_path / "collection"
    write(root / "art" / "painter", "painter", "Painter")
    write(root / "coding" / "coder", "coder", "Code Helper", "coding")
    return root


def test_list_table(lollms: Run, collection: Path) -> None:
    code, out, err = lollms("list", "--personalities", str(collection))
    origin = f"--personalities {collection}"
    assert code == 0 and err == ""
    assert out.splitlines() == [
        "ID       NAME         VERSION  CATEGORY  FROM",
        f"painter  Painter      1.0      art       {origin}",
        f"coder    Code Helper  1.0      coding    {origin}",
    ]


def test_list_json_and_the_path_variable(
    lollms: Run, collection: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOLLMS_PERSONALITIES_PATH", str(collection))
    code, out, _ = lollms("list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "id": "painter",
            "name": "Painter",
            "version": "1.0",
            "category": "art",
            "origin": "LOLLMS_PERSONALITIES_PATH",
            "path": str(collection / "art" / "painter" / "personality.yaml"),
        },
        {
            "id": "coder",
            "name": "Code Helper",
            "version": "1.0",
            "category": "coding",
            "origin": "LOLLMS_PERSONALITIES_PATH",
            "path": str(collection / "coding" / "coder" / "personality.yaml"),
        },
    ]


def test_list_when_nothing_is_found(lollms: Run) -> None:
    code, out, _ = lollms("list")
    assert (code, out) == (
        0,
        "No personalities found. Install one (pip install ...) or pass --personalities DIR.\n",
    )


def test_same_id_twice_is_a_clear_conflict(lollms: Run, collection: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    copy = write(other / "painter2", "painter", "Another Painter")
    code, out, err = lollms(
        "list", "--personalities", str(collection), "--personalities", str(other)
    )
    assert code == 0
    assert "Another Painter" not in out
    first = collection / "art" / "painter" / "personality.yaml"
    assert err == (
        f"warning: personality id 'painter' is defined twice: {first} (--personalities "
        f"{collection}) and {copy} (--personalities {other}); the first is used — rename one "
        "id or remove one source\n"
    )


def test_unreadable_files_are_listed_as_warnings(lollms: Run, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "personality.yaml").write_text("id: [oops\n", encoding="utf-8")
    write(tmp_path / "noid", "x", "X").write_text("name: No id\n", encoding="utf-8")
    code, out, err = lollms("list", "--personalities", str(tmp_path))
    assert code == 0 and out.startswith("No personalities found.")
    assert err.splitlines() == [
        f"warning: {tmp_path / 'bad' / 'personality.yaml'}: unreadable: "
        "while parsing a flow sequence",
        f"warning: {tmp_path / 'noid' / 'personality.yaml'}: no 'id' key: "
        "run `lollms validate` on it",
    ]


def test_list_reads_identity_through_merge_keys_and_quotes(lollms: Run, tmp_path: Path) -> None:
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "personality.yaml").write_text(
        textwrap.dedent(
            """\
            base: &base {category: "art", version: "3.1"}
            <<: *base
            "id": merged
            name: 'Merged: one'
            pipeline: [{generate: {}}]
            """
        ),
        encoding="utf-8",
    )
    catalog = Catalog(loader.default_host(), [tmp_path])
    ((entry),) = catalog.entries
    assert (entry.id, entry.name, entry.version, entry.category) == (
        "merged",
        "Merged: one",
        "3.1",
        "art",
    )


def test_show(lollms: Run, collection: Path) -> None:
    write(
        collection / "art" / "painter",
        "painter",
        "Painter",
        extra="author: me\ndescription: Paints.\nsettings:\n  steps: {type: integer, default: 20}\n"
        "pipeline:\n  - generate: {id: d}\n  - reply: {text: '{{ d }}'}\n",
    )
    code, out, _ = lollms("show", "painter", "--personalities", str(collection))
    assert code == 0
    file = collection / "art" / "painter" / "personality.yaml"
    assert out.splitlines() == [
        "Painter (painter) 1.0 by me",
        "  category: art",
        f"  file: {file.resolve()}",
        f"  from: --personalities {collection}",
        "",
        "Paints.",
        "",
        "settings:",
        "  steps (integer, default 20)",
        "",
        "pipeline: generate -> reply",
    ]
    code, out, _ = lollms("show", str(file), "--json")
    assert code == 0
    assert json.loads(out)["settings"] == {"steps": {"type": "integer", "default": 20}}


def test_show_unknown_id_suggests(lollms: Run, collection: Path) -> None:
    code, out, err = lollms("show", "paintr", "--personalities", str(collection))
    assert (code, out) == (1, "")
    assert err == "error: no personality with id 'paintr'. Did you mean 'painter'?\n"


def test_show_of_an_invalid_personality_is_a_located_error(lollms: Run, tmp_path: Path) -> None:
    write(tmp_path / "p", "p", "P", extra="sampling: {top_p: 0}\n")
    code, _, err = lollms("show", "p", "--personalities", str(tmp_path))
    assert code == 1
    file = tmp_path / "p" / "personality.yaml"
    assert err.startswith(f"error: {file}:6:19: sampling.top_p: 0 is not above 0\n")


def test_validate_exit_codes_and_summary(lollms: Run, tmp_path: Path) -> None:
    good = write(tmp_path / "good", "good", "Good")
    bad = write(tmp_path / "bad", "bad", "Bad", extra="sampling: {temperature: 9}\n")
    assert lollms("validate", str(good)) == (0, f"{good}: ok (good)\n", "")
    assert lollms("validate", "-q", str(good.parent)) == (0, "", "")
    code, out, err = lollms("validate", str(good), str(bad))
    assert code == 1
    assert out == f"{good}: ok (good)\n"
    assert err == (
        f"{bad}:6:25: sampling.temperature: 9 is above the maximum of 2\n"
        "    hint: Randomness between 0 (always the most likely token) and 2.\n"
        "1 valid, 1 invalid\n"
    )


def test_validate_json(lollms: Run, tmp_path: Path) -> None:
    good = write(tmp_path / "good", "good", "Good")
    code, out, _ = lollms("validate", "--json", str(good), str(tmp_path / "missing"))
    assert code == 1
    assert json.loads(out) == [
        {"path": str(good), "valid": True, "id": "good"},
        {
            "path": str(tmp_path / "missing"),
            "valid": False,
            "problems": [
                {
                    "file": str(tmp_path / "missing"),
                    "line": 1,
                    "col": 1,
                    "path": "",
                    "message": "file not found",
                    "hint": "give a personality.yaml or its folder",
                }
            ],
        },
    ]


def test_validate_takes_the_package_folder_that_new_prints(lollms: Run, tmp_path: Path) -> None:
    code, out, _ = lollms("new", "Chef Bot", "--to", str(tmp_path))
    root = Path(out.splitlines()[0].removeprefix("Created "))
    assert code == 0 and root == tmp_path / "lollms-personality-chef-bot"
    folder = root / "lollms_personality_chef_bot"
    assert lollms("validate", str(root)) == (0, f"{folder}: ok (chef_bot)\n", "")


def test_validate_finds_the_personalities_of_a_collection(
    lollms: Run, collection: Path, tmp_path: Path
) -> None:
    write(collection / ".hidden" / "ghost", "ghost", "Ghost")  # hidden folders are not searched
    bad = write(collection / "deep" / "er" / "bad", "bad", "Bad", extra="sampling: {top_k: -1}\n")
    code, out, err = lollms("validate", str(collection))
    assert code == 1
    assert out == (
        f"{collection / 'art' / 'painter'}: ok (painter)\n"
        f"{collection / 'coding' / 'coder'}: ok (coder)\n"
    )
    assert err.startswith(f"{bad}:6:19: sampling.top_k: -1 is below the minimum of 0\n")
    assert err.endswith("2 valid, 1 invalid\n")


def test_validate_says_where_it_looked_when_it_finds_nothing(lollms: Run, tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, out, err = lollms("validate", str(tmp_path / "empty"))
    assert (code, out) == (1, "")
    assert err == (
        f"{tmp_path / 'empty'}:1:1: no personality.yaml found\n"
        f"    hint: looked in {tmp_path / 'empty'} and its sub-folders (2 folders, 8 levels deep "
        "at most); give a personality.yaml, its folder, a package folder or a folder of "
        "personalities\n"
    )


def test_new_scaffolds_a_valid_package(lollms: Run, tmp_path: Path) -> None:
    code, out, _ = lollms("new", "Chef Bot", "--to", str(tmp_path), "--author", "Ann")
    root = tmp_path / "lollms-personality-chef-bot"
    assert code == 0 and out.startswith(f"Created {root}\n")
    folder = root / "lollms_personality_chef_bot"
    assert sorted(p.name for p in folder.iterdir()) == ["__init__.py", "assets", "personality.yaml"]
    assert lollms("validate", str(folder)) == (0, f"{folder}: ok (chef_bot)\n", "")
    personality = loader.load_personality(folder, loader.default_host())
    assert (personality.name, personality.author) == ("Chef Bot", "Ann")
    # a second time refuses to overwrite it
    code, _, err = lollms("new", "Chef Bot", "--to", str(tmp_path))
    assert code == 1
    assert err == f"error: {root} already exists: remove it or choose another --to folder\n"


def test_new_refuses_a_name_without_letters(lollms: Run, tmp_path: Path) -> None:
    code, _, err = lollms("new", "!!!", "--to", str(tmp_path))
    assert (code, err) == (1, "error: cannot make an id from '!!!': use letters, digits and '_'\n")


def test_new_package_installs_and_is_listed(tmp_path: Path) -> None:
    assert run_lollms("new", "Tea Expert", "--to", str(tmp_path)).returncode == 0
    site = tmp_path / "site"
    pip_install_target([tmp_path / "lollms-personality-tea-expert"], site)
    done = run_lollms(
        "list", "--json", pythonpath=[site], env={"LOLLMS_LOAD_PLUGINS": "tea_expert"}
    )
    assert done.returncode == 0, done.stderr
    ((entry),) = json.loads(done.stdout)
    assert (entry["id"], entry["origin"]) == ("tea_expert", "plugin tea_expert")
    assert entry["path"] == str(site / "lollms_personality_tea_expert" / "personality.yaml")
    done = run_lollms(
        "validate", entry["path"], pythonpath=[site], env={"LOLLMS_LOAD_PLUGINS": "tea_expert"}
    )
    assert done.returncode == 0, done.stderr


def test_plugins_json(lollms: Run) -> None:
    code, out, _ = lollms("plugins", "--json")
    data = json.loads(out)
    assert code == 0 and data["failures"] == []
    steps = next(p for p in data["plugins"] if p["name"].endswith(".steps"))
    assert steps["hooks"] == ["register_step_kinds"]
    assert data["step_kinds"] == [
        "call",
        "condition",
        "for_each",
        "generate",
        "loop",
        "post_process",
        "reply",
        "retrieve",
        "set",
        "text_to_image",
    ]


def test_schema_is_valid_json_schema_with_the_step_kinds(lollms: Run) -> None:
    code, out, _ = lollms("schema")
    schema = json.loads(out)
    assert code == 0
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "generate" in schema["$defs"]["step"]["properties"]
    assert "strip" in schema["$defs"]["operation"]["properties"]


@pytest.mark.parametrize(
    "command", [[], ["list"], ["show"], ["validate"], ["new"], ["plugins"], ["schema"]]
)
def test_help_everywhere(lollms: Run, command: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0


def test_no_command_prints_help(lollms: Run) -> None:
    code, out, _ = lollms()
    assert code == 0 and out.startswith("usage: lollms")


def test_catalog_entry_error_is_actionable(plugin_host: PluginHost, collection: Path) -> None:
    catalog = Catalog(plugin_host, [collection])
    assert catalog.ids() == ["painter", "coder"]
    with pytest.raises(LollmsError) as caught:
        catalog.get("nobody")
    assert str(caught.value) == "no personality with id 'nobody'. See `lollms list`."


def test_a_folder_that_does_not_exist_is_named(
    lollms: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOLLMS_PERSONALITIES_PATH", str(tmp_path / "nope"))
    code, _, err = lollms("list", "--personalities", str(tmp_path / "typo"))
    assert code == 0
    assert err.splitlines() == [
        f"warning: --personalities {tmp_path / 'typo'}: no such folder",
        f"warning: LOLLMS_PERSONALITIES_PATH: no such folder {tmp_path / 'nope'}",
    ]


# -- personalities whose plugin is gone ------------------------------------------------------

NEEDS_SPEECH = """\
dependencies: [lollms-speech]
pipeline:
  - generate: {id: story}
  - condition:
      if: message
      then:
        - speak: {id: reading, text: "{{ story }}"}
  - reply: {text: "{{ story }}"}
"""
NEEDS_MCP = "pipeline:\n  - tool: {id: t, server: calc, name: add}\n  - reply\n"


@pytest.fixture
def without_plugins(tmp_path: Path) -> Path:
    """Personalities that need the speech and MCP plugins (nested and top-level), and one that
    needs none; the one needing speech names its distribution, the other is known by its kind."""
    root = tmp_path / "mixed"
    write(root / "reader", "reader", "Reader", extra=NEEDS_SPEECH)
    write(root / "helper", "helper", "Helper", extra=NEEDS_MCP)
    write(root / "plain", "plain", "Plain")
    # A kind no known plugin provides: a typo, listed as usual and refused at load with a hint.
    write(root / "typo", "typo", "Typo", extra="pipeline:\n  - genrate: {id: x}\n")
    return root


def test_a_personality_whose_plugin_is_not_loaded_is_listed_unavailable_with_its_fix(
    without_plugins: Path,
) -> None:
    env = {"LOLLMS_LOAD_PLUGINS": ""}  # the speech and MCP plugins are installed, not loaded
    done = run_lollms("list", "--personalities", str(without_plugins), env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    note = "; if it is installed, add its plugin to LOLLMS_LOAD_PLUGINS"
    assert done.stdout.split("\n\n")[-1].splitlines() == [
        "unavailable (a plugin they need is not loaded):",
        "  helper  Helper  needs the step kind 'tool', which no loaded plugin provides: "
        "lollms install lollms-mcp" + note,
        "  reader  Reader  needs the step kind 'speak', which no loaded plugin provides: "
        "lollms install lollms-speech" + note,
    ]
    table = done.stdout.split("\n\n")[0]
    assert "plain" in table and "typo" in table  # the others are listed as usual
    typo = run_lollms("run", "typo", "hi", "--personalities", str(without_plugins), env=env)
    assert typo.returncode == 1 and "did you mean 'generate'?" in typo.stderr
    listed = json.loads(
        run_lollms("list", "--json", "--personalities", str(without_plugins), env=env).stdout
    )
    gone = {e["id"]: (e["missing_step_kinds"], e["install"]) for e in listed if "install" in e}
    assert gone == {
        "reader": (["speak"], "lollms install lollms-speech"),
        "helper": (["tool"], "lollms install lollms-mcp"),
    }
    ran = run_lollms("run", "reader", "hi", "--personalities", str(without_plugins), env=env)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert ran.stderr.startswith(
        f"error: personality 'reader' ({without_plugins / 'reader' / 'personality.yaml'}) "
        "needs the step kind 'speak', which no loaded plugin provides: lollms install lollms-speech"
    )
    checked = run_lollms("validate", str(without_plugins / "reader"), env=env)
    assert checked.returncode == 1
    assert "unknown step kind 'speak'" in checked.stderr
    assert "(it needs a plugin: lollms install lollms-speech" + note + ")" in checked.stderr


def test_the_api_skips_a_personality_whose_plugin_is_not_loaded(
    plugin_host: PluginHost, without_plugins: Path, tmp_path: Path
) -> None:
    """A real API on loopback over a built-ins-only host: not offered, and asked for by name it
    says what to install."""
    import socket
    import urllib.error
    import urllib.request

    from lollms_runtime.api.server import APIConfig, create_api
    from lollms_runtime.api.serving import Served
    from lollms_runtime.conversation import ConversationService
    from lollms_runtime.runtime import Runtime
    from lollms_runtime.store import Store

    runtime = Runtime(host=plugin_host, personalities=[without_plugins])
    assert "plain" in runtime.catalog.ids() and "reader" not in runtime.catalog.ids()
    with pytest.raises(LollmsError, match="lollms install lollms-speech"):
        runtime.catalog.get("reader")
    store = Store(tmp_path / "d.sqlite3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_api(
        ConversationService(runtime, store), store.artifacts_root, APIConfig(keys=["k"])
    )
    served = Served(app, "127.0.0.1", port)
    served.serve(block=False)
    try:
        headers = {"Authorization": "Bearer k"}
        url = f"http://127.0.0.1:{port}/v1/models"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            ids = [m["id"] for m in json.loads(r.read())["data"]]
        assert "plain" in ids and "reader" not in ids and "helper" not in ids
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(url + "/reader", headers=headers))
        assert caught.value.code == 404
        message = json.loads(caught.value.read())["error"]["message"]
        assert message.startswith("personality 'reader' needs the step kind 'speak'")
        assert "lollms install lollms-speech" in message
    finally:
        served.close()
        store.close()


def test_the_kinds_a_pipeline_needs_are_found_where_the_kinds_declare_steps(
    plugin_host: PluginHost, tmp_path: Path
) -> None:
    from lollms_runtime.catalog import _identity, missing_kinds

    text = textwrap.dedent(
        """\
        id: x
        pipeline:
          - speak
          - condition:
              if: message
              then: [{tool: {server: s, name: n}}]
              elif:
                - {if: message, then: [{hum: null}]}
              else: [reply]
          - condition:
              switch: message
              cases: {a: [{whistle: {}}]}
          - generate: {id: g, stop: [sing]}
        pipelines:
          sub: [{chant: {}}]
        """
    )
    data = _identity(text, "p.yaml")
    assert missing_kinds(data, plugin_host.step_kinds) == {
        "speak",
        "tool",
        "hum",
        "whistle",
        "chant",
    }  # `sing` is data (a stop string), not a step
