"""MLX text backend on the embedded model: answers, sampling, stops, cancel, cache, choose."""

from __future__ import annotations

import threading
from typing import Any

import mlx_fixtures
import pytest

from lollms_runtime.backends.base import (
    ChatMessage,
    GenerationRequest,
    Prefixes,
    Sampling,
    TextBackend,
    TextChunk,
)

pytestmark = pytest.mark.model

FRANCE = [ChatMessage("user", "What is the capital of France?")]
GREEDY = Sampling(temperature=0.0, max_tokens=12)

# Session fixtures shared by every MLX test module.
mlx_home = mlx_fixtures.mlx_home
mlx_backend = mlx_fixtures.mlx_backend


def ask(backend: Any, messages: list[ChatMessage], **sampling: Any) -> tuple[str, TextChunk]:
    chunks = list(backend.stream(GenerationRequest(messages, GREEDY.merged(sampling))))
    return "".join(c.text for c in chunks), chunks[-1]


def test_backend_is_a_text_backend(mlx_backend: Any) -> None:
    assert isinstance(mlx_backend, TextBackend)
    assert mlx_backend.name == "mlx"
    assert mlx_backend.model_id == "default"
    # Its size as templates see it (model.parameters): SmolLM2-135M, counted unpacked from the
    # 4-bit weights (packed, it would read about 8 times fewer).
    assert 130_000_000 < mlx_backend.parameters < 140_000_000


def test_personality_style_chat_answers_paris(mlx_backend: Any) -> None:
    messages = [
        ChatMessage("system", "You are a helpful geography teacher. Answer in one sentence."),
        *FRANCE,
    ]
    text, last = ask(mlx_backend, messages, max_tokens=20)
    assert "Paris" in text
    assert last.finish_reason == "stop"  # the model ended its sentence with EOS
    assert last.prompt_tokens > 0
    assert 0 < last.generation_tokens <= 20
    assert last.generation_tps > 0


def test_max_tokens_gives_length(mlx_backend: Any) -> None:
    request = GenerationRequest(
        [ChatMessage("user", "Write a long story about a dragon.")],
        GREEDY.merged({"max_tokens": 5}),
    )
    chunks = list(mlx_backend.stream(request))
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].generation_tokens == 5
    assert sum(1 for c in chunks if c.token is not None) <= 5


STORY = [ChatMessage("user", "Tell me a short story about a cat.")]


def test_same_seed_same_text_and_different_seeds_differ(mlx_backend: Any) -> None:
    texts = [ask(mlx_backend, STORY, temperature=1.2, seed=s)[0] for s in (7, 7, 8, 9)]
    assert texts[0] == texts[1]
    assert len(set(texts[1:])) > 1  # three seeds at a high temperature do not all agree


def test_temperature_zero_is_deterministic_and_top_k_1_is_greedy(mlx_backend: Any) -> None:
    greedy = ask(mlx_backend, STORY)[0]
    assert ask(mlx_backend, STORY, seed=1)[0] == greedy
    assert ask(mlx_backend, STORY, temperature=1.5, top_k=1, seed=3)[0] == greedy


def test_high_temperature_changes_the_output(mlx_backend: Any) -> None:
    greedy = ask(mlx_backend, STORY)[0]
    hot = [ask(mlx_backend, STORY, temperature=3.0, seed=s)[0] for s in (1, 2)]
    assert any(text != greedy for text in hot)


def test_penalties_and_logit_bias_change_the_output(mlx_backend: Any) -> None:
    repeat = [ChatMessage("user", "Say the word 'hello' five times.")]
    plain = ask(mlx_backend, repeat)[0]
    assert ask(mlx_backend, repeat, repetition_penalty=2.0)[0] != plain
    assert ask(mlx_backend, repeat, frequency_penalty=2.0)[0] != plain
    assert ask(mlx_backend, repeat, presence_penalty=2.0)[0] != plain
    forced = mlx_backend.tokenizer.encode("Banana", add_special_tokens=False)[0]
    text, _ = ask(mlx_backend, repeat, logit_bias={forced: 100.0}, max_tokens=3)
    assert text.startswith(mlx_backend.tokenizer.decode([forced]))
    size = len(mlx_backend.tokenizer.get_vocab())
    with pytest.raises(ValueError, match=rf"token id {size + 7}, outside .*0\.\.{size - 1}"):
        ask(mlx_backend, repeat, logit_bias={size + 7: 1.0})
    with pytest.raises(ValueError, match="token id -1"):  # the vocabulary read once, kept
        ask(mlx_backend, repeat, logit_bias={-1: 1.0})


