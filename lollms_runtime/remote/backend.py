"""OpenAITextBackend: a TextBackend over any OpenAI-compatible server (chat completions, streamed)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..backends.base import ChoiceResult, FinishReason, GenerationRequest, Sampling, TextChunk
from ..mlx.stops import StopFilter
from .client import Client, RemoteError, RequestRefused
from .endpoints import RemoteModel

# Sampling fields OpenAI's API does not define; vLLM, llama.cpp's server, mlx_lm.server, SGLang
# and LM Studio read them from the request body. Servers that refuse them get them dropped.
EXTRA_SAMPLING = ("top_k", "min_p", "repetition_penalty", "repetition_context_size")
# Asking a server to go on from a prefilled answer (vLLM reads these; llama.cpp's server and
# Ollama continue a trailing assistant message by themselves).
CONTINUE_FIELDS = {"continue_final_message": True, "add_generation_prompt": False}
OPTIONAL = (*EXTRA_SAMPLING, *CONTINUE_FIELDS, "stream_options", "seed", "logit_bias")
MAX_STOPS = 4  # OpenAI's limit; the stop filter here catches every stop string anyway


class OpenAITextBackend:
    """A :class:`~lollms_runtime.backends.base.TextBackend` over an OpenAI-compatible endpoint.

    Requests are independent HTTP calls, so several may run at once (the server batches them).
    Fields the server refused once are not sent again by this backend.
    """

    name = "openai"

    def __init__(self, remote: RemoteModel, client: Client | None = None) -> None:
        self.remote = remote
        self.model_id = remote.spec
        self.client = client or Client(remote.endpoint)
        self.refused: set[str] = set()
        self._server: str | None = None
        self._listing: list[dict[str, Any]] | None = None  # the server's /models, read once
        self._lock = threading.Lock()

    # -- requests --------------------------------------------------------------------------
    def body(self, request: GenerationRequest, sampling: Sampling | None = None) -> dict[str, Any]:
        """The chat-completions body for ``request`` (or a completions body for a raw prompt)."""
        sampling = sampling or request.sampling
        body: dict[str, Any] = dict(self.remote.endpoint.extra_body)
        if self.remote.model:
            body["model"] = self.remote.model
        if request.raw_prompt is not None:
            body["prompt"] = request.raw_prompt
        else:
            # The server applies the model's own chat template; LoLLMs-style prefixes are a local
            # template, so they are not sent.
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            if request.answer_prefix:
                messages.append({"role": "assistant", "content": request.answer_prefix})
                body.update(CONTINUE_FIELDS)
            body["messages"] = messages
        body["temperature"] = max(0.0, sampling.temperature)
        if 0.0 < sampling.top_p < 1.0:
            body["top_p"] = sampling.top_p
        body["max_tokens"] = max(1, sampling.max_tokens)
        stops = [s for s in sampling.stop if s][:MAX_STOPS]
        if stops:
            body["stop"] = stops
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.presence_penalty:
            body["presence_penalty"] = sampling.presence_penalty
        if sampling.frequency_penalty:
            body["frequency_penalty"] = sampling.frequency_penalty
        if sampling.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in sampling.logit_bias.items()}
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if sampling.min_p > 0:
            body["min_p"] = sampling.min_p
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty
            body["repetition_context_size"] = sampling.repetition_context_size
        return body

    def path(self, body: Mapping[str, Any]) -> str:
        return "completions" if "prompt" in body else "chat/completions"

    def _without_refused(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        with self._lock:
            dropped = [k for k in body if k in self.refused]
        return {k: v for k, v in body.items() if k not in dropped}, dropped

    def _retry_without(self, body: Mapping[str, Any], refusal: RequestRefused) -> list[str]:
        """The optional fields to leave out after a 400: those it names, else all those sent;
        none when it names a field we cannot do without (the refusal then stands)."""

        def named(key: str) -> bool:
            return re.search(rf"\b{re.escape(key)}\b", refusal.detail) is not None

        sent = [k for k in OPTIONAL if k in body]
        hit = [k for k in sent if named(k)]
        if hit:
            return hit
        if any(named(k) for k in body if k not in OPTIONAL):
            return []
        return sent

    def _remember(self, dropped: Sequence[str]) -> None:
        """Fields a request succeeded without after a refusal are not sent again."""
        with self._lock:
            self.refused.update(dropped)

    def send(
        self, body: dict[str, Any], cancel: threading.Event | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        """POST a non-streamed request, dropping refused optional fields; returns the answer
        and the fields left out."""
        body, dropped = self._without_refused(body)
        while True:
            try:
                answer = self.client.post_json(self.path(body), body, cancel)
            except RequestRefused as exc:
                more = self._retry_without(body, exc)
                if not more:
                    raise
                dropped += more
                body = {k: v for k, v in body.items() if k not in more}
                continue
            self._remember(dropped)
            return answer, dropped

    # -- the TextBackend protocol ----------------------------------------------------------
    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[TextChunk]:
        """Yield the answer as the server streams it; stop strings never leak into the text."""
        body = self.body(request)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        body, dropped = self._without_refused(body)
        stops = StopFilter(request.sampling.stop)
        if cancel is not None and cancel.is_set():
            yield TextChunk("", finish_reason="cancelled")
            return
        finish: FinishReason = "length"
        usage: Mapping[str, Any] = {}
        pieces = 0
        start = time.perf_counter()
        first: float | None = None
        finished = False  # a finish_reason arrived: the stream was not cut short
        while True:
            events = self.client.stream_events(self.path(body), body, cancel)
            try:
                for event in events:
                    if isinstance(event.get("usage"), dict):
                        usage = event["usage"]
                    for choice in event.get("choices") or ():
                        text = _delta_text(choice)
                        if text:
                            first = first or time.perf_counter()
                            pieces += 1
                            yield TextChunk(stops.feed(text))
                        if choice.get("finish_reason"):
                            finished = True
                            finish = "length" if choice["finish_reason"] == "length" else "stop"
                    if stops.stopped:
                        finish = "stop"
                        break  # closing the stream tells the server to stop generating
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                else:
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                    elif not finished:
                        raise RemoteError(
                            f"{self.remote.endpoint.url} closed the stream before the answer "
                            "finished (no finish_reason)",
                            "the server may have stopped or crashed; start it again and resend",
                        )
                self._remember(dropped)
                break
            except RequestRefused as exc:  # before any event: nothing was shown yet
                more = self._retry_without(body, exc)
                if not more:
                    raise
                dropped += more
                body = {k: v for k, v in body.items() if k not in more}
            finally:
                events.close()
        tail = stops.flush()
        if tail:
            yield TextChunk(tail)
        generated = int(usage.get("completion_tokens") or pieces)
        elapsed = time.perf_counter() - (first or start)
        details = usage.get("prompt_tokens_details") or {}
        yield TextChunk(
            "",
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0)
            if isinstance(details, dict)
            else 0,
            generation_tokens=generated,
            generation_tps=generated / elapsed if generated and elapsed > 0 else 0.0,
            note=dropped_note(dropped),
        )

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> str:
        """The whole answer as one string (a join over :meth:`stream`)."""
        return "".join(chunk.text for chunk in self.stream(request, cancel))

    def choose(self, request: GenerationRequest, choices: Sequence[str]) -> ChoiceResult:
        """Pick one of ``choices``: from the first token's logprobs, else by constrained decoding,
        else by parsing a short answer (``method`` says which)."""
        from .choose import choose

        return choose(self, request, choices)

    def server_kind(self) -> str:
        """What kind of server this is (decides how answers are constrained): models.yaml's
        ``server``, else the ``owned_by`` of its model list, else "openai-compatible"."""
        if self._server is None:
            configured = self.remote.endpoint.server
            self._server = configured if configured != "auto" else self._detect_server()
        return self._server

    @property
    def parameters(self) -> int | None:
        """The model's size when the server lists it (llama.cpp's ``meta.n_params``), else None:
        most servers do not say (templates read it as ``model.parameters``)."""
        entry = next((m for m in self._models() if m.get("id") == self.remote.model), None)
        meta = entry.get("meta") if entry else None
        count = meta.get("n_params") if isinstance(meta, dict) else None
        return (
            count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None
        )

    def _models(self) -> list[dict[str, Any]]:
        """The entries of the server's model list (empty when it has none or does not answer)."""
        if self._listing is None:
            try:
                listed = self.client.get_json("models")
            except RemoteError:
                listed = None
            data = listed.get("data") if isinstance(listed, dict) else None
            self._listing = (
                [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []
            )
        return self._listing

    def _detect_server(self) -> str:
        owners = {str(m.get("owned_by", "")).lower() for m in self._models()}
        for owner, kind in (
            ("vllm", "vllm"),
            ("llamacpp", "llama.cpp"),
            ("sglang", "sglang"),
            ("ollama", "ollama"),
            ("library", "ollama"),
            ("openai", "openai"),
            ("system", "openai"),
        ):
            if owner in owners:
                return kind
        return "openai-compatible"


def _delta_text(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")  # /completions streams text, not deltas
    return text if isinstance(text, str) else ""


def dropped_note(dropped: Sequence[str]) -> str:
    """What the trace says about fields the server refused."""
    if not dropped:
        return ""
    return f"not sent (refused by the endpoint): {', '.join(sorted(set(dropped)))}"
