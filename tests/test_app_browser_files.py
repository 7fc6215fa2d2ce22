"""Files in the web app, in headless Chromium: the narrator's spoken answer plays in the chat (a
real WAV from espeak-ng, live and when the discussion is reopened), and a file attached to a
message joins the discussion's index: the answer shows its sources and the passage reaches the
model. The server runs the app on scripted text backends (LOLLMS_SCRIPTED=1, fast) with the real
speech plugin and store. Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_app_browser import SHOTS, Server, _send, _settled, _shot, browser

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, shared with test_app_browser

FACT = "The lighthouse on Kestrel Point is painted teal and was built in 1887 by Ada Quill."


@pytest.fixture
def scripted_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    pytest.importorskip("lollms_speech")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    prompts = tmp_path / "prompts.jsonl"
    monkeypatch.setenv("LOLLMS_SCRIPTED", "1")
    monkeypatch.setenv("LOLLMS_SCRIPTED_DELAY", "0.01")
    monkeypatch.setenv("LOLLMS_SCRIPTED_PROMPTS", str(prompts))
    srv = Server(tmp_path / "home", tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


def _choose(page: Any, name: str) -> None:
    """A personality from the picker (one without an avatar has no card in the gallery)."""
    from playwright.sync_api import expect

    page.locator("#personality input").click()
    page.get_by_role("option", name=name, exact=True).click()
    expect(page.locator("#header")).to_contain_text(name)


def _played(page: Any) -> tuple[bytes, float]:
    """The bytes the chat's last audio player plays (its src, often a blob: URL the page made
    from the served file, fetched inside the page) and their duration as a WAV."""
    from playwright.sync_api import expect

    player = page.locator("#chat audio").last
    expect(player).to_have_attribute("src", re.compile(r"\S"), timeout=30_000)
    src = player.get_attribute("src")
    encoded = page.evaluate(
        """async (src) => { const r = await fetch(src); const b = new Uint8Array(await
        r.arrayBuffer()); let s = ''; for (const x of b) { s += String.fromCharCode(x); }
        return btoa(s); }""",
        src,
    )
    data = base64.b64decode(encoded)
    with wave.open(io.BytesIO(data)) as w:
        seconds = w.getnframes() / w.getframerate()
    return data, seconds


def test_narrator_answer_plays_its_audio(scripted_server: Server, browser: Any) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(scripted_server.url)
    chat = page.locator("#chat")
    expect(page.locator("#personality")).to_be_visible(timeout=30_000)
    _choose(page, "Narrator")
    _send(page, "a lighthouse keeper")
    _settled(chat)
    expect(chat.locator("audio")).to_have_count(1, timeout=60_000)  # the whole file, no parts
    data, seconds = _played(page)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert seconds > 0.5, f"the WAV lasts {seconds:.2f}s"
    page.screenshot(path=str(SHOTS / "files-1-narrator-audio.png"))

    # Reopened (a reload brings the discussion back from the store): the player is still there.
    page.reload()
    expect(chat).to_contain_text("a lighthouse keeper", timeout=30_000)
    expect(chat.locator("audio")).to_have_count(1, timeout=30_000)
    again, _ = _played(page)
    assert again == data
    page.screenshot(path=str(SHOTS / "files-2-narrator-reopened.png"))


def test_attached_file_is_retrieved_and_cited(
    scripted_server: Server, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(exist_ok=True)
    notes = tmp_path / "kestrel-notes.md"
    notes.write_text(f"# Kestrel Point\n\n{FACT}\n", encoding="utf-8")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(scripted_server.url)
    chat = page.locator("#chat")
    expect(page.locator("#personality")).to_be_visible(timeout=30_000)
    _choose(page, "Assistant")

    with page.expect_file_chooser() as chooser:
        page.locator("#attach").click()
    chooser.value.set_files(str(notes))
    expect(page.locator("#attached")).to_contain_text("kestrel-notes.md", timeout=30_000)
    _shot(page, "files-3a-attached-waiting.png")
    _send(page, "What colour is the lighthouse on Kestrel Point?")
    _settled(chat)
    expect(page.locator("#attached")).not_to_contain_text("kestrel-notes.md")
    expect(chat).to_contain_text("Attached: kestrel-notes.md", timeout=30_000)
    expect(chat).to_contain_text("Sources:", timeout=30_000)
    expect(chat).to_contain_text("[1] kestrel-notes.md")
    _shot(page, "files-3b-attachment-sources.png")

    # The passage reached the model, in the system message, numbered for citing.
    prompts = (scripted_server.home.parent / "prompts.jsonl").read_text("utf-8")
    last = json.loads(prompts.strip().splitlines()[-1])
    assert FACT in last[0] and "[1] (kestrel-notes.md" in last[0], last[0][:2000]

    # Reopened, the attachment and the sources are still shown.
    page.reload()
    expect(chat).to_contain_text("Attached: kestrel-notes.md", timeout=30_000)
    expect(chat).to_contain_text("[1] kestrel-notes.md")
