"""Whether each built-in painter can paint now, found without painting: the weights on disk for
``mlx-diffusion``, a server that answers (within a short timeout) for the HTTP painters.

Each check returns None when the painter is ready, else what is missing and how to fix it, in a few
words (a front end shows it beside the painter's name). Nothing here downloads or loads weights.
"""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request

from ..backends.base import BackendUnavailable
from .models import DEFAULT_IMAGE_MODEL, pull_command, resolve_image_model
from .remote import a1111_endpoint, openai_images_endpoint

PROBE_TIMEOUT_S = 1.5  # a painter that takes longer to say hello is not ready for a user either


def mlx_diffusion_ready(model: str | None = None) -> str | None:
    """Ready when MLX is installed and ``model``'s weights are in the Hugging Face cache or the
    models folder (looked up on disk only)."""
    try:
        has_mlx = importlib.util.find_spec("mlx.core") is not None
    except (ImportError, ValueError):
        has_mlx = False
    if not has_mlx:
        return "not ready: needs MLX (`pip install mlx`)"
    model_id = model or DEFAULT_IMAGE_MODEL
    try:
        resolve_image_model(model_id, allow_download=False)
    except BackendUnavailable as exc:
        message = str(exc)
        if "does not exist" in message or "Point to" in message:
            return f"not ready: {model_id} is not a complete diffusers folder"
        return f"not ready: `{pull_command(model_id)}`"
    return None


def a1111_ready(model: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Ready when an AUTOMATIC1111 / Forge API answers where the a1111 painter would call it
    (``LOLLMS_A1111_URL``, default: the local port it starts on)."""
    base, headers, configured = a1111_endpoint({})
    base = base.rstrip("/")
    status = probe(f"{base}/sdapi/v1/samplers", headers, timeout)
    if status is None:
        if not configured:
            return "not configured (LOLLMS_A1111_URL)"
        return f"not reachable at {base}"
    if status == 404:
        return f"answers at {base} without its API: start it with --api"
    if status in (401, 403):
        return "refused: check LOLLMS_A1111_AUTH"
    return None if status < 400 else f"answers HTTP {status} at {base}"


def openai_images_ready(model: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Ready when an OpenAI-compatible server answers at ``LOLLMS_OPENAI_IMAGE_URL`` (a local one)
    or a key is set for api.openai.com, and the server accepts it."""
    base, headers, configured = openai_images_endpoint({})
    if not configured:
        return "not configured (OPENAI_API_KEY or LOLLMS_OPENAI_IMAGE_URL)"
    base = base.rstrip("/")
    status = probe(f"{base}/models", headers, timeout)
    if status is None:
        return f"not reachable at {base}"
    if status in (401, 403):
        return "refused the key: check LOLLMS_OPENAI_IMAGE_KEY / OPENAI_API_KEY"
    # A server without a model list (404) may still paint: only a refusal says it cannot.
    return None if status < 500 else f"answers HTTP {status} at {base}"


def probe(url: str, headers: dict[str, str], timeout: float) -> int | None:
    """The HTTP status ``url`` answers a GET with, or None when nothing answers in ``timeout``."""
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):  # refused, timed out, no such host, a malformed URL
        return None
