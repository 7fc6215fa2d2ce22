"""One broken personality never takes the app down: the others are served, the broken one is
listed on the page with its located error."""

from __future__ import annotations

from pathlib import Path

from lollms_runtime.app.state import App
from lollms_runtime.app.ui import _broken_text
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_broken_personalities_are_listed_not_served(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    (extra / "tagged").mkdir(parents=True)
    (extra / "tagged" / "personality.yaml").write_text("schema: 1\nid: tagged\nname: !foo x\n")
    (extra / "filter").mkdir()
    (extra / "filter" / "personality.yaml").write_text(
        "schema: 1\nid: filtered\nname: F\npipeline:\n  - generate: {prompt: '{{ message | nope }}'}\n"
    )
    runtime = Runtime(personalities=[ROOT / "personalities", extra])
    store = Store(tmp_path / "d.sqlite3")
    try:
        app = App(runtime, store)
        assert "assistant" in app.personalities
        assert "filtered" not in app.personalities and "tagged" not in app.personalities
        assert "filtered" in app.broken and "unknown filter 'nope'" in app.broken["filtered"]
        tagged = next(k for k in app.broken if k.endswith("personality.yaml"))
        assert app.broken[tagged].startswith("3:7: name: unknown YAML tag '!foo'")
        text = _broken_text(app.broken)
        assert "**filtered**" in text and "**tagged**" in text
    finally:
        store.close()
