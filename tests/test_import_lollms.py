"""`lollms import` of LoLLMs personality folders: the real corpus, and field-by-field samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lollms_runtime.cli import main
from lollms_runtime.importers import ImportFailed, import_source
from lollms_runtime.importers.detect import import_tree
from lollms_runtime.loader import load_personality

DATA = Path(__file__).parent / "data" / "lollms"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "lollms_zoo"
if not CORPUS.is_dir():  # a worktree sits next to the main checkout, not inside it
    CORPUS = Path("/work/shared/corpora/lollms_zoo")


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))


def written(package: Path) -> dict[str, object]:
    (yaml_file,) = package.glob("lollms_personality_*/personality.yaml")
    data = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_every_corpus_config_imports_and_validates(tmp_path: Path) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"LoLLMs corpus not found at {CORPUS} (shared/corpora/lollms_zoo)")
    configs = sorted(CORPUS.rglob("config.yaml"))
    assert len(configs) == 162
    summary = import_tree(CORPUS, tmp_path / "out")
    assert summary.failed == []
    assert len(summary.imported) == 162
    ids = {r.id for r in summary.imported}
    assert len(ids) == 162  # duplicates made unique
    for result in summary.imported:
        personality = load_personality(next(result.package.glob("lollms_personality_*")))
        source = yaml.safe_load((result.source / "config.yaml").read_text(encoding="utf-8"))
        assert personality.id == result.id
        assert personality.name == " ".join(str(source["name"]).split())
        assert personality.conditioning.strip()
        assert bool(personality.welcome) == bool(str(source["welcome_message"]).strip())
        if source.get("model_temperature") is not None:
            assert personality.sampling.temperature == source["model_temperature"]


def test_fields_land_where_they_should(tmp_path: Path) -> None:
    result = import_source(DATA / "arthur_remond", tmp_path)
    data = written(result.package)
    assert result.id == "arthur_remond"
    assert data["name"] == "Walter Bonatti"
    assert data["author"] == "ParisNeo"
    assert data["version"] == "1.0.0"
    assert data["category"] == "explorer"
    assert data["description"] == (
        "A simulation of Walter Bonatti, the legendary mountaineer and explorer"
    )
    assert str(data["conditioning"]).startswith("Simulate the personality of Walter Bonatti")
    assert str(data["welcome"]).startswith("Greetings! I am Walter Bonatti")
    assert data["user_prefix"] == "!@>User: "
    assert data["ai_prefix"] == "!@>Walter Bonatti: "
    assert data["link_text"] == "\n"
    assert data["sampling"] == {
        "stop": ["!@>User", "!@>Walter Bonatti", "User", "!@>"],
        "temperature": 0.6,
        "top_k": 40,
        "top_p": 0.9,
        "repetition_penalty": 1.1,
        "repetition_context_size": 64,
    }
    # user_name 'User' is the user prefix itself: nothing lost, nothing to report.
    assert result.warnings == ()
    personality = load_personality(result.package / "lollms_personality_arthur_remond")
    assert personality.prefixes is not None
    assert personality.prefixes.user_prefix == "!@>User: "
    assert personality.sampling.repetition_context_size == 64


def test_commands_help_max_tokens_and_unknown_keys_are_reported(tmp_path: Path) -> None:
    result = import_source(DATA / "tester", tmp_path)
    data = written(result.package)
    assert data["help"] == "This is a test personality"
    assert data["ai_prefix"] == "!@>Prompt: "
    sampling = data["sampling"]
    assert isinstance(sampling, dict)
    assert sampling["max_tokens"] == 1024
    assert sampling["stop"] == ["!>", "User:", "!>User", "!>Prompt", "!@>"]
    assert data["commands"] == [
        {"name": "Help", "prompt": "help", "help": "test help."},
        {"name": "Send File", "prompt": "send_file", "help": "sends a file to the personality."},
        {
            "name": "Test new message creation",
            "prompt": "test_new_message",
            "help": "Tests new mesage functionality",
        },
    ]
    text = "\n".join(result.warnings)
    config = DATA / "tester" / "config.yaml"
    assert f"{config}:60: key 'processor_cfg' not carried over" in text
    assert f"{config}:29: key 'include_welcome_message_in_discussion' not carried over" in text
    assert "command 'Send File': file_types, icon, is_file not carried over" in text
    # The warnings are also kept in the written file, as comments.
    yaml_text = next(result.package.glob("*/personality.yaml")).read_text(encoding="utf-8")
    assert "# - " in yaml_text and "processor_cfg" in yaml_text


def test_prompts_list_becomes_examples_and_dates_are_reported(tmp_path: Path) -> None:
    result = import_source(DATA / "lilypond_music_generator", tmp_path)
    data = written(result.package)
    examples = data["examples"]
    assert isinstance(examples, list)
    assert examples[0] == (
        "Create a simple melody in [key] with a [tempo] BPM. "
        "The melody should consist of [length] measures."
    )
    assert all("@<" not in e and "::" not in e for e in examples)
    assert data["dependencies"] == ["lilypond"]
    assert any("key 'creation_date' not carried over" in w for w in result.warnings)


def test_duplicate_key_is_read_leniently_with_file_and_line(tmp_path: Path) -> None:
    result = import_source(DATA / "travel_guide", tmp_path)
    config = DATA / "travel_guide" / "config.yaml"
    assert any(
        w.startswith(f"{config}:49: duplicate key 'dependencies' (first defined at line 13)")
        for w in result.warnings
    )
    assert written(result.package)["ai_prefix"] == "!@>TravelGuide: "


def test_template_placeholders_in_prefixes_resolve_to_lollms_defaults(tmp_path: Path) -> None:
    data = written(import_source(DATA / "coach_excel", tmp_path).package)
    assert data["user_prefix"] == "!@>user: "
    assert data["ai_prefix"] == "!@>coach_excel: "
    sampling = data["sampling"]
    assert isinstance(sampling, dict)
    assert sampling["stop"] == ["!@>"]
    assert data["version"] == "1.0"


def test_processor_is_never_run_and_logo_becomes_avatar(tmp_path: Path) -> None:
    source = tmp_path / "scripted bot"
    shutil.copytree(DATA / "arthur_remond", source)
    (source / "scripts").mkdir()
    marker = tmp_path / "processor-ran"
    (source / "scripts" / "processor.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8"
    )
    (source / "assets").mkdir()
    logo = b"\x89PNG\r\n\x1a\nnot really an image"
    (source / "assets" / "logo.png").write_bytes(logo)
    (source / "assets" / "send_file.svg").write_text("<svg/>", encoding="utf-8")
    result = import_source(source, tmp_path / "out")
    assert not marker.exists()
    assert result.id == "scripted_bot"
    assert any("Python workflow, which was not run" in w for w in result.warnings)
    assert any("not copied: send_file.svg" in w for w in result.warnings)
    module = result.package / "lollms_personality_scripted_bot"
    assert (module / "assets" / "logo.png").read_bytes() == logo
    assert not list(result.package.rglob("processor.py"))
    personality = load_personality(module)
    assert personality.avatar == module.resolve() / "assets" / "logo.png"
    assert personality.pipeline == ()  # a chat personality


def test_a_symlinked_assets_folder_is_not_followed(tmp_path: Path) -> None:
    source = tmp_path / "linked bot"
    shutil.copytree(DATA / "arthur_remond", source)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "logo.png").write_bytes(b"\x89PNG private picture")
    (elsewhere / "secret.txt").write_text("private")
    (source / "assets").symlink_to(elsewhere, target_is_directory=True)
    result = import_source(source, tmp_path / "out")
    assert any("is or lies under a symbolic link; not copied" in w for w in result.warnings)
    assert not list(result.package.rglob("logo.png"))
    assert not any("secret.txt" in w for w in result.warnings)  # its content is never listed
    assert "avatar" not in written(result.package)


def test_out_of_range_sampling_is_clamped_with_a_warning(tmp_path: Path) -> None:
    source = tmp_path / "hot"
    source.mkdir()
    (source / "config.yaml").write_text(
        "name: Hot\npersonality_conditioning: Be hot.\nwelcome_message: Hi\n"
        "model_temperature: 3.5\nmodel_top_p: 0\nmodel_repeat_penalty: 0.1\n"
        "model_repeat_last_n: 99999\nmodel_top_k: 40.0\nmodel_n_predicts: '512'\n"
        "category: [a, b]\nversion: new\n",
        encoding="utf-8",
    )
    result = import_source(source, tmp_path / "out")
    sampling = written(result.package)["sampling"]
    assert sampling == {
        "temperature": 2.0,
        "top_p": 0.01,
        "repetition_penalty": 0.5,
        "repetition_context_size": 4096,
        "top_k": 40,
        "max_tokens": 512,
    }
    text = "\n".join(result.warnings)
    assert (
        f"{source / 'config.yaml'}:4: model_temperature 3.5 is out of range; clamped to 2.0" in text
    )
    assert "model_repeat_last_n 99999 is out of range; clamped to 4096" in text
    assert "several categories; kept the first ('a')" in text
    assert "version 'new' is not like 1.0.0" in text


def test_yaml_syntax_error_fails_cleanly_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "broken"
    source.mkdir()
    (source / "config.yaml").write_text("name: x\n  bad: [\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ImportFailed, match=r"config.yaml:\d+:\d+: YAML syntax error"):
        import_source(source, out)
    assert not out.exists() or not any(out.iterdir())


def test_cli_import_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["import", str(DATA / "tester"), "--to", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"Imported Personality tester (tester) -> {out / 'lollms-personality-tester'}" in (
        captured.out
    )
    assert "warning: " in captured.err
    module = out / "lollms-personality-tester" / "lollms_personality_tester"
    assert main(["validate", str(module)]) == 0
    # Importing again does not overwrite the first package.
    assert main(["import", str(DATA / "tester"), "--to", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
