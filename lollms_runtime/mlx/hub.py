"""Hugging Face model specs: ``ORG/NAME``, ``ORG/NAME:QUANT`` and ``ORG/NAME/FILE.gguf``.

An MLX repo (config.json + safetensors) is downloaded as a folder; a GGUF repo gets one file,
the quantization asked for or the one MLX reads best, never every quantization it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..backends.base import BackendUnavailable

# What a model folder needs; weights in other formats (pytorch .bin) are not usable by mlx-lm.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
# Ollama's and LM Studio's default first: Q4_K/Q5_K blocks convert to MLX 4/5-bit arrays holding
# the same values (gguf_convert), and beat Q4_0 at the same size; then what mx.load reads as is.
PREFERRED_QUANTS = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q4_1", "Q8_0", "Q6_K")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_QUANT_TOKEN = re.compile(r"^(?:i?q\d+(?:_[a-z0-9]+)*|bf16|fp16|f16|f32)$", re.IGNORECASE)


@dataclass(frozen=True)
class HubSpec:
    """A Hugging Face model spec split into repo, quantization tag and exact file."""

    repo_id: str
    quant: str | None = None
    filename: str | None = None


def parse_hub_spec(spec: str) -> HubSpec | None:
    """The parts of ``spec``, or None when it is not a Hugging Face spec (a path, a bare name)."""
    if spec.startswith((".", "/", "~")) or "\\" in spec:
        return None
    base, colon, quant = spec.partition(":")
    parts = base.split("/")
    if len(parts) < 2 or not all(parts) or (colon and (not quant or len(parts) > 2)):
        return None
    filename = "/".join(parts[2:]) or None
    if filename is not None and not filename.lower().endswith(".gguf"):
        return None
    return HubSpec("/".join(parts[:2]), quant or None, filename)


def _tokens(filename: str) -> list[str]:
    name = _SPLIT.sub(".gguf", PurePosixPath(filename).name)
    return re.split(r"[-.]", name[: -len(".gguf")] if name.lower().endswith(".gguf") else name)


def quant_tag(filename: str) -> str | None:
    """The quantization named in a GGUF file name (``Q4_K_M``, ``F16``...), upper-cased."""
    tags = [t for t in _tokens(filename) if _QUANT_TOKEN.match(t)]
    return tags[-1].upper() if tags else None


def is_split(filename: str) -> bool:
    """Whether ``filename`` is one shard of a split GGUF (``-00001-of-00003.gguf``)."""
    return bool(_SPLIT.search(filename))


def is_mlx_repo(files: Iterable[str]) -> bool:
    """Whether a repo's file list holds an MLX / transformers model (config.json + safetensors)."""
    names = list(files)
    return "config.json" in names and any(n.endswith(".safetensors") for n in names)


def pick_gguf(files: Iterable[str], quant: str | None = None, repo_id: str = "the repo") -> str:
    """The GGUF file to fetch: the ``quant`` asked for, else the quantization MLX reads best."""
    ggufs = sorted(
        f
        for f in files
        if f.lower().endswith(".gguf") and "mmproj" not in PurePosixPath(f).name.lower()
    )
    if quant is not None:
        wanted = quant.lower()
        matching = [f for f in ggufs if wanted in (t.lower() for t in _tokens(f))]
        singles = [f for f in matching if not is_split(f)]
        if singles:
            return min(singles, key=lambda f: (f.count("/"), len(f), f))
        if matching:
            raise BackendUnavailable(_split_message(repo_id, ggufs))
        raise BackendUnavailable(
            f"{repo_id} has no {quant} GGUF file; available quantizations: "
            f"{available_quants(ggufs) or 'none'} (pick one with {repo_id}:QUANT)"
        )
    singles = [f for f in ggufs if not is_split(f)]
    if not singles:
        if ggufs:
            raise BackendUnavailable(_split_message(repo_id, ggufs))
        raise BackendUnavailable(
            f"{repo_id} holds neither an MLX model (config.json + .safetensors) nor .gguf files"
        )

    def rank(name: str) -> tuple[int, int, str]:
        tag = quant_tag(name) or ""
        order = PREFERRED_QUANTS.index(tag) if tag in PREFERRED_QUANTS else len(PREFERRED_QUANTS)
        return order, name.count("/"), name

    return min(singles, key=rank)


