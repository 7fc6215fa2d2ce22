"""One bad personality never takes the others down, and no file makes the loader work without
bound: alias bombs, deep nesting, unknown tags, unreadable values, long integers and unknown Jinja
filters or tests are located errors, found in milliseconds and a few megabytes."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import run_lollms

from lollms_runtime.catalog import Catalog, _summary
from lollms_runtime.errors import PersonalityError
from lollms_runtime.loader import load_personality
from lollms_runtime.plugins import PluginHost
from lollms_runtime.yamldoc import MAX_TEXT_CHARS, parse_yaml

HEAD = "schema: 1\nid: {id}\nname: {id}\nconditioning: Hi.\n"
LAUGHS = ['  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
    f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)
]
BOMB = HEAD.format(id="bomb") + "x:\n" + "\n".join(LAUGHS) + "\n"  # 549 bytes, 10**9 values

BROKEN = {
    "tagged": ("description: !foo bar\n", "5:14: description: unknown YAML tag '!foo'"),
    "binary": (
        "description: !!binary '@@@not base64'\n",
        "5:14: description: cannot read this !!binary value: failed to decode base64 data",
    ),
    "deep": (
        "description: " + "[" * 600 + "]" * 600 + "\n",
        "5:113: description[0][0][0][0][0]...: nested more than 100 levels deep",
    ),
    "namebomb": (
        "x:\n" + "\n".join(LAUGHS) + "\nname: *a9\n",
        "with its aliases expanded this holds 597871 values; the limit is 100000",
    ),
    "filter": (
        "pipeline:\n  - reply: {text: '{{ message | uper }}'}\n",
        "6:19: pipeline[0].reply.text: unknown filter 'uper'\n    hint: did you mean 'upper'?",
    ),
    "cond": (
        "pipeline:\n  - reply: {text: 'x', when: 'message | nosuchfilter'}\n",
        "6:30: pipeline[0].reply.when: unknown filter 'nosuchfilter'",
    ),
    "test": (
        "pipeline:\n  - reply: {text: '{% if message is strnig %}x{% endif %}'}\n",
        "6:19: pipeline[0].reply.text: unknown test 'strnig'\n    hint: did you mean 'string'?",
    ),
}


def write(folder: Path, ident: str, body: str) -> Path:
    (folder / ident).mkdir(parents=True)
    file = folder / ident / "personality.yaml"
    file.write_text(HEAD.format(id=ident) + body, encoding="utf-8")
    return file


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    """Good personalities next to every kind of broken one."""
    write(tmp_path, "good", "")
    write(tmp_path, "also_good", "")
    for ident, (body, _expected) in BROKEN.items():
        write(tmp_path, ident, body)
    return tmp_path


def test_an_alias_bomb_is_refused_in_milliseconds_and_megabytes() -> None:
    # Before: `lollms validate` on these 549 bytes grew past 2 GB (killed).
    assert len(BOMB) < 550
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(PersonalityError) as info:
        parse_yaml(BOMB, "bomb.yaml")
    elapsed = time.perf_counter() - started
    _size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(info.value) == (
        "bomb.yaml:11:7: x.a5: with its aliases expanded this holds 597871 values; the limit is "
        "100000\n    hint: use fewer aliases (*name): write the values out, once each"
    )
    assert elapsed < 1.0 and peak < 20 << 20


@pytest.mark.parametrize("width", [3, 30])
def test_merge_key_bombs_are_bounded_too(width: int) -> None:
    lines = ["a0: &a0 {k: v}"] + [
        f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * width)}], m{i}: 1}}" for i in range(1, 12)
    ]
    started = time.perf_counter()
    with pytest.raises(PersonalityError, match="with its aliases expanded this holds"):
        parse_yaml("\n".join(lines) + "\n", "m.yaml")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a [*a]\n", "m.yaml:1:4: a[0]: an alias refers to a value that contains it"),
        ("a: " + "[" * 5000 + "]" * 5000, "m.yaml:1:"),  # libyaml's own limit, reworded
        ("a: " + "- " * 200 + "x\n", "m.yaml:1:"),
        ("id: " + "1" * 5000 + "\n", "m.yaml:1:5: id: an integer of 5000 digits is not allowed"),
        ("a: !!int ''\n", "m.yaml:1:4: a: cannot read this !!int value"),
        ("a: 2024-13-45\n", "m.yaml:1:4: a: cannot read this !!timestamp value"),
        ("a: !!python/object/apply:os.system [ls]\n", "unknown YAML tag"),
        ("? [1, 2]\n: x\n", "m.yaml:1:1: mapping keys must be plain scalars"),
        ("a: {<<: 3}\n", "bad merge key"),
    ],
)
def test_hostile_yaml_is_a_located_error(text: str, expected: str) -> None:
    with pytest.raises(PersonalityError) as info:
        parse_yaml(text, "m.yaml")
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)


def test_deep_nesting_names_the_limit() -> None:
    with pytest.raises(PersonalityError) as info:
        parse_yaml("a: " + "[" * 5000 + "]" * 5000, "m.yaml")
    assert "nested more than 100 levels deep" in str(info.value)
    assert "flatten this part" in str(info.value)


def test_a_huge_file_is_refused_before_parsing() -> None:
    with pytest.raises(PersonalityError) as info:
        parse_yaml("a: " + "x" * MAX_TEXT_CHARS, "big.yaml")
    assert str(info.value).startswith(f"big.yaml:1:1: the file has {MAX_TEXT_CHARS + 3} chara")


def test_duplicates_last_keeps_the_last_value_and_says_where() -> None:
    doc = parse_yaml("a: 1\nb: 2\na: 3\n", "c.yaml", duplicates="last")
    assert doc.data == {"a": 3, "b": 2}
    assert [str(p).splitlines()[0] for p in doc.duplicates] == [
        "c.yaml:3:1: a: duplicate key 'a' (first defined at line 1)"
    ]


@pytest.mark.parametrize("ident", sorted(BROKEN))
def test_each_broken_personality_is_one_located_error(zoo: Path, ident: str) -> None:
    with pytest.raises(PersonalityError) as info:
        load_personality(zoo / ident, PluginHost())
    assert str(info.value).startswith(f"{zoo / ident / 'personality.yaml'}:")
    assert BROKEN[ident][1] in str(info.value)


def test_listing_an_alias_under_name_does_not_expand_it(zoo: Path) -> None:
    # Before: `name: *alias` made `lollms list` hang (str() of a billion-item list).
    started = time.perf_counter()
    entry = _summary(zoo / "namebomb" / "personality.yaml", "test", {})
    assert time.perf_counter() - started < 1.0
    assert entry.error == (
        "11:7: x.a5: with its aliases expanded this holds 597871 values; the limit is 100000 "
        "(hint: use fewer aliases (*name): write the values out, once each)"
    )


def test_the_catalog_and_the_app_keep_the_good_ones(zoo: Path) -> None:
    catalog = Catalog(PluginHost(), [zoo])
    assert {e.id for e in catalog.entries} >= {"good", "also_good", "filter", "cond", "test"}
    assert {e.path.parent.name for e in catalog.broken} == {"tagged", "binary", "deep", "namebomb"}
    from lollms_runtime.app.ui import App
    from lollms_runtime.runtime import Runtime
    from lollms_runtime.store import Store

    store = Store(zoo / "d.sqlite3")
    try:
        app = App(Runtime(personalities=[zoo]), store)
    finally:
        store.close()
    assert {"good", "also_good"} <= set(app.ids)
    assert not set(app.ids) & set(BROKEN)
    assert set(app.broken) == {"filter", "cond", "test"} | {
        str(zoo / n / "personality.yaml") for n in ("tagged", "binary", "deep", "namebomb")
    }
    assert "unknown filter 'uper'" in app.broken["filter"]


def test_validate_list_and_test_go_on_past_broken_ones(zoo: Path) -> None:
    paths = [str(zoo / name) for name in ("good", *sorted(BROKEN), "also_good")]
    only_builtins = {"LOLLMS_LOAD_PLUGINS": ""}  # installed plugins may warn on stderr
    done = run_lollms("validate", *paths, env=only_builtins)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stdout.splitlines() == [
        f"{zoo / 'good'}: ok (good)",
        f"{zoo / 'also_good'}: ok (also_good)",
    ]
    assert done.stderr.splitlines()[-1] == "2 valid, 7 invalid"
    for _ident, (_body, expected) in BROKEN.items():
        assert expected.splitlines()[0] in done.stderr

    listed = run_lollms("list", "--personalities", str(zoo), env=only_builtins)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert "also_good" in listed.stdout and "good " in listed.stdout
    assert f"warning: {zoo / 'deep' / 'personality.yaml'}: 5:113: " in listed.stderr

    tested = run_lollms("test", "--scripted-only", "--personalities", str(zoo), env=only_builtins)
    assert tested.returncode == 1 and "Traceback" not in tested.stderr
    assert "filter ERROR (cannot be loaded)" in tested.stdout
    assert tested.stdout.rstrip().endswith("7 errors ==========")
