"""Stable Diffusion (SD 1.x/2.x, SD-Turbo, SDXL, SDXL-Turbo) on MLX, loaded from a diffusers folder.

The networks (CLIP text encoder, UNet, VAE) and their weight-name maps come from
``diffuse-mlx``, the packaged copy of Apple's mlx-examples port. Its own loader only knows three
Hub ids and its seeding is global, so loading from any folder, tokenizing, sampling with per-image
keys, progress and cancellation live here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models import model_kind, weight_file
from .tokenizer import ClipTokenizer

StepCallback = Callable[[int, int], None]


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _per_block(value: Any, n_blocks: int) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value] * n_blocks


def _load_weights(model: Any, mapper: Any, path: Path, dtype: Any) -> None:
    import mlx.core as mx

    weights: dict[str, Any] = mx.load(str(path))  # type: ignore[assignment]
    pairs: list[tuple[str, Any]] = []
    for key, value in weights.items():
        if key.endswith("position_ids"):  # a buffer older transformers checkpoints saved
            continue
        pairs.extend(mapper(key, value.astype(dtype)))
    try:
        model.load_weights(pairs, strict=True)
    except ValueError as exc:
        raise ValueError(f"{path} does not fit its config.json: {exc}") from exc


def _load_unet(folder: Path, dtype: Any) -> tuple[Any, dict[str, Any]]:
    from diffuse_mlx.stable_diffusion import model_io  # type: ignore[import-untyped]
    from diffuse_mlx.stable_diffusion.config import UNetConfig  # type: ignore[import-untyped]
    from diffuse_mlx.stable_diffusion.unet import UNetModel  # type: ignore[import-untyped]

    config = _read_json(folder / "unet" / "config.json")
    n = len(config["block_out_channels"])
    # diffusers calls the head count "attention_head_dim" in SD configs; newer ones say it right.
    heads = config.get("num_attention_heads") or config["attention_head_dim"]
    model = UNetModel(
        UNetConfig(
            in_channels=config["in_channels"],
            out_channels=config["out_channels"],
            block_out_channels=config["block_out_channels"],
            layers_per_block=_per_block(config["layers_per_block"], n),
            transformer_layers_per_block=_per_block(
                config.get("transformer_layers_per_block", 1), n
            ),
            num_attention_heads=_per_block(heads, n),
            cross_attention_dim=_per_block(config["cross_attention_dim"], n),
            norm_num_groups=config.get("norm_num_groups", 32),
            down_block_types=config["down_block_types"],
            up_block_types=config["up_block_types"][::-1],
            addition_embed_type=config.get("addition_embed_type"),
            addition_time_embed_dim=config.get("addition_time_embed_dim"),
            projection_class_embeddings_input_dim=config.get(
                "projection_class_embeddings_input_dim"
            ),
        )
    )
    _load_weights(model, model_io.map_unet_weights, _weights(folder, "unet"), dtype)
    return model, config


def _load_text_encoder(folder: Path, component: str, dtype: Any) -> tuple[Any, int]:
    from diffuse_mlx.stable_diffusion import model_io
    from diffuse_mlx.stable_diffusion.clip import CLIPTextModel  # type: ignore[import-untyped]
    from diffuse_mlx.stable_diffusion.config import CLIPTextModelConfig  # type: ignore[import-untyped]

    config = _read_json(folder / component / "config.json")
    with_projection = "WithProjection" in (config.get("architectures") or [""])[0]
    model = CLIPTextModel(
        CLIPTextModelConfig(
            num_layers=config["num_hidden_layers"],
            model_dims=config["hidden_size"],
            num_heads=config["num_attention_heads"],
            max_length=config["max_position_embeddings"],
            vocab_size=config["vocab_size"],
            projection_dim=config["projection_dim"] if with_projection else None,
            hidden_act=config.get("hidden_act", "quick_gelu"),
        )
    )
    mapper = model_io.map_clip_text_encoder_weights
    _load_weights(model, mapper, _weights(folder, component), dtype)
    return model, int(config["max_position_embeddings"])


def _load_autoencoder(folder: Path) -> tuple[Any, int]:
    import mlx.core as mx
    from diffuse_mlx.stable_diffusion.config import AutoencoderConfig  # type: ignore[import-untyped]
    from diffuse_mlx.stable_diffusion.vae import Autoencoder  # type: ignore[import-untyped]

    config = _read_json(folder / "vae" / "config.json")
    model = Autoencoder(
        AutoencoderConfig(
            in_channels=config["in_channels"],
            out_channels=config["out_channels"],
            latent_channels_out=2 * config["latent_channels"],
            latent_channels_in=config["latent_channels"],
            block_out_channels=config["block_out_channels"],
            layers_per_block=config["layers_per_block"],
            norm_num_groups=config.get("norm_num_groups", 32),
            scaling_factor=config.get("scaling_factor", 0.18215),
        )
    )
    # Always float32: the SDXL VAE overflows in float16 (Apple's port does the same).
    _load_weights(model, _map_vae, _weights(folder, "vae"), mx.float32)
    return model, 2 ** (len(config["block_out_channels"]) - 1)


_OLD_VAE_ATTENTION = (
    (".query.", ".to_q."),
    (".key.", ".to_k."),
    (".value.", ".to_v."),
    (".proj_attn.", ".to_out.0."),
)


def _map_vae(key: str, value: Any) -> Any:
    from diffuse_mlx.stable_diffusion import model_io

    # VAE files saved by diffusers < 0.14 name the attention projections query/key/value/proj_attn.
    if "attentions." in key:
        for old, new in _OLD_VAE_ATTENTION:
            key = key.replace(old, new)
        if value.ndim == 4:  # a 1x1 conv in some old checkpoints: the same matrix
            value = value.reshape(value.shape[0], value.shape[1])
    return model_io.map_vae_weights(key, value)


def _weights(folder: Path, component: str) -> Path:
    path = weight_file(folder, component)
    if path is None:
        raise FileNotFoundError(f"{folder / component} has no .safetensors weights")
    return path


@dataclass
class Schedule:
    """The training noise schedule as sigmas over continuous time (Euler samplers step on it)."""

    sigmas: Any  # mx.array of num_train_steps + 1 values, sigmas[0] == 0
    ancestral: bool
    v_prediction: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Schedule:
        import mlx.core as mx

        steps = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
        schedule = config.get("beta_schedule", "scaled_linear")
        x = mx.arange(steps) / (steps - 1)
        if schedule == "linear":
            betas = start + (end - start) * x
        elif schedule == "scaled_linear":
            betas = (start**0.5 + (end**0.5 - start**0.5) * x).square()
        else:
            raise ValueError(f"beta_schedule {schedule!r} is not supported (linear, scaled_linear)")
        alphas_cumprod = mx.cumprod(1 - betas)
        sigmas = mx.concatenate([mx.zeros(1), ((1 - alphas_cumprod) / alphas_cumprod).sqrt()])
        return cls(
            sigmas=sigmas,
            ancestral="Ancestral" in str(config.get("_class_name", "")),
            v_prediction=config.get("prediction_type") == "v_prediction",
        )

    @property
    def max_time(self) -> int:
        return int(self.sigmas.shape[0]) - 1

    def sigma(self, t: Any) -> Any:
        import mlx.core as mx

        low = t.astype(mx.int32)
        high = mx.minimum(low + 1, self.max_time)
        frac = t - low
        return self.sigmas[low] * (1 - frac) + self.sigmas[high] * frac

    def timesteps(self, steps: int) -> list[tuple[Any, Any]]:
        import mlx.core as mx

        times = self.max_time * (1 - mx.arange(steps + 1) / steps)
        return [(times[i], times[i + 1]) for i in range(steps)]

    def step(self, model_out: Any, x_t: Any, t: Any, t_prev: Any, noise: Any | None) -> Any:
        """One Euler (ancestral) step from time ``t`` to ``t_prev``; x is variance-preserving."""
        sigma = self.sigma(t).astype(x_t.dtype)
        sigma_prev = self.sigma(t_prev).astype(x_t.dtype)
        eps = model_out
        if self.v_prediction:
            scale = (sigma.square() + 1).rsqrt()
            eps = scale * model_out + sigma * scale * x_t
        if self.ancestral and noise is not None:
            s2, sp2 = sigma.square(), sigma_prev.square()
            sigma_up = (sp2 * (s2 - sp2) / s2).sqrt()
            sigma_down = (sp2 - sigma_up.square()).sqrt()
            x = (s2 + 1).sqrt() * x_t + eps * (sigma_down - sigma) + noise * sigma_up
        else:
            x = (sigma.square() + 1).sqrt() * x_t + eps * (sigma_prev - sigma)
        return x * (sigma_prev.square() + 1).rsqrt()


class DiffusionPipeline:
    """A loaded model: text encoder(s), UNet, VAE and schedule. One generation at a time."""

    def __init__(self, folder: Path, dtype: str = "float32") -> None:
        import mlx.core as mx

        self.folder = folder
        self.dtype_name = dtype
        self.dtype = getattr(mx, dtype)
        self.kind = model_kind(folder)
        self.lock = threading.Lock()
        self.unet, unet_config = _load_unet(folder, self.dtype)
        self.encoders: list[tuple[ClipTokenizer, Any, int]] = []
        names = ["text_encoder", "text_encoder_2"] if self.kind == "sdxl" else ["text_encoder"]
        for component in names:
            tokenizer_folder = folder / component.replace("text_encoder", "tokenizer")
            encoder, max_length = _load_text_encoder(folder, component, self.dtype)
            self.encoders.append((ClipTokenizer.from_folder(tokenizer_folder), encoder, max_length))
        self.autoencoder, self.vae_scale = _load_autoencoder(folder)
        self.schedule = Schedule.from_config(
            _read_json(folder / "scheduler" / "scheduler_config.json")
        )
        # The UNet halves the latent once per block but the last: sizes must divide evenly.
        self.size_multiple = self.vae_scale * 2 ** (len(unet_config["block_out_channels"]) - 1)
        self.default_size = int(unet_config.get("sample_size", 64)) * self.vae_scale
        mx.eval(self.unet.parameters(), self.autoencoder.parameters())
        mx.eval([encoder.parameters() for _, encoder, _ in self.encoders])

    def fit_size(self, width: int, height: int) -> tuple[int, int]:
        """The nearest size the networks accept (a multiple of ``size_multiple``, at least one)."""
        m = self.size_multiple
        return max(m, int(width / m + 0.5) * m), max(m, int(height / m + 0.5) * m)

    def _conditioning(self, prompt: str, negative: str, guided: bool) -> tuple[Any, Any | None]:
        import mlx.core as mx

        texts = [prompt, negative] if guided else [prompt]
        outputs = []
        for tokenizer, encoder, max_length in self.encoders:
            tokens = mx.array([tokenizer.encode(text, max_length) for text in texts])
            outputs.append(encoder(tokens))
        if self.kind != "sdxl":
            return outputs[0].last_hidden_state, None
        # SDXL conditions on both encoders' penultimate layers and the second one's pooled output.
        hidden = mx.concatenate([o.hidden_states[-2] for o in outputs], axis=-1)
        return hidden, outputs[-1].pooled_output

    def generate(
        self,
        *,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        steps: int,
        guidance: float,
        seeds: Sequence[int],
        progress: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Any] | None:
        """Paint one image per seed; returns uint8 HxWx3 numpy arrays, or None when cancelled."""
        import mlx.core as mx
        import numpy as np

        width, height = self.fit_size(width, height)
        steps = max(1, steps)
        n = len(seeds)
        guided = guidance > 1  # classifier-free guidance, as diffusers decides it
        latent_shape = (1, height // self.vae_scale, width // self.vae_scale, 4)
        with self.lock:
            # One key chain per image so image i of a batch equals a single image with seeds[i].
            keys = [mx.random.split(mx.random.key(seed), steps + 1) for seed in seeds]
            cond, pooled = self._conditioning(prompt, negative_prompt, guided)
            cond = mx.repeat(cond, n, axis=0).astype(self.dtype)
            text_time = None
            if pooled is not None:
                pooled = mx.repeat(pooled, n, axis=0).astype(self.dtype)
                time_ids = mx.array([[height, width, 0, 0, height, width]] * len(pooled))
                text_time = (pooled, time_ids.astype(self.dtype))
            sigma_max = self.schedule.sigmas[-1]
            prior = mx.concatenate([mx.random.normal(latent_shape, key=k[0]) for k in keys])
            x_t = (prior * sigma_max * (sigma_max.square() + 1).rsqrt()).astype(self.dtype)
            mx.eval(x_t, cond)
            for index, (t, t_prev) in enumerate(self.schedule.timesteps(steps)):
                if cancel is not None and cancel.is_set():
                    return None
                x_in = mx.concatenate([x_t, x_t]) if guided else x_t
                t_in = mx.broadcast_to(t.astype(self.dtype), [len(x_in)])
                out = self.unet(x_in, t_in, encoder_x=cond, text_time=text_time)
                if guided:
                    out_text, out_negative = out.split(2)
                    out = out_negative + guidance * (out_text - out_negative)
                noise = None
                if self.schedule.ancestral:
                    noise = mx.concatenate(
                        [mx.random.normal(latent_shape, key=k[index + 1]) for k in keys]
                    ).astype(self.dtype)
                x_t = self.schedule.step(out, x_t, t, t_prev, noise)
                mx.eval(x_t)
                if progress is not None:
                    progress(index + 1, steps)
            if cancel is not None and cancel.is_set():
                return None
            pixels = self.autoencoder.decode(x_t.astype(mx.float32))
            pixels = mx.clip(pixels / 2 + 0.5, 0, 1)
            pixels = (pixels * 255).round().astype(mx.uint8)
            mx.eval(pixels)
            return [np.array(pixels[i]) for i in range(n)]


_PIPELINES: dict[tuple[str, str], DiffusionPipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def shared_pipeline(folder: Path, dtype: str) -> DiffusionPipeline:
    """The pipeline for ``folder`` in ``dtype``, loaded once per process and shared."""
    key = (str(folder.resolve()), dtype)
    with _PIPELINES_LOCK:
        pipeline = _PIPELINES.get(key)
        if pipeline is None:
            pipeline = DiffusionPipeline(folder, dtype)
            _PIPELINES[key] = pipeline
        return pipeline


def default_dtype() -> str:
    """float16 on an Apple GPU; float32 on CPU, where float16 is slow and loses precision."""
    import mlx.core as mx

    return "float16" if mx.default_device().type == mx.DeviceType.gpu else "float32"
