"""A tiny random Stable Diffusion model in the diffusers folder layout, for tests and benchmarks.

The networks are built in MLX from small configs, their parameters renamed and reshaped back to the
names and layouts diffusers writes, and saved as safetensors next to the same config files a real
model has, so loading it exercises exactly the code path a downloaded model takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .tokenizer import BOS, EOS, bytes_to_unicode

_WORDS = ("cat", "dog", "red", "sky", "art", "sun", "tree", "blue")


def _tokenizer_files(folder: Path, pad_token: str) -> int:
    """A byte-level BPE vocabulary with a few merges; returns the vocabulary size."""
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # Merge left to right: "c a", "ca t</w>" -> "cat</w>".
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
                vocab_list.append(pair[0] + pair[1])
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    vocab_list += [BOS, EOS]  # last, like CLIP: EOS has the highest id (pooling takes argmax)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges_text = "\n".join(f"{a} {b}" for a, b in merges)
    (folder / "merges.txt").write_text(f"#version: 0.2\n{merges_text}\n", encoding="utf-8")
    config = {"model_max_length": 77, "pad_token": pad_token, "bos_token": BOS, "eos_token": EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(vocab)


def _rename(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for mlx_name, hf_name in pairs:
        key = key.replace(mlx_name, hf_name)
    return key


_ATTENTION = (
    ("query_proj", "to_q"),
    ("key_proj", "to_k"),
    ("value_proj", "to_v"),
    ("out_proj", "to_out.0"),
)
_BLOCKS = (
    ("downsample.", "downsamplers.0.conv."),
    ("upsample.", "upsamplers.0.conv."),
    ("mid_blocks.0", "mid_block.resnets.0"),
    ("mid_blocks.1", "mid_block.attentions.0"),
    ("mid_blocks.2", "mid_block.resnets.1"),
)


def _to_diffusers(params: dict[str, Any], *, vae: bool) -> dict[str, Any]:
    """MLX UNet/VAE parameters under diffusers names, with PyTorch's OIHW conv layout."""
    import mlx.core as mx

    out: dict[str, Any] = {}
    for key, value in params.items():
        if key.endswith(("linear2.weight", "linear2.bias")) and not vae:
            continue  # folded into ff.net.0.proj with linear1 below
        name = _rename(key, _BLOCKS + _ATTENTION)
        if not vae and ".linear1." in key:
            other = params[key.replace("linear1", "linear2")]
            name = name.replace("linear1", "ff.net.0.proj")
            value = mx.concatenate([value, other], axis=0)
        name = name.replace("linear3", "ff.net.2")
        if vae:
            name = name.replace("quant_proj", "quant_conv")
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif value.ndim == 2 and ("conv_shortcut" in name or "quant_conv" in name):
            value = value[:, :, None, None]
        out[name] = value
    return out


