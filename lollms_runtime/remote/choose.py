"""Model-judged choices on a remote server, best method first: the first token's logprobs, then
constrained decoding, then a short answer parsed against the options."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..backends.base import ChoiceResult, GenerationRequest, Sampling
from .client import RequestRefused

if TYPE_CHECKING:
    from .backend import OpenAITextBackend

TOP_LOGPROBS = 10  # mlx_lm.server accepts at most 11, OpenAI 20
# Byte-level BPE and SentencePiece spell a leading space or newline with these.
TOKEN_MARKS = str.maketrans({"Ġ": " ", "▁": " ", "Ċ": "\n"})
PUNCTUATION = " \t\r\n\"'`*_.,;:!?()[]{}<>"


class NoChoice(ValueError):
    """The model's answer matched none of the options; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def choose(
    backend: OpenAITextBackend, request: GenerationRequest, choices: Sequence[str]
) -> ChoiceResult:
    if not choices:
        raise ValueError("choose() needs at least one choice")
    notes: list[str] = []
    result = by_logprobs(backend, request, choices, notes)
    if result is not None:
        return result
    answer = constrained(backend, request, choices, notes)
    if isinstance(answer, ChoiceResult):
        return answer
    if answer is None:
        text = _answer_text(backend.send(backend.body(request, _short(request, choices)))[0])
    else:
        text = answer
    index = match_answer(text, choices)
    if index is None:
        raise NoChoice(
            f"the model answered {text.strip()[:80]!r}, which matches none of the options "
            f"({', '.join(choices)}); " + "; ".join(notes),
            "use an endpoint that returns logprobs or constrains answers (vLLM, llama.cpp, "
            "mlx_lm.server), a larger model, or a clearer question",
        )
    return _certain(choices, index, "; ".join(["short answer parsed", *notes]))


def _greedy(request: GenerationRequest, max_tokens: int) -> Sampling:
    """One greedy answer: the personality's sampling would make a judgement random."""
    return replace(
        request.sampling,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        repetition_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        logit_bias=None,
        max_tokens=max_tokens,
        stop=(),
        seed=None,
    )


def _short(request: GenerationRequest, choices: Sequence[str]) -> Sampling:
    return _greedy(request, 8 + max(len(c) for c in choices))


def by_logprobs(
    backend: OpenAITextBackend,
    request: GenerationRequest,
    choices: Sequence[str],
    notes: list[str],
) -> ChoiceResult | None:
    """The options' probabilities from the top logprobs of the first answer token, or ``None``
    (with a note) when the endpoint gives none or they cannot tell the options apart."""
    if "logprobs" in backend.refused:
        notes.append("logprobs refused by the endpoint")
        return None
    body = backend.body(request, _greedy(request, 1))
    if "prompt" in body:
        body["logprobs"] = TOP_LOGPROBS
    else:
        body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
    try:
        answer, _ = backend.send(body)
    except RequestRefused:
        backend.refused.add("logprobs")
        notes.append("logprobs refused by the endpoint")
        return None
    top = top_logprobs(answer)
    if not top:
        notes.append("the endpoint returned no logprobs")
        return None
    probabilities = option_probabilities(top, choices)
    if probabilities is None:
        notes.append("the first tokens' logprobs do not tell the options apart")
        return None
    index = max(range(len(choices)), key=lambda i: probabilities[i])
    shares: dict[str, float] = {}
    for choice, p in zip(choices, probabilities, strict=True):
        shares[choice] = shares.get(choice, 0.0) + p
    return ChoiceResult(choices[index], index, shares, method="first-token logprobs")


def top_logprobs(answer: Any) -> list[tuple[str, float]]:
    """(token, logprob) pairs of the first generated token, from a chat or completions answer."""
    try:
        logprobs = answer["choices"][0]["logprobs"]
    except (KeyError, IndexError, TypeError):
        return []
    if not isinstance(logprobs, dict):
        return []
    out: list[tuple[str, float]] = []
    content = logprobs.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        for entry in content[0].get("top_logprobs") or ():
            if isinstance(entry, dict) and isinstance(entry.get("logprob"), int | float):
                out.append((str(entry.get("token", "")), float(entry["logprob"])))
    legacy = logprobs.get("top_logprobs")  # /completions: a list of {token: logprob}
    if not out and isinstance(legacy, list) and legacy and isinstance(legacy[0], dict):
        out = [(str(t), float(v)) for t, v in legacy[0].items() if isinstance(v, int | float)]
    return out


