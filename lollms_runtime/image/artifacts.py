"""PNG artifacts: encoding pixels, saving images with their parameters as PNG text, reading them."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..backends.base import GeneratedImage

# The PNG text keys written for each parameter; values are strings (JSON for non-strings).
METADATA_KEYS = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance",
    "model",
    "width",
    "height",
    "backend",
)


def encode_png(pixels: Any) -> bytes:
    """PNG bytes of an HxWx3 uint8 array (deterministic: same pixels, same bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def save_png(image: GeneratedImage, folder: Path, stem: str) -> Path:
    """Write ``folder/stem.png`` (``stem-1.png``… if taken) with the parameters as PNG text."""
    from PIL import Image, PngImagePlugin

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    counter = 1
    while path.exists():
        path = folder / f"{stem}-{counter}.png"
        counter += 1
    info = PngImagePlugin.PngInfo()
    params: dict[str, Any] = {"width": image.width, "height": image.height, **image.params}
    for key, value in params.items():
        if value is not None:
            info.add_itxt(f"lollms:{key}", _text(value))
    # One JSON chunk with everything, and an A1111-style "parameters" line other tools understand.
    info.add_itxt("lollms:params", json.dumps(params, sort_keys=True))
    info.add_itxt("parameters", _a1111_parameters(params))
    with Image.open(io.BytesIO(image.png)) as source:
        source.load()
        source.save(path, format="PNG", pnginfo=info)
    return path


def read_png_params(path: Path) -> dict[str, Any]:
    """The parameters :func:`save_png` wrote into ``path`` (an empty dict for a foreign PNG)."""
    from PIL import Image

    with Image.open(path) as image:
        text: Mapping[str, Any] = getattr(image, "text", {}) or {}
        raw = text.get("lollms:params")
    if not raw:
        return {}
    data = json.loads(raw)
    return data if isinstance(data, dict) else {}


def _a1111_parameters(params: Mapping[str, Any]) -> str:
    lines = [str(params.get("prompt", ""))]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    fields = [
        ("Steps", params.get("steps")),
        ("CFG scale", params.get("guidance")),
        ("Seed", params.get("seed")),
        ("Size", f"{params.get('width')}x{params.get('height')}"),
        ("Model", params.get("model")),
    ]
    lines.append(", ".join(f"{name}: {value}" for name, value in fields if value is not None))
    return "\n".join(lines)