def test_stop_strings_stop_and_never_leak(mlx_backend: Any) -> None:
    full, _ = ask(mlx_backend, FRANCE, max_tokens=20)
    assert "Paris" in full
    chunks = list(
        mlx_backend.stream(GenerationRequest(FRANCE, GREEDY.merged({"stop": ["Paris", "zzz"]})))
    )
    text = "".join(c.text for c in chunks)
    assert text == full[: full.index("Paris")]
    assert chunks[-1].finish_reason == "stop"
    for chunk in chunks:  # no piece ends with a partial stop string that a later piece completes
        assert not any(p in chunk.text for p in ("P", "Pa", "Par", "Pari"))


def test_cancel_stops_within_one_token(mlx_backend: Any) -> None:
    cancel = threading.Event()
    request = GenerationRequest(STORY, GREEDY.merged({"max_tokens": 50}))
    tokens_after_cancel = 0
    last = None
    for chunk in mlx_backend.stream(request, cancel):
        if cancel.is_set() and chunk.token is not None:
            tokens_after_cancel += 1
        if chunk.token is not None:
            cancel.set()
        last = chunk
    assert last is not None and last.finish_reason == "cancelled"
    assert tokens_after_cancel == 0
    assert last.generation_tokens <= 2


def test_prefixes_and_raw_prompt(mlx_backend: Any) -> None:
    prefixes = Prefixes(user_prefix="!@>User: ", ai_prefix="!@>Assistant: ", link_text="\n")
    request = GenerationRequest(
        [ChatMessage("system", "Be brief."), *FRANCE],
        GREEDY,
        prefixes=prefixes,
        answer_prefix="The",
    )
    tokens = mlx_backend.prompt_tokens(request)
    expected = "Be brief.\n!@>User: What is the capital of France?\n!@>Assistant: The"
    assert mlx_backend.tokenizer.decode(tokens) == expected
    raw = GenerationRequest(FRANCE, GREEDY, raw_prompt="Q: capital of France?\nA:")
    assert mlx_backend.tokenizer.decode(mlx_backend.prompt_tokens(raw)) == raw.raw_prompt
    text = "".join(c.text for c in mlx_backend.stream(request))
    assert text.strip()


def test_answer_prefix_follows_the_assistant_header(mlx_backend: Any) -> None:
    request = GenerationRequest(FRANCE, GREEDY, answer_prefix="Sure! ")
    prompt = mlx_backend.tokenizer.decode(mlx_backend.prompt_tokens(request))
    assert prompt.endswith("<|im_start|>assistant\nSure! ")


def test_second_turn_reuses_the_first_turns_cache(mlx_backend: Any) -> None:
    mlx_backend.prompt_cache.clear()
    first = GenerationRequest(FRANCE, GREEDY.merged({"max_tokens": 20}), cache_key="d1")
    chunks = list(mlx_backend.stream(first))
    answer, stats = "".join(c.text for c in chunks), chunks[-1]
    assert stats.cached_tokens == 0
    turn2 = [*FRANCE, ChatMessage("assistant", answer), ChatMessage("user", "And of Germany?")]
    second = GenerationRequest(turn2, first.sampling, cache_key="d1")
    chunks2 = list(mlx_backend.stream(second))
    stats2 = chunks2[-1]
    # The whole first turn (prompt and answer) was in the cache; only the new message is prefilled.
    assert stats2.cached_tokens >= stats.prompt_tokens + stats.generation_tokens
    assert stats2.cached_tokens < stats2.prompt_tokens
    cached_text = "".join(c.text for c in chunks2)
    mlx_backend.prompt_cache.clear()
    cold = list(mlx_backend.stream(second))
    assert cold[-1].cached_tokens == 0
    assert "".join(c.text for c in cold) == cached_text  # the cache changes speed, not answers


