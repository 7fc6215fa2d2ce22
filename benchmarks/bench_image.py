"""Seconds per denoising step of mlx-diffusion: the tiny test model, and a real cached one.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/bench_image.py [--model ID] [--size 512]

A step's cost is isolated from text encoding and VAE decoding by timing two runs that differ only
in their step count: (t(long) - t(short)) / (long - short).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lollms_runtime.backends.base import BackendUnavailable, ImageRequest
from lollms_runtime.image import list_local_image_models
from lollms_runtime.image.mlx_backend import MLXDiffusionBackend
from lollms_runtime.image.tiny import build_tiny_model


def seconds_per_step(
    backend: MLXDiffusionBackend, size: int, short: int, long: int, repeats: int, guidance: float
) -> tuple[float, float]:
    """(seconds per step, seconds of fixed cost: encode + decode + PNG) for one image."""

    def run(steps: int) -> float:
        request = ImageRequest(
            "a lighthouse on a cliff at dawn, oil painting",
            width=size,
            height=size,
            steps=steps,
            seed=0,
            guidance=guidance,
        )
        started = time.perf_counter()
        backend.generate(request)
        return time.perf_counter() - started

    run(short)  # warm-up: loads weights, compiles kernels
    t_short = statistics.median(run(short) for _ in range(repeats))
    t_long = statistics.median(run(long) for _ in range(repeats))
    per_step = (t_long - t_short) / (long - short)
    return per_step, t_short - short * per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a cached image model id or folder (default: first found)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(Path(tmp) / "tiny-sd")
        for guidance in (0.0, 7.5):
            backend = MLXDiffusionBackend(model_id=str(folder))
            per_step, fixed = seconds_per_step(backend, 64, 2, 10, args.repeats, guidance)
            print(
                f"tiny model 64x64 guidance={guidance:<4}: {per_step * 1000:7.2f} ms/step, "
                f"fixed cost {fixed * 1000:.1f} ms ({backend.pipeline().dtype_name})"
            )

    model = args.model
    if model is None:
        found = list_local_image_models()
        if not found:
            print(
                "real model: skipped (no diffusion model cached; fetch one with "
                "`lollms models pull stabilityai/sd-turbo`, then run again)"
            )
            return
        model = found[0].id
    backend = MLXDiffusionBackend(model_id=model)
    try:
        backend.pipeline()
    except BackendUnavailable as exc:
        print(f"real model: skipped ({exc})")
        return
    guidance = 0.0 if "turbo" in model.lower() else 7.5
    per_step, fixed = seconds_per_step(backend, args.size, 1, 3, max(1, args.repeats - 2), guidance)
    print(
        f"{model} {args.size}x{args.size} guidance={guidance}: {per_step:.2f} s/step, "
        f"fixed cost {fixed:.2f} s ({backend.pipeline().dtype_name})"
    )


if __name__ == "__main__":
    main()
