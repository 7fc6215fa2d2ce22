"""Malformed and hostile sources end in the importer's own error (ImportFailed, one message), in
bounded time; `lollms import --all` reports each failure and goes on to its summary."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from pathlib import Path

import pytest
from conftest import run_lollms

from lollms_runtime.importers import ImportFailed, import_source

GOOD_CARD = b'{"name": "Ada", "first_mes": "Hello.", "description": "A mathematician."}'
LAUGHS = ['  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
    f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)
]
BOMB_CONFIG = "name: Bomb\nx:\n" + "\n".join(LAUGHS) + "\npersonality_conditioning: *a9\n"


def chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(text: bytes, keyword: bytes = b"chara") -> bytes:
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)),
            chunk(b"tEXt", keyword + b"\x00" + text),
            chunk(b"IDAT", zlib.compress(b"\x00" * 5)),
            chunk(b"IEND", b""),
        ]
    )


CARDS = {
    "huge_int.json": (
        b'{"name": "a", "first_mes": "x", "extensions": {"n": ' + b"9" * 5000 + b"}}",
        "a number of 5000 characters is not a card value (at most 100); the card is damaged",
    ),
    "deep.json": (
        b'{"name": "a", "description": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "the card's JSON nests more than 64 levels; the card is damaged",
    ),
    "shallow_deep.json": (
        b'{"name": "a", "description": ' + b"[" * 500 + b"]" * 500 + b"}",
        "the card's JSON nests more than 64 levels; the card is damaged",
    ),
    "nan.json": (
        b'{"name": "a", "first_mes": "x", "talkativeness": NaN}',
        "'NaN' is not a JSON value; the card is damaged",
    ),
    "bad_base64.png": (
        png(b"@@@not-base64@@@"),
        "the 'chara' chunk is not valid base64; the card is damaged",
    ),
    "base64_of_junk.png": (
        png(base64.b64encode(b"\xff\xfe\x00junk")),
        "the card is not UTF-8 text (binary data?)",
    ),
    "deep_in_png.png": (
        png(base64.b64encode(b'{"name": "a", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}")),
        "the card's JSON nests more than 64 levels; the card is damaged",
    ),
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_a_malformed_card_is_the_importers_error(tmp_path: Path, name: str) -> None:
    blob, expected = CARDS[name]
    (tmp_path / name).write_bytes(blob)
    started = time.perf_counter()
    with pytest.raises(ImportFailed) as info:
        import_source(tmp_path / name, tmp_path / "out")
    assert time.perf_counter() - started < 2.0
    assert str(info.value) == f"{tmp_path / name}: {expected}"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_lollms_config_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # Before: `lollms import` of this folder never ended.
    (tmp_path / "bomb").mkdir()
    (tmp_path / "bomb" / "config.yaml").write_text(BOMB_CONFIG, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ImportFailed) as info:
        import_source(tmp_path / "bomb", tmp_path / "out")
    assert time.perf_counter() - started < 1.0
    assert str(info.value) == (
        f"{tmp_path / 'bomb' / 'config.yaml'}:8:7: x.a5: with its aliases expanded this holds "
        "597871 values; the limit is 100000\n"
        "    hint: use fewer aliases (*name): write the values out, once each"
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("name: !foo x\n", "config.yaml:1:7: name: unknown YAML tag '!foo'"),
        ("name: x\nmodel_n_predicts: " + "1" * 400 + "\n", "an integer of 400 digits"),
        ("name: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 100 levels deep"),
        ("name: !!binary 'abcde'\n", "cannot read this !!binary value"),
    ],
)
def test_a_hostile_lollms_config_is_a_located_error(
    tmp_path: Path, config: str, expected: str
) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.yaml").write_text(config, encoding="utf-8")
    with pytest.raises(ImportFailed) as info:
        import_source(tmp_path / "p", tmp_path / "out")
    assert expected in str(info.value)


def test_import_all_reports_each_failure_and_goes_on(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "good.json").write_bytes(GOOD_CARD)
    for name, (blob, _expected) in CARDS.items():
        (tree / name).write_bytes(blob)
    (tree / "bomb").mkdir()
    (tree / "bomb" / "config.yaml").write_text(BOMB_CONFIG, encoding="utf-8")
    (tree / "tester").mkdir()
    source = Path(__file__).parent / "data" / "lollms" / "tester" / "config.yaml"
    (tree / "tester" / "config.yaml").write_bytes(source.read_bytes())
    done = run_lollms("import", str(tree), "--all", "--to", str(tmp_path / "out"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    failed = sorted(line for line in done.stderr.splitlines() if line.startswith("FAILED "))
    assert [line.split(":")[0] for line in failed] == sorted(
        [f"FAILED {tree / 'bomb'}", *(f"FAILED {tree / name}" for name in CARDS)]
    )
    assert done.stdout.splitlines()[-1].startswith("2 imported (")
    assert done.stdout.splitlines()[-1].endswith(f", {len(CARDS) + 1} failed, 0 skipped")