def test_calls_sharing_a_prefix_share_its_cache(mlx_backend: Any) -> None:
    mlx_backend.prompt_cache.clear()
    system = ChatMessage("system", "You are a travel guide who knows every capital city.")
    one = GenerationRequest([system, *FRANCE], GREEDY.merged({"max_tokens": 4}), cache_key="a")
    list(mlx_backend.stream(one))
    other = [system, ChatMessage("user", "What is the capital of Spain?")]
    two = GenerationRequest(other, one.sampling, cache_key="b")
    last = list(mlx_backend.stream(two))[-1]
    shared = mlx_backend.prompt_tokens(one)
    common = next(
        i
        for i, (a, b) in enumerate(zip(shared, mlx_backend.prompt_tokens(two), strict=False))
        if a != b
    )
    assert last.cached_tokens == common


def test_choose_picks_the_obvious_capital(mlx_backend: Any) -> None:
    cities = ["Paris", "London", "Berlin", "Rome", "Madrid"]
    for country, city in [("France", "Paris"), ("England", "London"), ("Italy", "Rome")]:
        question = GenerationRequest([ChatMessage("user", f"What is the capital of {country}?")])
        result = mlx_backend.choose(question, cities)
        assert result.choice == city
        assert result.index == cities.index(city)
        assert abs(sum(result.probabilities.values()) - 1.0) < 1e-6
        assert result.probability == max(result.probabilities.values())


def test_choose_yes_no_and_color(mlx_backend: Any) -> None:
    # The 135M model needs an example of the answer format before it answers yes/no sensibly.
    shots = [
        ChatMessage("user", "Is fire hot? Answer yes or no."),
        ChatMessage("assistant", "yes"),
        ChatMessage("user", "Is ice hot? Answer yes or no."),
        ChatMessage("assistant", "no"),
        ChatMessage("user", "Is Paris in France? Answer yes or no."),
    ]
    assert mlx_backend.choose(GenerationRequest(shots), ["yes", "no"]).choice == "yes"
    color = GenerationRequest([ChatMessage("user", "Which is a color: red, table or seven?")])
    assert mlx_backend.choose(color, ["red", "table", "seven"]).choice == "red"


def test_multi_token_choices_are_scored_as_whole_sequences(mlx_backend: Any) -> None:
    import math

    import mlx.core as mx

    request = GenerationRequest([ChatMessage("user", "Name a big city in the United States.")])
    choices = ["New York City", "Los Angeles", "a", "Paris, France"]
    result = mlx_backend.choose(request, choices)
    # Reference: each choice's log-probability from a full forward pass of prompt + choice.
    context = mlx_backend.prompt_tokens(request)
    model, tokenizer = mlx_backend.loaded.model, mlx_backend.tokenizer
    n = len(context)

    def whole(text: str) -> float:
        ids = tokenizer.encode(text, add_special_tokens=False)
        logits = model(mx.array(context + ids)[None]).astype(mx.float32)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return float(sum(logprobs[0, n - 1 + j, t].item() for j, t in enumerate(ids)))

    # A choice counts as written and with its first letter's case swapped ("a" or "A").
    scores = []
    for choice in choices:
        other = choice[0].swapcase() + choice[1:]
        scores.append(math.log(math.exp(whole(choice)) + math.exp(whole(other))))
    top = max(scores)
    total = sum(math.exp(s - top) for s in scores)
    for choice, score in zip(choices, scores, strict=True):
        assert result.probabilities[choice] == pytest.approx(
            math.exp(score - top) / total, abs=2e-3
        )
    assert result.choice == choices[scores.index(top)]
