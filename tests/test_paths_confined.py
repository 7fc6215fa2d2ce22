"""Every path a personality names stays inside its folder: refused at load with a located error,
never served by the app, never followed by the importer."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lollms_runtime.errors import PersonalityError
from lollms_runtime.loader import load_personality
from lollms_runtime.paths import PathRefused, confined

ROOT = Path(__file__).resolve().parent.parent

BODY = "schema: 1\nid: {id}\nname: Hostile\navatar: {avatar}\n"


def _write(folder: Path, avatar: str, pid: str = "hostile") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "personality.yaml").write_text(BODY.format(id=pid, avatar=avatar))
    return folder


@pytest.mark.parametrize(
    ("avatar", "why"),
    [
        ("/x.png", "'/x.png' is an absolute path"),
        ("/etc/passwd", "'/etc/passwd' is an absolute path"),
        ("../x.png", "'../x.png' goes up with '..'"),
        ("assets/../../x.png", "'assets/../../x.png' goes up with '..'"),
        ("..\\secret.txt", "'..\\secret.txt' goes up with '..'"),
        ("C:\\Windows\\win.ini", "'C:\\Windows\\win.ini' is an absolute path"),
        ("'\\\\server\\share\\x.png'", "'\\\\server\\share\\x.png' is an absolute path"),
        ("~/x.png", "'~/x.png' points into a home folder"),
        ('"a\\0b"', "contains a NUL character"),
        ("''", ""),
    ],
)
def test_avatar_outside_the_folder_is_refused_at_load(
    tmp_path: Path, avatar: str, why: str
) -> None:
    folder = _write(tmp_path / "p", avatar)
    with pytest.raises(PersonalityError) as info:
        load_personality(folder)
    (problem,) = info.value.problems
    assert (problem.line, problem.col, problem.path) == (4, 9, "avatar")
    if why:
        assert problem.message == f"{why}; it must stay inside its folder"
        assert problem.hint.startswith("write a path relative to the folder holding personality")


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    folder = _write(tmp_path / "p", "assets/passwd")
    os.symlink(outside, folder / "assets")
    with pytest.raises(PersonalityError) as info:
        load_personality(folder)
    assert str(info.value).endswith(
        "personality.yaml:4:9: avatar: 'assets/passwd' leads outside the personality's folder "
        "(symbolic link); it must stay inside its folder\n"
        "    hint: write a path relative to the folder holding personality.yaml, e.g. assets/logo.png"
    )
    # A link to a file outside is refused the same way.
    (folder / "assets").unlink()
    (folder / "assets").mkdir()
    os.symlink(outside / "passwd", folder / "assets" / "logo.png")
    _write(folder, "assets/logo.png")
    with pytest.raises(PersonalityError, match="leads outside the personality's folder"):
        load_personality(folder)


def test_a_link_inside_the_folder_is_fine(tmp_path: Path) -> None:
    folder = _write(tmp_path / "p", "assets/logo.png")
    (folder / "img").mkdir()
    (folder / "img" / "a.png").write_bytes(b"\x89PNG")
    (folder / "assets").symlink_to(folder / "img")
    os.symlink("a.png", folder / "img" / "logo.png")
    p = load_personality(folder)
    assert p.avatar == (folder / "img" / "a.png").resolve()


def test_a_missing_avatar_loads_and_stays_inside(tmp_path: Path) -> None:
    folder = _write(tmp_path / "p", "assets/nothing.png")
    assert load_personality(folder).avatar == folder.resolve() / "assets" / "nothing.png"


def test_confined_refuses_a_symlink_loop(tmp_path: Path) -> None:
    os.symlink(tmp_path / "a", tmp_path / "b")
    os.symlink(tmp_path / "b", tmp_path / "a")
    with pytest.raises(PathRefused):
        confined(tmp_path, "a/x.png")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_app_serves_exactly_avatars_and_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hole that was: an avatar of '/x.png' made the app serve the whole file system."""
    from lollms_runtime.app.server import launch
    from lollms_runtime.engine import Engine
    from lollms_runtime.runtime import Runtime
    from lollms_runtime.store import Store
    from lollms_runtime.testing import ScriptedImageBackend, ScriptedTextBackend

    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    extra = tmp_path / "extra"
    _write(extra / "root_avatar", "/x.png", "root_avatar")
    _write(extra / "up_avatar", "../../../../../../etc/passwd", "up_avatar")
    linked = _write(extra / "linked", "assets/passwd", "linked")
    os.symlink("/etc", linked / "assets")
    good = _write(extra / "good", "logo.png", "good")
    png = ROOT / "personalities/assistant/lollms_personality_assistant/assets/avatar.png"
    (good / "logo.png").write_bytes(png.read_bytes())
    runtime = Runtime(personalities=[ROOT / "personalities", extra])
    runtime.engine = Engine(
        runtime.host,
        ScriptedTextBackend(),
        ScriptedImageBackend(),
        resolve_personality=runtime.catalog.get,
    )
    store = Store(tmp_path / "home" / "discussions.sqlite3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(runtime, store, port=port, block=False)
    try:
        base = f"http://127.0.0.1:{port}/gradio_api/file="
        assert _status(base + str((good / "logo.png").resolve())) == 200
        for secret in (
            "/etc/passwd",
            "/etc/hostname",
            str(good / "personality.yaml"),
            str(store.path),
            str(linked / "assets" / "passwd"),
            str(good / ".." / "root_avatar" / "personality.yaml"),
        ):
            assert _status(base + secret) in (403, 404), secret
    finally:
        demo.close()
        store.close()