def _clip_to_transformers(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = _rename(
            key,
            (
                ("attention.", "self_attn."),
                ("query_proj", "q_proj"),
                ("key_proj", "k_proj"),
                ("value_proj", "v_proj"),
                ("linear1", "mlp.fc1"),
                ("linear2", "mlp.fc2"),
            ),
        )
        if name.startswith(("token_embedding", "position_embedding")):
            name = "text_model.embeddings." + name
        elif name.startswith("layers."):
            name = "text_model.encoder." + name
        elif name.startswith("final_layer_norm"):
            name = "text_model." + name
        out[name] = value
    return out


def _save(folder: Path, file_name: str, config: dict[str, Any], weights: dict[str, Any]) -> None:
    import mlx.core as mx

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    mx.eval(weights)
    mx.save_safetensors(str(folder / file_name), weights, metadata={"format": "pt"})


def _flat(module: Any) -> dict[str, Any]:
    from mlx.utils import tree_flatten

    return dict(tree_flatten(module.parameters()))


def _text_encoder(folder: Path, vocab_size: int, *, projection: int | None) -> None:
    from diffuse_mlx.stable_diffusion.clip import CLIPTextModel  # type: ignore[import-untyped]
    from diffuse_mlx.stable_diffusion.config import CLIPTextModelConfig  # type: ignore[import-untyped]

    hidden = 32
    model = CLIPTextModel(
        CLIPTextModelConfig(
            num_layers=2,
            model_dims=hidden,
            num_heads=2,
            max_length=77,
            vocab_size=vocab_size,
            projection_dim=projection,
            hidden_act="gelu",
        )
    )
    architecture = "CLIPTextModelWithProjection" if projection else "CLIPTextModel"
    config: dict[str, Any] = {
        "architectures": [architecture],
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "vocab_size": vocab_size,
        "hidden_act": "gelu",
        "model_type": "clip_text_model",
    }
    if projection:
        config["projection_dim"] = projection
    _save(folder, "model.safetensors", config, _clip_to_transformers(_flat(model)))


def build_tiny_model(folder: Path, *, xl: bool = False, seed: int = 0) -> Path:
    """Write a tiny random SD (or SDXL: two text encoders) model into ``folder``; returns it."""
    import mlx.core as mx
    from diffuse_mlx.stable_diffusion.config import (  # type: ignore[import-untyped]
        AutoencoderConfig,
        UNetConfig,
    )
    from diffuse_mlx.stable_diffusion.unet import UNetModel  # type: ignore[import-untyped]
    from diffuse_mlx.stable_diffusion.vae import Autoencoder  # type: ignore[import-untyped]

    mx.random.seed(seed)  # the module initialisers draw from the global generator
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline"
    index = {"_class_name": pipeline, "_diffusers_version": "0.30.0"}
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")

    vocab_size = _tokenizer_files(folder / "tokenizer", EOS)
    _text_encoder(folder / "text_encoder", vocab_size, projection=None)
    cross_dim = 32
    if xl:
        _tokenizer_files(folder / "tokenizer_2", "!")
        _text_encoder(folder / "text_encoder_2", vocab_size, projection=32)
        cross_dim = 64

    unet_config: dict[str, Any] = {
        "_class_name": "UNet2DConditionModel",
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "attention_head_dim": [2, 4],
        "cross_attention_dim": cross_dim,
        "norm_num_groups": 32,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "sample_size": 8,
        "use_linear_projection": True,
        "transformer_layers_per_block": 1,
    }
    if xl:
        unet_config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
        )
    unet = UNetModel(
        UNetConfig(
            block_out_channels=[32, 64],
            layers_per_block=[1, 1],
            transformer_layers_per_block=[1, 1],
            num_attention_heads=[2, 4],
            cross_attention_dim=[cross_dim] * 2,
            norm_num_groups=32,
            down_block_types=unet_config["down_block_types"],
            up_block_types=unet_config["up_block_types"][::-1],
            addition_embed_type=unet_config.get("addition_embed_type"),
            addition_time_embed_dim=unet_config.get("addition_time_embed_dim"),
            projection_class_embeddings_input_dim=unet_config.get(
                "projection_class_embeddings_input_dim"
            ),
        )
    )
    unet_weights = _to_diffusers(_flat(unet), vae=False)
    _save(folder / "unet", "diffusion_pytorch_model.safetensors", unet_config, unet_weights)

    vae_config = {
        "_class_name": "AutoencoderKL",
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": [8, 16, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "scaling_factor": 0.18215,
        "sample_size": 64,
    }
    vae = Autoencoder(
        AutoencoderConfig(
            latent_channels_out=8,
            latent_channels_in=4,
            block_out_channels=[8, 16, 16, 16],
            layers_per_block=1,
            norm_num_groups=4,
        )
    )
    _save(
        folder / "vae",
        "diffusion_pytorch_model.safetensors",
        vae_config,
        _to_diffusers(_flat(vae), vae=True),
    )

    scheduler = {
        "_class_name": "EulerAncestralDiscreteScheduler" if xl else "EulerDiscreteScheduler",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
    }
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(scheduler), encoding="utf-8"
    )
    return folder
