"""Continuous batching: one thread owns the model and advances every user's work one step at a time.

Each *tick* of the engine thread:

1. takes new work and drops cancelled or abandoned work (its KV cache goes back to the LRU);
2. runs one step of mlx-lm's :class:`~mlx_lm.generate.BatchGenerator`: one token for every
   answer being generated, all in one batch;
3. prefills one chunk (at most ``prefill_chunk`` tokens) of the waiting prompt with the fewest
   tokens left, on that prompt's own KV cache; a prompt read to its last token joins the batch
   (``insert`` with its cache) or, if it cannot share it, the solo jobs;
4. advances one *solo* job (round robin) by one step: one token, or the scoring of a
   model-judged choice.

So a Stop is seen within one tick (one prefill chunk), a short prompt is read before the next
chunk of a long one and answers right after, and work that cannot share the batch (a seeded
sampler, a KV cache that cannot merge, a model-judged choice) holds the others back by at most
one of its steps. Prefill runs outside mlx-lm's batch on purpose: its prompt batch pads every
prompt of a tick to the longest chunk and lets a newcomer wait for three ticks.

Consumers (``stream`` / ``choose`` on the callers' threads) read their job's queue; detokenizing
and stop strings run there, not on the engine thread.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Sampling
from .prompt_cache import PromptCacheStore
from .sampling import make_logits_processors, make_sampler

log = logging.getLogger(__name__)

# Tokens of one prompt prefilled per tick. A tick also decodes one token for every running answer,
# so this bounds both how long a Stop takes to free the model and how long a short turn waits
# behind a long prompt (benchmarks/bench_batching.py measures both). On a CPU a chunk of 128
# takes about 2 s for the embedded model (prefill runs near 68 tokens/s on 2 cores); a GPU
# prefills thousands of tokens a second, so it takes bigger chunks.
PREFILL_CHUNK_CPU = 128
PREFILL_CHUNK_GPU = 512
# While answers are being written, a tick reads only this fraction of a chunk: each answer gets a
# token per tick, so a long prompt read in full chunks would slow every answer to a token a chunk.
BUSY_CHUNK_FRACTION = 4
# Prompts prefilled side by side in one tick (each by one chunk).
PREFILL_BATCH = 8
# Answers decoded side by side; more wait inside the generator until a row frees.
DECODE_BATCH = 32

Item = tuple[str, Any, Any]  # ("token", id, finish_reason | None) | ("done", reason, None) | ...


@dataclass(eq=False)
class Job:
    """Work handed to the engine; results come back on ``out``."""

    tokens: list[int]
    cache: list[Any]
    cached: int
    cancel: threading.Event | None = None
    out: queue.SimpleQueue[Item] = field(default_factory=queue.SimpleQueue)
    abandoned: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    submitted: float = field(default_factory=time.perf_counter)
    position: int = 0  # prompt tokens the cache holds so far (solo jobs)

    def stopped(self) -> bool:
        return self.abandoned.is_set() or (self.cancel is not None and self.cancel.is_set())


@dataclass(eq=False)
class GenerateJob(Job):
    sampling: Sampling = field(default_factory=Sampling)
    stop_words: Sequence[str] = ()
    uid: int | None = None
    # solo state
    steps: Any = None
    matcher: Any = None
    produced: list[int] = field(default_factory=list)


@dataclass(eq=False)
class ChooseJob(Job):
    choices: Sequence[str] = ()


def default_prefill_chunk() -> int:
    """The prefill chunk for the default device (see PREFILL_CHUNK_CPU)."""
    import mlx.core as mx

    return PREFILL_CHUNK_CPU if mx.default_device() == mx.cpu else PREFILL_CHUNK_GPU


def can_batch(job: GenerateJob) -> bool:
    """Whether ``job`` may share the batch: no seed (its draws must not depend on the others')
    and a KV cache whose every layer can merge into a batch cache."""
    return job.sampling.seed is None and all(hasattr(type(layer), "merge") for layer in job.cache)


class BatchEngine:
    """The one thread that runs ``model``; see the module docstring."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt_cache: PromptCacheStore,
        prefill_chunk: int | None = None,
        prefill_batch: int = PREFILL_BATCH,
        decode_batch: int = DECODE_BATCH,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.prompt_cache = prompt_cache
        self.prefill_chunk = max(1, prefill_chunk or default_prefill_chunk())
        self.prefill_batch = prefill_batch
        self.decode_batch = decode_batch
        self._cond = threading.Condition()
        self._inbox: deque[Job] = deque()
        self._batched: dict[int, GenerateJob] = {}
        self._prefilling: list[Job] = []  # prompts still being read, one chunk a tick
        self._solo: deque[Job] = deque()
        self._generator: Any = None
        self._samplers: dict[tuple[Any, ...], Callable[[Any], Any]] = {}
        self._thread: threading.Thread | None = None
        self._held = 0
        self.ticks = 0  # ticks run so far (tests and benchmarks count them)
        self.peak_batch = 0  # the most answers that shared the batch at once
        self.tick_seconds: deque[float] = deque(maxlen=256)  # the last ticks' durations
        self.chunks = 0  # prefill chunks run so far

    # -- the callers' side ---------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue ``job``; the engine thread starts it at its next tick."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lollms-mlx", daemon=True)
                self._thread.start()
            self._inbox.append(job)
            self._cond.notify()

    def receive(self, job: Job, timeout: float = 1.0) -> Item:
        """The next item for ``job``; raises RuntimeError if the engine thread died."""
        while True:
            try:
                return job.out.get(timeout=timeout)
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    raise RuntimeError("the model's engine thread stopped; see the log") from None

    @contextmanager
    def held(self) -> Iterator[None]:
        """No tick starts while the block runs: calls sent in it start together (tests, benches)."""
        with self._cond:
            self._held += 1
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify()

    @property
    def queued(self) -> int:
        """Calls handed over and not yet taken in by a tick."""
        with self._cond:
            return len(self._inbox)

    @property
    def busy(self) -> bool:
        """Whether any work is queued or running."""
        with self._cond:
            return bool(self._inbox or self._batched or self._prefilling or self._solo)

    # -- the engine thread ---------------------------------------------------------------------

    def _run(self) -> None:
        import mlx.core as mx

        with mx.stream(mx.new_stream(mx.default_device())):
            while True:
                with self._cond:
                    while self._held or not (
                        self._inbox or self._batched or self._prefilling or self._solo
                    ):
                        self._cond.wait()
                    new = list(self._inbox)
                    self._inbox.clear()
                began = time.perf_counter()
                try:
                    self._tick(new)
                except Exception as exc:  # a bug here must not leave callers waiting forever
                    log.exception("the engine's tick failed; every running call fails")
                    self._fail_all(
                        [*new, *self._batched.values(), *self._prefilling, *self._solo], exc
                    )
                self.tick_seconds.append(time.perf_counter() - began)
                self.ticks += 1

    def _tick(self, new: list[Job]) -> None:
        for job in new:
            self._start(job)
        self._reap()
        if self._batched:
            self._batch_step()
        if self._prefilling and self._prefill_step() and self._batched:
            # A prompt just joined: this step starts its answer, so its first token comes out at
            # the next tick's first step instead of a tick later.
            self._batch_step()
        if self._solo:
            job = self._solo.popleft()
            if self._solo_step(job):
                self._solo.append(job)

    def _fail_all(self, jobs: list[Job], exc: Exception) -> None:
        for job in set(jobs):
            job.out.put(("error", exc, None))
        self._batched.clear()
        self._prefilling.clear()
        self._solo.clear()
        self._generator = None

    def _batch_generator(self) -> Any:
        from mlx_lm.generate import BatchGenerator

        if self._generator is None:
            self._generator = BatchGenerator(
                self.model,
                completion_batch_size=self.decode_batch,
                prefill_batch_size=self.prefill_batch,
                prefill_step_size=self.prefill_chunk,
            )
        return self._generator

    def _start(self, job: Job) -> None:
        if job.stopped():
            self._finish(job, job.tokens[: job.cached], job.cache, "cancelled")
            return
        job.position = job.cached
        if job.position < len(job.tokens) - 1:
            self._prefilling.append(job)
        else:
            self._ready(job)

    def _prefill_step(self) -> bool:
        """One chunk of the prompt with the fewest tokens left; True if a prompt joined the batch."""
        job = min(self._prefilling, key=lambda j: len(j.tokens) - j.position)
        try:
            self._prefill_chunk(job)
        except Exception as exc:
            log.exception("a prefill chunk failed")
            self._prefilling.remove(job)
            job.out.put(("error", exc, None))
            return False
        if job.position < len(job.tokens) - 1:
            return False
        self._prefilling.remove(job)
        return self._ready(job)

    def _ready(self, job: Job) -> bool:
        """Start answering a job whose prompt is read up to its last token; True if batched."""
        from mlx_lm.generate import make_stop_sequences

        if isinstance(job, ChooseJob) or (isinstance(job, GenerateJob) and not can_batch(job)):
            self._solo.append(job)
            return False
        assert isinstance(job, GenerateJob)
        stops = make_stop_sequences(self.tokenizer, list(job.stop_words))  # type: ignore[no-untyped-call]
        try:
            processors = [_guarded(job, p) for p in make_logits_processors(job.sampling)]
            (job.uid,) = self._batch_generator().insert(
                [job.tokens[job.position :]],
                max_tokens=[max(1, job.sampling.max_tokens)],
                caches=[job.cache],
                all_tokens=[list(job.tokens[: job.position])],
                samplers=[self._sampler(job.sampling)],
                logits_processors=[processors],
                stop_sequences=[stops],
            )
        except Exception as exc:  # a bad request fails alone, before it touches the batch
            job.out.put(("error", exc, None))
            return False
        self._batched[job.uid] = job
        self.peak_batch = max(self.peak_batch, len(self._batched))
        return True

    def _sampler(self, sampling: Sampling) -> Callable[[Any], Any]:
        """One sampler per set of parameters: rows sharing it are sampled in one call."""
        key = (sampling.temperature, sampling.top_p, sampling.min_p, sampling.top_k)
        if key not in self._samplers:
            self._samplers[key] = make_sampler(sampling)
        return self._samplers[key]

    def _reap(self) -> None:
        """Take cancelled, abandoned and failed jobs out; their caches are kept."""
        for job in [j for j in self._prefilling if j.stopped()]:
            self._prefilling.remove(job)
            self._finish(job, job.tokens[: job.position], job.cache, "cancelled")
        gone = [uid for uid, job in self._batched.items() if job.stopped() or job.error]
        if not gone:
            return
        caches = self._batch_generator().remove(gone, return_prompt_caches=True)
        for uid in gone:
            job = self._batched.pop(uid)
            cache, tokens = caches.get(uid, (None, None))
            if job.error is not None:
                job.out.put(("error", job.error, None))
            else:
                self._finish(job, tokens, cache, "cancelled")

    def _batch_step(self) -> None:
        try:
            _, responses = self._batch_generator().next()
        except Exception as exc:
            # Nothing tells which row broke the step: every row fails, the engine lives on.
            log.exception("batched generation step failed")
            for job in self._batched.values():
                job.out.put(("error", exc, None))
            self._batched.clear()
            self._generator = None
            return
        for response in responses:
            owner = self._batched.get(response.uid)
            if owner is None:
                continue
            owner.out.put(("token", int(response.token), response.finish_reason))
            if response.finish_reason is not None:
                del self._batched[response.uid]
                self._keep(response.all_tokens, response.prompt_cache)
        self._reap()  # a processor that failed during this step

    def _solo_step(self, job: Job) -> bool:
        """One step of a job that runs alone; False once it is done."""
        if job.stopped():
            fed = job.tokens[: job.position]
            if isinstance(job, GenerateJob) and job.steps is not None:  # decoding had begun
                fed = [*job.tokens, *job.produced]
            self._finish(job, fed, job.cache, "cancelled")
            return False
        try:
            if isinstance(job, ChooseJob):
                return self._score(job)
            assert isinstance(job, GenerateJob)
            return self._solo_token(job)
        except Exception as exc:
            log.exception("a solo generation step failed")
            job.out.put(("error", exc, None))
            return False

    def _prefill_chunk(self, job: Job) -> None:
        import mlx.core as mx

        size = self.prefill_chunk
        if self._batched or self._solo:
            size = max(16, size // BUSY_CHUNK_FRACTION)
        end = min(job.position + size, len(job.tokens) - 1)
        self.model(mx.array(job.tokens[job.position : end])[None], cache=job.cache)
        mx.eval([c.state for c in job.cache])
        job.position = end
        self.chunks += 1

    def _score(self, job: ChooseJob) -> bool:
        from .choose import score_choices

        scores = score_choices(
            self.model, self.tokenizer, job.tokens, job.position, job.cache, job.choices
        )
        self._keep(job.tokens, job.cache)
        job.out.put(("scores", scores, None))
        return False

    def _solo_token(self, job: GenerateJob) -> bool:
        import mlx.core as mx
        from mlx_lm.generate import generate_step, make_stop_sequences

        if job.steps is None:
            sampler = make_sampler(job.sampling)
            if job.sampling.seed is not None:
                sampler = _seeded(sampler, job.sampling.seed)
            job.steps = generate_step(
                mx.array(job.tokens[-1:]),
                self.model,
                max_tokens=max(1, job.sampling.max_tokens),
                sampler=sampler,
                logits_processors=make_logits_processors(job.sampling, job.tokens[:-1]),
                prompt_cache=job.cache,
            )
            stops = make_stop_sequences(self.tokenizer, list(job.stop_words))  # type: ignore[no-untyped-call]
            job.matcher = stops.matcher()
        token, _ = next(job.steps)
        token = int(token)
        job.produced.append(token)
        finish = None
        if len(job.produced) >= max(1, job.sampling.max_tokens):
            finish = "length"
        if job.matcher.advance(token):
            finish = "stop"
        job.out.put(("token", token, finish))
        if finish is None:
            return True
        job.steps.close()
        # The cache holds every token fed to the model: the prompt and all but the last answer
        # token (store() keys it by as many tokens as it holds), so the next turn reuses both.
        self._keep([*job.tokens, *job.produced], job.cache)
        return False

    def _finish(self, job: Job, tokens: Any, cache: Any, reason: str) -> None:
        if cache is not None and tokens:
            self._keep(tokens, cache)
        job.out.put(("done", reason, None))

    def _keep(self, tokens: Any, cache: Any) -> None:
        try:
            self.prompt_cache.store(list(tokens), cache)
        except Exception:  # a cache we cannot keep only costs a later prefill
            log.exception("could not keep a prompt cache")


def _guarded(job: Job, processor: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``processor`` failing marks its own job failed and leaves the batch's logits as they are."""

    def run(tokens: Any, logits: Any) -> Any:
        if job.error is not None:
            return logits
        try:
            return processor(tokens, logits)
        except Exception as exc:
            job.error = exc
            return logits

    return run


def _seeded(sampler: Callable[[Any], Any], seed: int) -> Callable[[Any], Any]:
    """``sampler`` drawing from its own seeded stream, whatever the other users draw meanwhile."""
    import mlx.core as mx

    own = random.Random(seed)
    fresh = random.SystemRandom()

    def run(logprobs: Any) -> Any:
        mx.random.seed(own.getrandbits(32))
        try:
            return sampler(logprobs)
        finally:
            mx.random.seed(fresh.getrandbits(32))  # the others' draws stay unpredictable

    return run
