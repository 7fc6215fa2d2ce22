"""The package writer shared by `lollms new` and `lollms import`: atomic, never outside its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from lollms_runtime.errors import LollmsError
from lollms_runtime.importers.package import safe_join, write_package
from lollms_runtime.loader import load_personality
from lollms_runtime.scaffold import create_package


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("../evil", "it would leave"),
        ("a/../../evil", "it would leave"),
        ("/etc/passwd", "it would leave"),
        ("a\x00b", "not a plain relative path"),
        ("a\\..\\b", "not a plain relative path"),
        ("x" * 300, "a name is too long"),
        ("", "not a plain relative path"),
    ],
)
def test_safe_join_refuses_paths_that_leave(tmp_path: Path, relative: str, message: str) -> None:
    with pytest.raises(LollmsError, match=message):
        safe_join(tmp_path, relative)


def test_safe_join_refuses_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / "assets").symlink_to(outside)
    with pytest.raises(LollmsError, match="resolves outside"):
        safe_join(base, "assets/logo.png")
    assert safe_join(base, "fine/logo.png") == base / "fine" / "logo.png"


def test_write_package_refuses_bad_ids_and_asset_names(tmp_path: Path) -> None:
    with pytest.raises(LollmsError, match="not a valid personality id"):
        write_package(tmp_path, "../x", "X", "schema: 1\n")
    with pytest.raises(LollmsError, match="it would leave"):
        write_package(tmp_path, "x", "X", "schema: 1\n", {"../../escape.png": b"x"})
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "escape.png").exists()


def test_a_failed_check_leaves_nothing(tmp_path: Path) -> None:
    def check(folder: Path) -> None:
        assert (folder / "personality.yaml").is_file()
        raise LollmsError("invalid")

    with pytest.raises(LollmsError, match="invalid"):
        write_package(tmp_path, "x", "X", "schema: 1\n", check=check)
    assert list(tmp_path.iterdir()) == []


def test_titles_with_quotes_make_valid_pyproject(tmp_path: Path) -> None:
    import tomllib

    root = write_package(tmp_path, "q", 'A "quoted" \\ title', "schema: 1\nid: q\nname: Q\n")
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["description"] == 'A "quoted" \\ title: a lollms-runtime personality'
    assert project["entry-points"]["lollms_runtime"] == {"q": "lollms_personality_q"}


def test_lollms_new_still_makes_a_valid_package(tmp_path: Path) -> None:
    root = create_package("Chef Bot", tmp_path)
    assert root == tmp_path / "lollms-personality-chef-bot"
    assert sorted(p.name for p in (root / "lollms_personality_chef_bot").iterdir()) == [
        "__init__.py",
        "assets",
        "personality.yaml",
    ]
    assert load_personality(root / "lollms_personality_chef_bot").id == "chef_bot"
    with pytest.raises(LollmsError, match="already exists"):
        create_package("Chef Bot", tmp_path)
