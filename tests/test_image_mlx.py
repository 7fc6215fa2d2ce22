"""The MLX diffusion backend on a tiny random model in the diffusers layout (real mlx, offline)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lollms_runtime.backends.base import BackendUnavailable, ImageBackend, ImageRequest
from lollms_runtime.image import list_local_image_models, read_png_params, save_png
from lollms_runtime.image.mlx_backend import MLXDiffusionBackend, create_mlx_diffusion
from lollms_runtime.image.models import needed_files, resolve_image_model
from lollms_runtime.image.tiny import build_tiny_model
from lollms_runtime.image.tokenizer import ClipTokenizer


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_xl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", xl=True)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOLLMS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOLLMS_MODELS_DIR", str(tmp_path / "home" / "models"))
    return tmp_path / "home"


def paint(model: Path, **fields: object) -> list[bytes]:
    backend = create_mlx_diffusion(str(model))
    request = ImageRequest(
        **{"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, **fields}
    )
    return [image.png for image in backend.generate(request)]


def png_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return image.size


def test_backend_satisfies_the_protocol(tiny_model: Path) -> None:
    backend = create_mlx_diffusion(str(tiny_model))
    assert isinstance(backend, ImageBackend)
    assert backend.name == "mlx-diffusion"


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_model: Path, home: Path) -> None:
    first = paint(tiny_model, seed=7)
    again = paint(tiny_model, seed=7)
    other = paint(tiny_model, seed=8)
    assert first == again
    assert first != other
    assert png_size(first[0]) == (64, 64)


def test_size_is_honoured_and_rounded_to_what_the_networks_accept(tiny_model: Path) -> None:
    backend = create_mlx_diffusion(str(tiny_model))
    [image] = backend.generate(ImageRequest("a dog", width=96, height=48, steps=1, seed=1))
    assert (image.width, image.height) == (96, 48) == png_size(image.png)
    # The tiny model downsamples 16x in all (VAE 8x, UNet 2x): 70 rounds to 64.
    [rounded] = backend.generate(ImageRequest("a dog", width=70, height=40, steps=1, seed=1))
    assert (rounded.width, rounded.height) == (64, 48) == png_size(rounded.png)


def test_count_paints_each_image_as_if_alone_with_its_own_seed(tiny_model: Path) -> None:
    backend = create_mlx_diffusion(str(tiny_model))
    batch = backend.generate(ImageRequest("a cat", width=64, height=64, steps=2, seed=3, count=3))
    assert [image.params["seed"] for image in batch] == [3, 4, 5]
    assert len({image.png for image in batch}) == 3
    [alone] = backend.generate(ImageRequest("a cat", width=64, height=64, steps=2, seed=4))
    # The same picture: a batch of 3 and a batch of 1 run matrix products of other shapes, whose
    # float rounding may differ in the last bit (and a pixel by one level); another seed's
    # picture is nowhere near.
    assert _pixel_gap(alone.png, batch[1].png) <= 2
    assert _pixel_gap(alone.png, batch[0].png) > 20


def test_progress_reports_every_denoising_step(tiny_model: Path) -> None:
    events: list[tuple[int, int]] = []
    backend = create_mlx_diffusion(str(tiny_model))
    backend.generate(
        ImageRequest("sky", width=64, height=64, steps=3, seed=1),
        progress=lambda s, t: events.append((s, t)),
    )
    assert events == [(1, 3), (2, 3), (3, 3)]


def test_cancel_stops_between_steps_and_paints_nothing(tiny_model: Path) -> None:
    cancel = threading.Event()
    events: list[int] = []

    def progress(step: int, total: int) -> None:
        events.append(step)
        cancel.set()

    backend = create_mlx_diffusion(str(tiny_model))
    images = backend.generate(
        ImageRequest("sky", width=64, height=64, steps=4, seed=1), progress=progress, cancel=cancel
    )
    assert images == []
    assert events == [1]


def test_negative_prompt_and_guidance_steer_the_image(tiny_model: Path) -> None:
    guided = paint(tiny_model, seed=5, guidance=7.5)
    negative = paint(tiny_model, seed=5, guidance=7.5, negative_prompt="blue tree")
    unguided = paint(tiny_model, seed=5, guidance=0.0)
    unguided_negative = paint(tiny_model, seed=5, guidance=0.0, negative_prompt="blue tree")
    assert guided != negative  # the negative prompt is the unconditional branch of CFG
    assert guided != unguided
    assert unguided == unguided_negative  # without guidance there is no negative branch


def test_distilled_models_ignore_guidance(tiny_model: Path) -> None:
    backend = MLXDiffusionBackend(model_id=str(tiny_model), distilled=True)
    request = ImageRequest("sun", width=64, height=64, steps=1, seed=2, guidance=9.0)
    [image] = backend.generate(request)
    assert image.params["guidance"] == 0.0
    assert image.png == paint(tiny_model, prompt="sun", seed=2, steps=1, guidance=0.0)[0]


def test_model_is_loaded_once_and_shared(tiny_model: Path) -> None:
    first = create_mlx_diffusion(str(tiny_model)).pipeline()
    second = create_mlx_diffusion(str(tiny_model)).pipeline()
    assert first is second
    assert first.dtype_name == "float32"  # on CPU


def test_sdxl_layout_with_two_text_encoders(tiny_xl: Path) -> None:
    backend = create_mlx_diffusion(str(tiny_xl))
    assert backend.pipeline().kind == "sdxl"
    request = ImageRequest(
        "a blue tree", negative_prompt="red", width=64, height=64, steps=2, seed=9
    )
    first = backend.generate(request)
    assert first[0].png == backend.generate(request)[0].png
    assert png_size(first[0].png) == (64, 64)


def test_png_metadata_round_trip(tiny_model: Path, tmp_path: Path) -> None:
    backend = create_mlx_diffusion(str(tiny_model))
    request = ImageRequest(
        "a red cat", negative_prompt="dog", width=64, height=48, steps=2, seed=11
    )
    [image] = backend.generate(request)
    path = save_png(image, tmp_path / "discussion", "artwork")
    assert path == tmp_path / "discussion" / "artwork.png"
    params = read_png_params(path)
    assert params["prompt"] == "a red cat"
    assert params["negative_prompt"] == "dog"
    assert (params["seed"], params["steps"], params["guidance"]) == (11, 2, 7.5)
    assert params["model"] == str(tiny_model)
    assert (params["width"], params["height"]) == (64, 48)
    from PIL import Image

    with Image.open(path) as saved:
        assert saved.size == (64, 48)
        assert saved.text["parameters"].startswith("a red cat\nNegative prompt: dog\nSteps: 2")
    # A second image with the same stem never overwrites the first.
    assert save_png(image, tmp_path / "discussion", "artwork").name == "artwork-1.png"


def test_tokenizer_pads_truncates_and_accepts_any_text(tiny_model: Path) -> None:
    tokenizer = ClipTokenizer.from_folder(tiny_model / "tokenizer")
    ids = tokenizer.encode("A red cat — «très» 🎨 under the sky", 77)
    assert len(ids) == 77
    assert ids[0] == tokenizer.bos_id
    assert tokenizer.vocab["cat</w>"] in ids
    long = tokenizer.encode("cat " * 200, 77)
    assert len(long) == 77 and long[-1] == tokenizer.eos_id


def test_no_weights_offline_says_what_to_run(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    backend = create_mlx_diffusion("stabilityai/sd-turbo")
    with pytest.raises(BackendUnavailable) as caught:
        backend.generate(ImageRequest("a cat"))
    message = str(caught.value)
    assert "image model stabilityai/sd-turbo" in message
    assert "Fetch it once with: lollms models pull stabilityai/sd-turbo" in message


def test_missing_folder_and_incomplete_model_are_explained(tmp_path: Path, home: Path) -> None:
    with pytest.raises(BackendUnavailable, match="does not exist"):
        resolve_image_model(str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    (broken / "unet").mkdir(parents=True)
    for part in ("unet", "vae", "text_encoder"):
        (broken / part).mkdir(exist_ok=True)
        (broken / part / "config.json").write_text("{}")
    with pytest.raises(BackendUnavailable, match=r"incomplete \(missing .*unet/diffusion"):
        resolve_image_model(str(broken))


def test_models_dir_and_hf_cache_are_listed_and_resolved(
    tiny_model: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from huggingface_hub import constants

    shutil.copytree(tiny_model, home / "models" / "acme--tiny-painter")
    cache = tmp_path / "hf-cache"
    repo = cache / "models--acme--cached-painter"
    shutil.copytree(tiny_model, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    found = {info.id: info for info in list_local_image_models()}
    assert found["acme/tiny-painter"].source == "models-dir"
    assert found["acme/tiny-painter"].size_bytes > 0
    assert resolve_image_model("acme/tiny-painter") == home / "models" / "acme--tiny-painter"
    assert resolve_image_model("acme/cached-painter") == repo / "snapshots" / ("0" * 40)
    assert paint(Path("acme/cached-painter"), seed=1, steps=1)  # loads from the cache by id


def test_pull_selects_only_needed_files_preferring_fp16() -> None:
    files = [
        "model_index.json",
        "README.md",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/pytorch_model.bin",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "sd_turbo.safetensors",
    ]
    wanted = needed_files("acme/painter", files)
    assert "text_encoder/model.fp16.safetensors" in wanted
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in wanted
    assert "vae/diffusion_pytorch_model.safetensors" in wanted
    assert not {"README.md", "sd_turbo.safetensors", "text_encoder/pytorch_model.bin"} & set(wanted)
    assert "unet/diffusion_pytorch_model.safetensors" not in wanted
    bin_only = [f for f in files if not f.startswith("unet/diffusion")] + ["unet/model.bin"]
    with pytest.raises(BackendUnavailable, match="no safetensors weights for unet"):
        needed_files("acme/painter", bin_only)


def test_plugin_registers_the_painters() -> None:
    from lollms_runtime.default_plugins import image_backends
    from lollms_runtime.plugins import PluginHost, get_plugin_manager

    pm = get_plugin_manager(load_entry_points=False)
    if not pm.is_registered(image_backends):
        pm.register(image_backends, name="lollms_runtime.default_plugins.image_backends")
    host = PluginHost(pm)
    assert {"mlx-diffusion", "a1111", "openai-images"} <= set(host.image_backends)
    assert not host.failures
    with pytest.raises(ValueError, match="does not take option"):
        host.image_backends["mlx-diffusion"].create("x", colour="red")


def test_importing_the_plugin_and_package_stays_light() -> None:
    code = (
        "import sys, lollms_runtime.default_plugins.image_backends, lollms_runtime.image, "
        "lollms_runtime.image.remote, lollms_runtime.image.mlx_backend; "
        "print(json.dumps(sorted(m for m in ('mlx', 'PIL', 'numpy', 'huggingface_hub', "
        "'diffuse_mlx', 'transformers') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == []


def _pixel_gap(a: bytes, b: bytes) -> int:
    """The largest difference between two PNGs' pixel values (0..255)."""
    import io

    import numpy as np
    from PIL import Image

    first = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.int16)
    second = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.int16)
    return int(np.abs(first - second).max())
