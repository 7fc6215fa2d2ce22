"""Hugging Face model specs and the choice of one GGUF file among a repo's quantizations."""

from __future__ import annotations

from pathlib import Path

import pytest

from lollms_runtime.backends.base import BackendUnavailable
from lollms_runtime.mlx.hub import (
    HubSpec,
    download_hub_model,
    is_mlx_repo,
    parse_hub_spec,
    pick_gguf,
    quant_tag,
)

BARTOWSKI = [
    ".gitattributes",
    "README.md",
    "SmolLM2-135M-Instruct-f16.gguf",
    "SmolLM2-135M-Instruct-IQ4_XS.gguf",
    "SmolLM2-135M-Instruct-Q3_K_L.gguf",
    "SmolLM2-135M-Instruct-Q4_K_M.gguf",
    "SmolLM2-135M-Instruct-Q5_K_M.gguf",
    "SmolLM2-135M-Instruct-Q6_K.gguf",
    "SmolLM2-135M-Instruct-Q8_0.gguf",
]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("acme/tiny", HubSpec("acme/tiny")),
        ("acme/tiny-GGUF:Q8_0", HubSpec("acme/tiny-GGUF", quant="Q8_0")),
        ("acme/tiny-GGUF/tiny.Q4_1.gguf", HubSpec("acme/tiny-GGUF", filename="tiny.Q4_1.gguf")),
        ("acme/tiny-GGUF/q8/tiny.gguf", HubSpec("acme/tiny-GGUF", filename="q8/tiny.gguf")),
        ("acme/tiny/weights.bin", None),  # only .gguf files can be named
        ("acme/tiny/x.gguf:Q8_0", None),
        ("acme/tiny:", None),
        ("tiny:Q8_0", None),
        ("default", None),
        ("./acme/tiny", None),
        ("~/acme/tiny", None),
        ("acme//tiny", None),
    ],
)
def test_specs_split_into_repo_quant_and_file(spec: str, parsed: HubSpec | None) -> None:
    assert parse_hub_spec(spec) == parsed


def test_quant_tags_come_from_the_file_name() -> None:
    assert quant_tag("qwen2.5-0.5b-instruct-q4_k_m.gguf") == "Q4_K_M"
    assert quant_tag("SmolLM2-135M-Instruct.Q4_1.gguf") == "Q4_1"
    assert quant_tag("sub/Model-UD-IQ2_XXS.gguf") == "IQ2_XXS"
    assert quant_tag("model-Q8_0-00001-of-00002.gguf") == "Q8_0"
    assert quant_tag("model.gguf") is None


def test_auto_pick_prefers_q4_k_m_then_what_mlx_reads_natively() -> None:
    assert pick_gguf(BARTOWSKI) == "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert pick_gguf([*BARTOWSKI, "SmolLM2-135M-Instruct-Q4_0.gguf"]).endswith("-Q4_K_M.gguf")
    without_4bit_k = [f for f in BARTOWSKI if "Q4_K" not in f]
    assert pick_gguf(without_4bit_k) == "SmolLM2-135M-Instruct-Q5_K_M.gguf"
    assert pick_gguf(["m-Q8_0.gguf", "m-Q4_0.gguf", "m-f16.gguf"]) == "m-Q4_0.gguf"
    assert pick_gguf(["m-f16.gguf", "m-IQ4_XS.gguf"]) == "m-IQ4_XS.gguf"  # else by name


def test_auto_pick_skips_vision_projectors_and_shards() -> None:
    files = [
        "mmproj-model-Q4_0.gguf",
        "model-Q4_0-00001-of-00002.gguf",
        "model-Q4_0-00002-of-00002.gguf",
        "model-Q6_K.gguf",
    ]
    assert pick_gguf(files) == "model-Q6_K.gguf"


def test_quant_is_matched_case_insensitively() -> None:
    assert pick_gguf(BARTOWSKI, "q6_k") == "SmolLM2-135M-Instruct-Q6_K.gguf"
    assert pick_gguf(BARTOWSKI, "F16") == "SmolLM2-135M-Instruct-f16.gguf"
    with pytest.raises(BackendUnavailable, match="no Q4_K GGUF"):
        pick_gguf(BARTOWSKI, "Q4_K")  # a tag is matched whole, not as a prefix of Q4_K_M


def test_unknown_quant_lists_the_available_ones() -> None:
    with pytest.raises(BackendUnavailable) as info:
        pick_gguf(BARTOWSKI, "Q2_K", "bartowski/SmolLM2-135M-Instruct-GGUF")
    assert str(info.value) == (
        "bartowski/SmolLM2-135M-Instruct-GGUF has no Q2_K GGUF file; available quantizations: "
        "F16, IQ4_XS, Q3_K_L, Q4_K_M, Q5_K_M, Q6_K, Q8_0 "
        "(pick one with bartowski/SmolLM2-135M-Instruct-GGUF:QUANT)"
    )


def test_split_only_repos_are_refused_with_a_hint() -> None:
    shards = [f"big-{q}-0000{i}-of-00002.gguf" for q in ("Q4_K_M", "Q8_0") for i in (1, 2)]
    for quant in (None, "Q8_0"):
        with pytest.raises(BackendUnavailable, match=r"split GGUF files .* are not supported yet"):
            pick_gguf(shards, quant, "acme/big")
    with pytest.raises(BackendUnavailable, match=r"acme/big:QUANT \(available: Q4_K_M \(split\)"):
        pick_gguf(shards, None, "acme/big")


def test_repo_without_models_says_so() -> None:
    with pytest.raises(BackendUnavailable, match="neither an MLX model"):
        pick_gguf(["README.md", "pytorch_model.bin"], None, "acme/old")


def test_mlx_repos_need_config_and_safetensors() -> None:
    assert is_mlx_repo(["config.json", "model.safetensors", "model-Q8_0.gguf"])
    assert not is_mlx_repo(["config.json", "model-Q8_0.gguf"])


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry laid out as hf_hub_download leaves it (refs/main -> snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    for name, body in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(body)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_offline_picks_among_the_cached_files(offline_cache: Path) -> None:
    snapshot = cache_repo(offline_cache, "acme/tiny-GGUF", {"tiny-Q6_K.gguf": b"q6"})
    assert download_hub_model("acme/tiny-GGUF") == snapshot / "tiny-Q6_K.gguf"
    assert download_hub_model("acme/tiny-GGUF:q6_k") == snapshot / "tiny-Q6_K.gguf"
    assert download_hub_model("acme/tiny-GGUF/tiny-Q6_K.gguf") == snapshot / "tiny-Q6_K.gguf"
    for spec in ("acme/tiny-GGUF:Q8_0", "acme/tiny-GGUF/tiny-Q8_0.gguf", "acme/other-GGUF:Q8_0"):
        with pytest.raises(BackendUnavailable, match=f"`lollms models pull {spec}`"):
            download_hub_model(spec)


def test_offline_mlx_snapshot_wins_over_cached_gguf_files(offline_cache: Path) -> None:
    files = {"config.json": b"{}", "model.safetensors": b"w", "extra-Q8_0.gguf": b"q8"}
    snapshot = cache_repo(offline_cache, "acme/both", files)
    assert download_hub_model("acme/both") == snapshot
    assert download_hub_model("acme/both:Q8_0") == snapshot / "extra-Q8_0.gguf"
