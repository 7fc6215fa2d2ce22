"""The app's shared state without a browser: sidebar groups and dates, the model a page may
choose (and that one tab's model never changes another's), importing the same file twice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from app_helpers import PERSONALITIES

from lollms_runtime.app.state import App, group_of, when_label, with_addition
from lollms_runtime.errors import LollmsError
from lollms_runtime.runtime import Runtime
from lollms_runtime.store import Store
from lollms_runtime.testing import ScriptedTextBackend

TODAY = dt.date(2026, 12, 1)


def _at(day: dt.date, hour: int = 14) -> float:
    return dt.datetime(day.year, day.month, day.day, hour, 5).timestamp()


def test_sidebar_groups_and_dates() -> None:
    assert group_of(_at(TODAY), TODAY) == "Today"
    assert group_of(_at(TODAY - dt.timedelta(days=1)), TODAY) == "Yesterday"
    assert group_of(_at(TODAY - dt.timedelta(days=9)), TODAY) == "Earlier"
    assert when_label(_at(TODAY), TODAY) == "14:05"
    assert when_label(_at(dt.date(2026, 11, 3)), TODAY) == "3 Nov"
    assert when_label(_at(dt.date(2025, 11, 3)), TODAY) == "3 Nov 2025"


def _app(tmp_path: Path, any_model: bool = False) -> tuple[App, dict[str, ScriptedTextBackend]]:
    runtime = Runtime(personalities=[PERSONALITIES])
    backends = {name: ScriptedTextBackend() for name in ("default", "other")}
    runtime.text_backend = lambda personality=None, model=None: backends[model or "default"]  # type: ignore[method-assign]
    from lollms_runtime.engine import Engine

    runtime.engine = Engine(
        runtime.host, runtime.text_backend, None, resolve_personality=runtime.catalog.get
    )
    app = App(runtime, Store(tmp_path / "d.sqlite3"), models=["other"], any_model=any_model)
    return app, backends


def test_a_model_per_tab_from_the_servers_models(tmp_path: Path) -> None:
    app, backends = _app(tmp_path)
    assert app.models == ["default", "other"]
    with pytest.raises(LollmsError, match="lollms serve --any-model"):
        app.service_for("nobody/no-such-model")
    personality = app.personalities["assistant"]
    backends["other"].enqueue("from other")
    backends["default"].enqueue("from default")
    other = list(app.service_for("other").send(personality, "hi"))
    default = list(app.service_for(None).send(personality, "hi"))
    assert "from other" in repr(other) and "from default" in repr(default)
    # The server's model is untouched, and each discussion records the model it ran on.
    assert app.runtime.model == "default"
    models = {d.model for d in app.service.discussions()}
    assert models == {"default", "other"}
    assert _app(tmp_path / "any", any_model=True)[0].check_model("nobody/x") == "nobody/x"


def test_the_model_box_names_the_embedded_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from lollms_runtime.mlx.gguf_convert import converted_folder
    from lollms_runtime.mlx.models import embedded_gguf

    monkeypatch.setenv("LOLLMS_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    conversion = converted_folder(embedded_gguf())  # what the first turn leaves on disk
    conversion.mkdir(parents=True)
    (conversion / "config.json").write_text("{}")
    (conversion / "model.safetensors").write_bytes(b"\0" * 10)
    app = App(Runtime(personalities=[PERSONALITIES]), Store(tmp_path / "d.sqlite3"))
    assert app.models == ["default"]  # its conversion folder is the same model
    assert app.model_labels == {"default": "default (SmolLM2-135M-Instruct.Q4_1, embedded)"}


def test_same_file_imported_twice_is_found(tmp_path: Path) -> None:
    app, backends = _app(tmp_path)
    backends["default"].enqueue("Hello.")
    turn = app.service.send(app.personalities["assistant"], "hi")
    list(turn)
    assert turn.discussion_id is not None
    data = app.service.export_json(turn.discussion_id)
    assert app.same_import(data) is not None  # the original itself
    app.service.delete(turn.discussion_id)
    assert app.same_import(data) is None
    app.service.import_json(data)
    assert app.same_import(data) is not None


def test_system_prompt_addition_goes_after_the_conditioning(tmp_path: Path) -> None:
    app, backends = _app(tmp_path)
    p = app.personalities["assistant"]
    assert with_addition(p, "  ") is p
    assert with_addition(p, "Answer in French.").conditioning.endswith("\n\nAnswer in French.")
    backends["default"].enqueue("Bonjour.")
    list(app.service.send(with_addition(p, "Answer in French."), "hi"))
    system = backends["default"].history[-1].messages[0]
    assert (system.role, system.content) == ("system", f"{p.conditioning}\n\nAnswer in French.")
