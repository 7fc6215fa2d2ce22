"""`lollms import` of SillyTavern character cards: JSON V1/V2/V3 and PNG cards built here."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from lollms_runtime.cli import main
from lollms_runtime.importers import ImportFailed, import_source
from lollms_runtime.loader import load_personality

V1 = {
    "name": "Seraphina",
    "description": "{{char}} is a guardian of the forest glade.",
    "personality": "caring, protective",
    "scenario": "{{user}} wakes up in {{char}}'s glade.",
    "first_mes": "*{{char}} smiles at {{user}}* You are safe here.",
    "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I am <BOT>, keeper of this glade.",
}


def v2(**extra: Any) -> dict[str, Any]:
    data = {
        **V1,
        "creator_notes": "A gentle forest guardian.\n\nWorks best with long replies.",
        "system_prompt": "{{original}} Stay in character as {{char}}.",
        "post_history_instructions": "Reply in two paragraphs at most.",
        "alternate_greetings": ["Welcome back, {{user}}.", "The glade is quiet today."],
        "tags": ["fantasy", "forest", "fantasy"],
        "creator": "Tavern Author",
        "character_version": "2.1",
        "character_book": {"entries": [{"keys": ["glade"], "content": "A glade."}]},
        "extensions": {"talkativeness": "0.5", "depth_prompt": {"prompt": "x", "depth": 4}},
        **extra,
    }
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def v3(**extra: Any) -> dict[str, Any]:
    card = v2(nickname="Sera", group_only_greetings=["Hello, everyone."], **extra)
    card["spec"], card["spec_version"] = "chara_card_v3", "3.0"
    return card


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))


def write_json(path: Path, card: Any) -> Path:
    path.write_text(json.dumps(card), encoding="utf-8")
    return path


def write_png(path: Path, card: Any, key: str = "chara") -> Path:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if card is not None:
        info.add_text(key, base64.b64encode(json.dumps(card).encode()).decode())
    Image.new("RGB", (8, 8), (40, 120, 60)).save(path, pnginfo=info)
    return path


def written(package: Path) -> dict[str, Any]:
    (file,) = package.glob("lollms_personality_*/personality.yaml")
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == []


def test_v1_json(tmp_path: Path) -> None:
    result = import_source(write_json(tmp_path / "sera.json", V1), tmp_path / "out")
    data = written(result.package)
    assert (result.id, data["name"]) == ("seraphina", "Seraphina")
    assert data["welcome"] == "*Seraphina smiles at User* You are safe here."
    assert data["conditioning"] == (
        "Write Seraphina's next reply in a fictional chat between Seraphina and User.\n\n"
        "Seraphina is a guardian of the forest glade.\n\n"
        "Seraphina's personality: caring, protective\n\n"
        "Scenario: User wakes up in Seraphina's glade.\n\n"
        "Example dialogue:\nUser: Who are you?\nSeraphina: I am Seraphina, keeper of this glade."
    )
    assert "user_prefix" not in data  # the model's own chat template is used
    assert result.warnings == ()


def test_pygmalion_style_v1(tmp_path: Path) -> None:
    card = {
        "char_name": "Aqua",
        "char_persona": "cheerful",
        "world_scenario": "a lake",
        "char_greeting": "Hi {{user}}!",
        "example_dialogue": "",
    }
    data = written(import_source(write_json(tmp_path / "a.json", card), tmp_path / "o").package)
    assert (data["name"], data["welcome"]) == ("Aqua", "Hi User!")
    assert "Aqua's personality: cheerful\n\nScenario: a lake" in data["conditioning"]


def test_v2_json(tmp_path: Path) -> None:
    result = import_source(write_json(tmp_path / "sera.json", v2()), tmp_path / "out")
    data = written(result.package)
    assert data["welcome"] == [
        "*Seraphina smiles at User* You are safe here.",
        "Welcome back, User.",
        "The glade is quiet today.",
    ]
    conditioning = data["conditioning"]
    assert conditioning.startswith(
        "Write Seraphina's next reply in a fictional chat between Seraphina and User. "
        "Stay in character as Seraphina.\n\n"
    )
    assert conditioning.endswith("\n\nReply in two paragraphs at most.")
    assert data["description"] == "A gentle forest guardian."
    assert data["help"] == "A gentle forest guardian.\n\nWorks best with long replies."
    assert data["tags"] == ["fantasy", "forest"]
    assert (data["author"], data["version"]) == ("Tavern Author", "2.1")
    text = "\n".join(result.warnings)
    # The lorebook is carried over now (tests/test_lore_import.py covers its fields).
    assert data["lore"] == {
        "entries": [{"keys": ["glade"], "content": "A glade.", "match": "substring"}]
    }
    assert "extensions not carried over: depth_prompt, talkativeness" in text
    assert "post_history_instructions are placed at the end of the conditioning" in text


def test_v3_json_uses_nickname_and_reports_group_greetings(tmp_path: Path) -> None:
    card = v3(scenario="{{random:rain,sun}} falls on {{char}}.")
    result = import_source(write_json(tmp_path / "sera.json", card), tmp_path / "out")
    assert "Scenario: {{random:rain,sun}} falls on Sera." in written(result.package)["conditioning"]
    assert any(
        "macros left as written (not filled in here): {{random:rain,sun}}" in w
        for w in result.warnings
    )
    data = written(result.package)
    assert data["name"] == "Seraphina"
    assert data["welcome"][0] == "*Sera smiles at User* You are safe here."
    assert any("field 'group_only_greetings' not carried over" in w for w in result.warnings)


@pytest.mark.parametrize(("card", "key"), [(v2(), "chara"), (v3(), "ccv3")])
def test_png_card_and_its_avatar(tmp_path: Path, card: dict[str, Any], key: str) -> None:
    png = write_png(tmp_path / "Seraphina.png", card, key)
    result = import_source(png, tmp_path / "out")
    module = result.package / "lollms_personality_seraphina"
    assert (module / "assets" / "avatar.png").read_bytes() == png.read_bytes()
    personality = load_personality(module)
    assert personality.avatar == module.resolve() / "assets" / "avatar.png"
    assert personality.welcome[1] == "Welcome back, User."


def test_png_prefers_ccv3_over_chara(tmp_path: Path) -> None:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    old = {**v2(), "data": {**v2()["data"], "name": "Old"}}
    info.add_text("chara", base64.b64encode(json.dumps(old).encode()).decode())
    info.add_text("ccv3", base64.b64encode(json.dumps(v3()).encode()).decode())
    Image.new("RGB", (4, 4)).save(tmp_path / "card.png", pnginfo=info)
    assert import_source(tmp_path / "card.png", tmp_path / "out").name == "Seraphina"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("crc", r"damaged PNG: CRC mismatch in chunk tEXt at byte \d+"),
        ("truncated", r"damaged PNG: chunk \w+ at byte \d+ says \d+ bytes, but the file ends"),
        ("no_chunk", r"this PNG holds no character card \(no 'chara' or 'ccv3' text chunk\)"),
        ("signature", r"not a PNG file"),
        ("base64", r"the 'chara' chunk is not valid base64"),
        ("no_iend", r"damaged PNG: truncated at byte \d+ \(no IEND chunk\)"),
    ],
)
def test_malformed_png_fails_cleanly(tmp_path: Path, damage: str, message: str) -> None:
    good = write_png(tmp_path / "good.png", v2()).read_bytes()
    bad = tmp_path / "bad.png"
    if damage == "crc":
        start = good.index(b"tEXt")
        blob = bytearray(good)
        blob[start + 10] ^= 0xFF  # inside the base64 text, so only the CRC notices
        bad.write_bytes(bytes(blob))
    elif damage == "truncated":
        bad.write_bytes(good[: good.index(b"tEXt") + 40])
    elif damage == "no_chunk":
        write_png(bad, None)
    elif damage == "signature":
        bad.write_bytes(b"GIF89a" + good[6:])
    elif damage == "base64":
        plain = write_png(tmp_path / "plain.png", None).read_bytes()
        iend = plain.index(b"IEND") - 4
        bad.write_bytes(plain[:iend] + _chunk(b"tEXt", b"chara\x00%%%not base64%%%") + plain[iend:])
    elif damage == "no_iend":
        bad.write_bytes(good[: good.index(b"IEND") - 4])
    out = tmp_path / "out"
    with pytest.raises(ImportFailed, match=message):
        import_source(bad, out)
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("description", "x" * 200_000, "field 'description' is 200000 characters; the limit is"),
        ("personality", "ok\x00\x01\x02binary", r"field 'personality' holds binary data"),
        ("first_mes", 42, "field 'first_mes' should be text, got int"),
        ("alternate_greetings", ["hi", "\x07bell"], r"field 'alternate_greetings\[1\]' holds"),
        ("name", "../../etc/passwd\x00", "field 'name' holds binary data"),
    ],
)
def test_huge_or_binary_field_fails_cleanly(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    card = v2()
    card["data"][field] = value
    out = tmp_path / "out"
    with pytest.raises(ImportFailed, match=message):
        import_source(write_png(tmp_path / "card.png", card), out)
    assert_nothing_written(out)
    with pytest.raises(ImportFailed, match=message):
        import_source(write_json(tmp_path / "card.json", card), out)
    assert_nothing_written(out)


def test_binary_file_named_json_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_bytes(b"\xff\xfe\x00\x01" * 100)
    with pytest.raises(ImportFailed, match="not UTF-8 text"):
        import_source(tmp_path / "card.json", tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    "name",
    [
        "../../../../tmp/evil",
        "/etc/passwd",
        "..",
        "a/../../b",
        "C:\\Windows\\System32",
        "é" * 300,
        "." * 80,
    ],
)
def test_hostile_names_never_write_outside_the_target(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    card = {**V1, "name": name}
    source = write_json(tmp_path / "card.json", card)
    before = set(tmp_path.rglob("*"))
    result = import_source(source, out)
    created = set(tmp_path.rglob("*")) - before
    assert created and all(p.is_relative_to(out) for p in created)
    assert not Path("/tmp/evil").exists()
    assert result.package.parent == out
    assert len(result.id) <= 64 and "/" not in result.id and "." not in result.id
    assert load_personality(next(result.package.glob("lollms_personality_*"))).name


def test_all_imports_a_tree_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    (tree / "cards").mkdir(parents=True)
    (tree / "lollms" / "bot").mkdir(parents=True)
    (tree / "lollms" / "bot" / "config.yaml").write_text(
        "name: Bot\npersonality_conditioning: Be a bot.\nuser_name: Joe\n", encoding="utf-8"
    )
    write_json(tree / "cards" / "v1.json", V1)  # same id as the PNG: made unique
    write_png(tree / "cards" / "v2.png", v2())
    write_json(tree / "cards" / "huge.json", {**V1, "description": "x" * 200_000})
    write_json(tree / "cards" / "package.json", {"dependencies": {}})  # not a card: skipped
    write_png(tree / "cards" / "photo.png", None)  # an image, not a card: skipped
    out = tmp_path / "out"
    code = main(["import", "--all", str(tree), "--to", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "3 imported (2 with warnings), 1 failed, 2 skipped" in captured.out
    assert f"FAILED {tree / 'cards' / 'huge.json'}: " in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "lollms-personality-bot",
        "lollms-personality-seraphina",
        "lollms-personality-seraphina-2",
    ]
    assert main(["import", "--all", str(tree / "lollms"), "--to", str(tmp_path / "o2")]) == 0
    assert "1 imported (1 with warnings), 0 failed, 0 skipped" in capsys.readouterr().out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = write_json(tmp_path / "sera.json", v2())
    assert main(["import", str(card), "--to", str(tmp_path / "out"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["id"] == "seraphina" and report["kind"] == "sillytavern"
    assert any("extensions not carried over" in w for w in report["warnings"])


def test_all_into_the_tree_itself_does_not_reimport_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_png(tmp_path / "card.png", v2())
    assert main(["import", "--all", str(tmp_path), "--to", str(tmp_path)]) == 0
    assert "1 imported" in capsys.readouterr().out
    # Run again: the package written the first time (with its avatar.png card) is not walked.
    assert main(["import", "--all", str(tmp_path), "--to", str(tmp_path)]) == 0
    assert "1 imported" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "card.png",
        "lollms-personality-seraphina",
        "lollms-personality-seraphina-2",
    ]


def test_to_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = write_json(tmp_path / "card.json", V1)
    assert main(["import", str(card), "--to", str(card)]) == 1
    assert "is not a folder" in capsys.readouterr().err
