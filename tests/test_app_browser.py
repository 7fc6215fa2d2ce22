"""The web app in headless Chromium: choose GPT for Art, chat, change a setting, restart, find
the discussion again. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`lollms serve` in a subprocess on a loopback port, with its own LOLLMS_HOME."""

    def __init__(self, home: Path, log: Path) -> None:
        self.home, self.log = home, log
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        env = {**os.environ, "LOLLMS_HOME": str(self.home), "HF_HUB_OFFLINE": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "app_server.py"), str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"the server did not answer: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "home", tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_chat_setting_and_restart(server: Server, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    SHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server.url)
    chat = page.locator("#chat")
    expect(page.locator("#personality")).to_be_visible(timeout=30_000)

    # Choose GPT for Art from the personality cards.
    page.locator("#personalities .thumbnail-item").first.click()
    expect(page.locator("#header")).to_contain_text("GPT for Art")
    expect(chat).to_contain_text("Tell me what to imagine")
    page.screenshot(path=str(SHOTS / "1-chosen.png"))

    # Send the example prompt; the answer streams and the trace shows each step.
    page.locator("#prompt textarea").fill("Imagine something cool.")
    page.get_by_role("button", name="Send").click()
    # While the generate step runs, the chat keeps changing as tokens arrive.
    during: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        text = chat.inner_text()
        if "post_process" in text:
            break
        if "Imagine the artwork" in text:
            during.add(text)
        time.sleep(0.05)
    assert len(during) >= 2, f"no streaming seen: {during}"
    expect(chat).to_contain_text("condition · Paint it?", timeout=120_000)
    expect(chat).to_contain_text("=> then", timeout=120_000)
    expect(chat).to_contain_text("reply", timeout=120_000)
    expect(page.locator("#discussions")).to_contain_text("Imagine something cool.")
    page.screenshot(path=str(SHOTS / "2-answer.png"))

    # Turn painting off: the next answer's trace takes the condition's else branch.
    page.get_by_label("Paint the description").uncheck()
    page.locator("#prompt textarea").fill("Add some street art to the scene.")
    page.get_by_role("button", name="Send").click()
    expect(chat).to_contain_text("=> else", timeout=120_000)
    expect(chat.get_by_text("text_to_image · Paint the description")).to_have_count(1)
    page.screenshot(path=str(SHOTS / "3-no-painting.png"))

    # Regenerate: the old answer is kept, and the arrows switch between the two versions.
    answers = page.locator("#versions-assistant")
    expect(answers).to_be_hidden()
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator("#versions-assistant-label")).to_contain_text("Answer 2/2", timeout=120_000)
    answers.get_by_role("button", name="◀").click()
    expect(page.locator("#versions-assistant-label")).to_contain_text("Answer 1/2")
    page.screenshot(path=str(SHOTS / "3b-versions.png"))

    # Continue: the shown answer grows in place, one more generate step in its trace.
    page.get_by_role("button", name="Continue").click()
    expect(chat).to_contain_text("generate · answer", timeout=120_000)
    expect(chat.get_by_text("running")).to_have_count(0, timeout=120_000)
    expect(page.locator("#versions-assistant-label")).to_contain_text("Answer 1/2")
    page.screenshot(path=str(SHOTS / "3c-continued.png"))

    # Restart the server: the discussion is in the sidebar and opens again.
    server.stop()
    server.start()
    page.goto(server.url)
    sidebar = page.locator("#discussions")
    expect(sidebar).to_contain_text("Imagine something cool.", timeout=30_000)
    sidebar.get_by_text("Imagine something cool.").click()
    expect(chat).to_contain_text("Add some street art to the scene.", timeout=30_000)
    expect(page.get_by_label("Paint the description")).not_to_be_checked()
    page.screenshot(path=str(SHOTS / "4-after-restart.png"))
