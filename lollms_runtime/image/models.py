"""Finding diffusion models on disk (Hugging Face cache, ``$LOLLMS_HOME/models``), fetching them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..backends.base import BackendUnavailable
from ..home import models_dir

# SD-Turbo: SD 2.1 distilled to paint in 1-4 steps at 512x512; the one a laptop CPU can afford.
DEFAULT_IMAGE_MODEL = "stabilityai/sd-turbo"

# Components a text-to-image pipeline needs, with the weight file names diffusers writes.
_WEIGHTS = {
    "text_encoder": "model",
    "text_encoder_2": "model",
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
}
_REQUIRED_CONFIGS = ("unet/config.json", "vae/config.json", "text_encoder/config.json")
_SMALL_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "tokenizer_2/vocab.json",
    "tokenizer_2/merges.txt",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/special_tokens_map.json",
    "text_encoder/config.json",
    "text_encoder_2/config.json",
    "unet/config.json",
    "vae/config.json",
)


@dataclass(frozen=True)
class ImageModelInfo:
    """A diffusion model found on disk."""

    id: str
    path: Path
    size_bytes: int
    source: str  # "hf-cache" or "models-dir"
    kind: str = "image"


def pull_command(model_id: str) -> str:
    """The command a person runs to fetch ``model_id``."""
    return f"lollms models pull {model_id}"


def looks_like_diffusion_model(folder: Path) -> bool:
    """Whether ``folder`` holds a Stable Diffusion model in the diffusers layout."""
    return all((folder / name).is_file() for name in _REQUIRED_CONFIGS)


def weight_file(folder: Path, component: str) -> Path | None:
    """The safetensors file of ``component``: full precision first, then the fp16 variant."""
    stem = _WEIGHTS[component]
    for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors"):
        path = folder / component / name
        if path.is_file():
            return path
    return None


def missing_files(folder: Path) -> list[str]:
    """What a diffusers folder lacks before it can be loaded (empty when complete)."""
    missing = [name for name in _REQUIRED_CONFIGS if not (folder / name).is_file()]
    for name in ("scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"):
        if not (folder / name).is_file():
            missing.append(name)
    components = ["text_encoder", "unet", "vae"]
    if (folder / "text_encoder_2").is_dir():
        components.append("text_encoder_2")
        missing += [
            f"tokenizer_2/{n}"
            for n in ("vocab.json", "merges.txt")
            if not (folder / "tokenizer_2" / n).is_file()
        ]
    for component in components:
        if weight_file(folder, component) is None:
            missing.append(f"{component}/{_WEIGHTS[component]}.safetensors")
    return missing


def _local_folder_for(model: str) -> Path | None:
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return candidate
    if "/" in model and not model.startswith((".", "/", "~")):
        for name in (model.replace("/", "--"), model):
            folder = models_dir() / name
            if folder.is_dir():
                return folder
    return None


def resolve_image_model(model: str | None, *, allow_download: bool = False) -> Path:
    """The local folder of ``model`` (a folder path or a Hugging Face id), never downloading unless
    ``allow_download``; raises :class:`BackendUnavailable` saying what to run when it is missing."""
    model_id = model or DEFAULT_IMAGE_MODEL
    folder = _local_folder_for(model_id)
    if folder is None:
        if Path(model_id).expanduser().is_absolute() or model_id.startswith("."):
            raise BackendUnavailable(
                f"Image model folder {model_id} does not exist. Pass a folder in the diffusers "
                "layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a Hugging Face id."
            )
        folder = _hf_snapshot(model_id, allow_download=allow_download)
    missing = missing_files(folder)
    if missing:
        fix = (
            "Point to a complete diffusers folder."
            if Path(model_id).expanduser().is_dir()
            else f"Fetch it again with: {pull_command(model_id)}"
        )
        raise BackendUnavailable(
            f"Image model {model_id} at {folder} is incomplete (missing {', '.join(missing)}). "
            f"{fix}"
        )
    return folder


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hf_snapshot(model_id: str, *, allow_download: bool) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                model_id,
                allow_patterns=None if not allow_download else needed_files(model_id),
                local_files_only=not allow_download,
            )
        )
    except Exception as exc:  # LocalEntryNotFoundError, offline errors, bad ids: all "not here"
        raise BackendUnavailable(
            f"No weights for image model {model_id} in the Hugging Face cache "
            f"({_hf_cache_dir()}) or in {models_dir()}, and lollms does not download models "
            f"while painting. Fetch it once with: {pull_command(model_id)}"
        ) from exc


def needed_files(model_id: str, repo_files: Iterable[str] | None = None) -> list[str]:
    """The files of a diffusers repository a pipeline loads (configs, tokenizers, safetensors),
    preferring the half-size fp16 variant of each weight file when the repository has one."""
    if repo_files is None:
        from huggingface_hub import HfApi

        repo_files = HfApi().list_repo_files(model_id)
    available = set(repo_files)
    wanted = [name for name in _SMALL_FILES if name in available]
    for component, stem in _WEIGHTS.items():
        if f"{component}/config.json" not in available:
            continue
        for name in (f"{stem}.fp16.safetensors", f"{stem}.safetensors"):
            if f"{component}/{name}" in available:
                wanted.append(f"{component}/{name}")
                break
        else:
            raise BackendUnavailable(
                f"{model_id} has no safetensors weights for {component} (lollms does not load "
                "pickled PyTorch .bin files); choose a repository that ships safetensors."
            )
    if "unet/config.json" not in available:
        raise BackendUnavailable(
            f"{model_id} is not a Stable Diffusion model in the diffusers layout "
            "(no unet/config.json)."
        )
    return wanted


def pull_image_model(model_id: str) -> Path:
    """Download the files ``model_id`` needs into the Hugging Face cache, with a progress bar."""
    from huggingface_hub import snapshot_download

    files = needed_files(model_id)
    # snapshot_download draws tqdm bars per file and in total unless progress bars are disabled.
    os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    return Path(snapshot_download(model_id, allow_patterns=files))


def list_local_image_models() -> list[ImageModelInfo]:
    """Diffusion models available without network: the Hugging Face cache and ``models_dir()``."""
    found: list[ImageModelInfo] = []
    found.extend(_from_hf_cache())
    root = models_dir()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if looks_like_diffusion_model(folder):
            model_id = folder.name.replace("--", "/", 1)
            found.append(ImageModelInfo(model_id, folder, _folder_size(folder), "models-dir"))
    return found


def _from_hf_cache() -> list[ImageModelInfo]:
    from huggingface_hub import scan_cache_dir

    try:
        cache = scan_cache_dir()
    except Exception:  # no cache folder yet, or an unreadable one: nothing cached
        return []
    found: list[ImageModelInfo] = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            folder = Path(revision.snapshot_path)
            if looks_like_diffusion_model(folder):
                found.append(
                    ImageModelInfo(repo.repo_id, folder, revision.size_on_disk, "hf-cache")
                )
                break
    return found


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def model_kind(folder: Path) -> str:
    """``"sdxl"`` when the folder holds two text encoders, else ``"sd"``."""
    index = folder / "model_index.json"
    if index.is_file():
        name = str(json.loads(index.read_text(encoding="utf-8")).get("_class_name", ""))
        if "XL" in name:
            return "sdxl"
    return "sdxl" if (folder / "text_encoder_2" / "config.json").is_file() else "sd"