def option_probabilities(
    top: Sequence[tuple[str, float]], choices: Sequence[str]
) -> list[float] | None:
    """Each option's share, from the listed tokens that begin it (case and leading space aside).

    A token that begins several options says nothing about which: when such tokens weigh more
    than the ones that do tell, or no listed token begins any option, the answer is ``None``.
    Options none of whose first tokens are listed share what the list leaves, each at most the
    least listed token's probability.
    """
    options = [c.strip().lower() for c in choices]
    mass = [0.0] * len(choices)
    ambiguous = 0.0
    seen: set[str] = set()
    for token, logprob in top:
        text = token.translate(TOKEN_MARKS).strip().lower()
        if not text or token in seen:
            continue
        seen.add(token)
        p = math.exp(logprob)
        hits = {i for i, o in enumerate(options) if o.startswith(text)}
        if len({options[i] for i in hits}) > 1:
            ambiguous += p
        elif hits:
            for i in hits:
                mass[i] += p / len(hits)
    told = sum(mass)
    if told <= 0 or ambiguous > told:
        return None
    listed = [math.exp(lp) for _, lp in top]
    missing = [i for i, m in enumerate(mass) if m == 0.0]
    if missing:
        rest = max(0.0, 1.0 - sum(listed)) / len(missing)
        for i in missing:
            # Below every listed token, so a listed option wins a tie against an unlisted one.
            mass[i] = min(rest, min(listed)) * (1 - 1e-6) or 1e-9
    total = sum(mass)
    return [m / total for m in mass]


def constrained(
    backend: OpenAITextBackend,
    request: GenerationRequest,
    choices: Sequence[str],
    notes: list[str],
) -> ChoiceResult | str | None:
    """Ask with the answer constrained to the options, the way this server offers it.

    A :class:`ChoiceResult` when the answer is one of the options; the answer's text when the
    server ignored the constraint (it is then parsed); ``None`` when nothing was asked.
    """
    if request.raw_prompt is not None:
        return None
    server = backend.server_kind()
    field, value, method = _constraint(server, choices)
    if field in backend.refused:
        notes.append(f"{field} refused by the endpoint")
        return None
    body = backend.body(request, _greedy(request, 16 + max(len(c) for c in choices)))
    body[field] = value
    try:
        answer, _ = backend.send(body)
    except RequestRefused:
        backend.refused.add(field)
        notes.append(f"{field} refused by the endpoint")
        return None
    text = _answer_text(answer)
    picked = text.strip()
    if field == "response_format":
        try:
            decoded = json.loads(picked)
        except ValueError:
            decoded = None
        picked = str(decoded.get("choice", "")) if isinstance(decoded, dict) else ""
    if picked in choices:
        return _certain(choices, list(choices).index(picked), method)
    notes.append(f"the endpoint ({server}) ignored {field}")
    return text


def _constraint(server: str, choices: Sequence[str]) -> tuple[str, Any, str]:
    """The request field that constrains the answer to ``choices`` on ``server``."""
    if server == "vllm":
        return (
            "structured_outputs",
            {"choice": list(choices)},
            "constrained decoding (vLLM structured_outputs choice)",
        )
    if server == "llama.cpp":
        grammar = "root ::= " + " | ".join(json.dumps(c) for c in choices)
        return "grammar", grammar, "constrained decoding (llama.cpp grammar)"
    schema = {
        "type": "object",
        "properties": {"choice": {"type": "string", "enum": list(choices)}},
        "required": ["choice"],
        "additionalProperties": False,
    }
    return (
        "response_format",
        {
            "type": "json_schema",
            "json_schema": {"name": "choice", "strict": True, "schema": schema},
        },
        "constrained decoding (response_format enum)",
    )


def _answer_text(answer: Any) -> str:
    try:
        choice = answer["choices"][0]
    except (KeyError, IndexError, TypeError):
        return ""
    if not isinstance(choice, Mapping):
        return ""
    message = choice.get("message")
    if isinstance(message, Mapping):
        return str(message.get("content") or "")
    return str(choice.get("text") or "")


def match_answer(text: str, choices: Sequence[str]) -> int | None:
    """The option a free answer names: the whole answer, its start, or the one option named."""
    answer = text.strip().strip(PUNCTUATION).lower()
    options = [c.strip().lower() for c in choices]
    if answer in options:
        return options.index(answer)
    starts = [i for i, o in enumerate(options) if re.match(rf"{re.escape(o)}\b", answer)]
    if starts:
        return max(starts, key=lambda i: len(options[i]))  # "yes please" over "yes"
    named = {i for i, o in enumerate(options) if re.search(rf"\b{re.escape(o)}\b", answer)}
    return named.pop() if len(named) == 1 else None


def _certain(choices: Sequence[str], index: int, method: str) -> ChoiceResult:
    probabilities = dict.fromkeys(choices, 0.0)
    probabilities[choices[index]] = 1.0
    return ChoiceResult(choices[index], index, probabilities, method=method)