def available_quants(files: Iterable[str]) -> str:
    """The quantizations in a list of GGUF files, comma-separated; split ones are marked."""
    tags: dict[str, bool] = {}
    for name in files:
        tag = quant_tag(name) or PurePosixPath(name).name
        tags[tag] = tags.get(tag, False) or not is_split(name)
    return ", ".join(tag if single else f"{tag} (split)" for tag, single in sorted(tags.items()))


def _split_message(repo_id: str, ggufs: list[str]) -> str:
    return (
        f"{repo_id}: split GGUF files (-00001-of-0000N.gguf) are not supported yet; pick a "
        f"single-file quantization with {repo_id}:QUANT (available: {available_quants(ggufs)})"
    )


def _offline_message(spec: str) -> str:
    return (
        f"model {spec!r} is not downloaded and the Hugging Face hub is offline "
        f"(HF_HUB_OFFLINE=1 or no network); fetch it once with `lollms models pull {spec}`"
    )


def _missing_repo_message(repo_id: str) -> str:
    return (
        f"no model {repo_id!r} on the Hugging Face hub (check the spelling, or log in with "
        "`hf auth login` for a private or gated repo)"
    )


def download_hub_model(spec: str) -> Path:
    """A local path for a hub spec: an MLX snapshot folder or one .gguf file (downloaded once)."""
    hub = parse_hub_spec(spec)
    if hub is None:
        raise BackendUnavailable(
            f"{spec!r} is not a Hugging Face model: give ORG/NAME, ORG/NAME:QUANT "
            "or ORG/NAME/FILE.gguf"
        )
    if hub.filename is not None:
        return _download_file(hub.repo_id, hub.filename, spec)
    files = _remote_files(hub.repo_id)
    if files is None:  # offline: choose among what the cache holds
        cached = _cached_files(hub.repo_id)
        has_gguf = any(f.lower().endswith(".gguf") for f in cached)
        if hub.quant is None and (is_mlx_repo(cached) or not has_gguf):
            return _snapshot(hub.repo_id, spec)  # an MLX repo, or the "pull it" message
        try:
            name = pick_gguf(cached, hub.quant, hub.repo_id)
        except BackendUnavailable:
            raise BackendUnavailable(_offline_message(spec)) from None
        return _download_file(hub.repo_id, name, spec)
    if hub.quant is None and is_mlx_repo(files):
        return _snapshot(hub.repo_id, spec)
    return _download_file(hub.repo_id, pick_gguf(files, hub.quant, hub.repo_id), spec)


def _remote_files(repo_id: str) -> list[str] | None:
    """The repo's files on the hub, or None when the hub cannot be reached (offline)."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return HfApi().list_repo_files(repo_id)
    except RepositoryNotFoundError:
        raise BackendUnavailable(_missing_repo_message(repo_id)) from None
    except (OSError, httpx.HTTPError):  # offline mode, no network, hub errors: use the cache
        return None


def _cached_files(repo_id: str) -> list[str]:
    """The files of the repo's cached ``main`` snapshot (empty when nothing is cached)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    try:
        commit = (cache / "refs" / "main").read_text().strip()
    except OSError:
        return []
    snapshot = cache / "snapshots" / commit
    return [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]


def _snapshot(repo_id: str, spec: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except LocalEntryNotFoundError as exc:
        raise BackendUnavailable(_offline_message(spec)) from exc
    except RepositoryNotFoundError as exc:
        raise BackendUnavailable(_missing_repo_message(repo_id)) from exc


def _download_file(repo_id: str, filename: str, spec: str) -> Path:
    """One file of the repo, with hf_hub_download's progress bar; from the cache when offline."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id, filename))
    except LocalEntryNotFoundError as exc:
        raise BackendUnavailable(_offline_message(spec)) from exc
    except RepositoryNotFoundError as exc:
        raise BackendUnavailable(_missing_repo_message(repo_id)) from exc
    except EntryNotFoundError as exc:
        raise BackendUnavailable(
            f"{repo_id} has no file {filename!r}; give ORG/NAME:QUANT to pick a quantization"
        ) from exc
