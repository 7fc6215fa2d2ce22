"""The numpy attention used on MLX's CPU backend: same results as mlx-lm's, and when it steps aside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlx_fixtures
import pytest

from lollms_runtime.mlx import cpu_attention

ROOT = Path(__file__).resolve().parents[1]
mlx_home = mlx_fixtures.mlx_home
mlx_backend = mlx_fixtures.mlx_backend


def reference(q: Any, k: Any, v: Any, scale: float, mask: Any) -> Any:
    import mlx.core as mx

    return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)


def random_qkv(batch: int, heads: int, kv_heads: int, length: int, keys: int) -> tuple[Any, ...]:
    import mlx.core as mx

    mx.random.seed(length * 1000 + keys)
    return (
        mx.random.normal((batch, heads, length, 64)),
        mx.random.normal((batch, kv_heads, keys, 64)),
        mx.random.normal((batch, kv_heads, keys, 64)),
    )


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "length", "keys"),
    [(1, 9, 3, 21, 877), (1, 9, 3, 1, 40), (2, 4, 4, 5, 5), (3, 8, 2, 7, 300)],
)
@pytest.mark.parametrize("mask_kind", ["none", "causal", "additive", "boolean"])
def test_matches_mlx_fast_attention(
    batch: int, heads: int, kv_heads: int, length: int, keys: int, mask_kind: str
) -> None:
    import mlx.core as mx

    q, k, v = random_qkv(batch, heads, kv_heads, length, keys)
    mask: Any = {
        "none": None,
        "causal": "causal",
        "additive": mx.random.normal((length, keys)),
        "boolean": mx.random.uniform(shape=(batch, 1, length, keys)) > 0.3,
    }[mask_kind]
    if mask_kind == "boolean":  # keep at least one key per row, as a real mask does
        mask = mx.logical_or(mask, mx.arange(keys) == 0)
    got = cpu_attention.attention(q, k, v, 0.125, mask)
    assert got is not None
    assert got.shape == (batch, heads, length, 64)
    assert mx.abs(got - reference(q, k, v, 0.125, mask)).max().item() < 1e-5


def test_long_prefills_are_computed_in_query_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlx.core as mx

    monkeypatch.setattr(cpu_attention, "QUERY_BLOCK", 16)
    q, k, v = random_qkv(1, 6, 2, 50, 90)  # 4 blocks, the last one short
    got = cpu_attention.attention(q, k, v, 0.125, "causal")
    assert got is not None
    assert mx.abs(got - reference(q, k, v, 0.125, "causal")).max().item() < 1e-5


def test_keeps_the_input_dtype() -> None:
    import mlx.core as mx

    q, k, v = (a.astype(mx.float16) for a in random_qkv(1, 4, 2, 8, 32))
    got = cpu_attention.attention(q, k, v, 0.125, "causal")
    assert got is not None and got.dtype == mx.float16
    assert mx.abs(got - reference(q, k, v, 0.125, "causal")).max().item() < 1e-2


def test_steps_aside_under_mx_compile() -> None:
    import mlx.core as mx

    q, k, v = random_qkv(1, 4, 2, 8, 32)
    seen: list[Any] = []

    def traced(a: Any, b: Any, c: Any) -> Any:
        seen.append(cpu_attention.attention(a, b, c, 0.125, "causal"))
        return a

    mx.compile(traced)(q, k, v)
    assert seen == [None]


def test_wrapper_hands_decode_steps_quantized_caches_and_sinks_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def original(
        q: Any, k: Any, v: Any, cache: Any, scale: float, mask: Any, sinks: Any = None
    ) -> str:
        return "mlx-lm"

    monkeypatch.setattr(cpu_attention, "attention", lambda *a, **kw: calls.append("numpy") or "np")
    wrapped = cpu_attention._wrap(original)
    q, k, v = random_qkv(1, 4, 2, 8, 32)
    one, _, _ = random_qkv(1, 4, 2, 1, 32)

    class Quantized:
        bits = 4

    assert wrapped(q, k, v, None, scale=0.1, mask="causal") == "np"
    assert wrapped(one, k, v, None, scale=0.1, mask=None) == "mlx-lm"
    assert wrapped(q, k, v, Quantized(), scale=0.1, mask="causal") == "mlx-lm"
    assert wrapped(q, k, v, None, scale=0.1, mask="causal", sinks=object()) == "mlx-lm"
    with cpu_attention.mlx_attention():
        assert wrapped(q, k, v, None, scale=0.1, mask="causal") == "mlx-lm"
    assert wrapped(q, k, v, None, scale=0.1, mask="causal") == "np"
    assert calls == ["numpy", "numpy"]


def test_installed_on_the_real_model_with_the_same_logits(mlx_backend: Any) -> None:
    import mlx.core as mx
    from mlx_lm.models import llama
    from mlx_lm.models.cache import make_prompt_cache

    model = mlx_backend.loaded.model
    patched = llama.scaled_dot_product_attention
    assert hasattr(patched, "lollms_original"), "load_model should have installed it"
    assert cpu_attention.install(model) == []  # already installed: not wrapped twice
    tokens = mlx_backend.tokenizer.encode("The history of painting spans many cultures. " * 8)

    def logits(attention: Any) -> Any:
        llama.scaled_dot_product_attention = attention
        try:
            cache = make_prompt_cache(model)
            model(mx.array(tokens[:-9])[None], cache=cache)  # a cached prefix, then 9 new tokens
            out = model(mx.array(tokens[-9:])[None], cache=cache)
            mx.eval(out)
            return out
        finally:
            llama.scaled_dot_product_attention = patched

    ours, theirs = logits(patched), logits(patched.lollms_original)
    assert mx.abs(ours - theirs).max().item() < 1e-3
    assert (mx.argmax(ours, axis=-1) == mx.argmax(theirs, axis=-1)).all().item()


def test_opt_out_keeps_mlx_lm_attention() -> None:
    code = (
        "from lollms_runtime.mlx.cpu_attention import install\n"
        "from mlx_lm.models import llama\n"
        "model = llama.Model(llama.ModelArgs(model_type='llama', hidden_size=8, "
        "num_hidden_layers=1, intermediate_size=8, num_attention_heads=2, rms_norm_eps=1e-5, "
        "vocab_size=16, num_key_value_heads=2))\n"
        "print(install(model))\n"
    )
    outputs = []
    for value in ("0", "1"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "LOLLMS_CPU_ATTENTION": value},
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.strip())
    assert outputs == ["[]", "['mlx_lm.models.llama']"]
