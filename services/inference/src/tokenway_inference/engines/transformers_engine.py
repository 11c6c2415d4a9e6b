"""The CPU default engine: transformers + torch, continuous batching over a KV pool written in place.

Three parts, each in its own module and tested alone:
  - `kvpool.KVPool`: every layer's KV in one pool allocated at start (`kv_cache_tokens` positions);
    each sequence owns a contiguous region of it and new tokens are written into their slots;
  - `scheduler.BatchScheduler`: each step, a decode token for every running sequence, then prefill
    chunks of admitted and newly admitted prompts under `max_batch_tokens`; admission on the memory a
    sequence really holds, preemption (recompute later) instead of failure when the pool runs out;
  - `sampler.Sampler`: penalties, bias, truncation and seeded draws, with fast paths.
One scheduler thread owns the model. A step runs the model once over every scheduled token of every
sequence, flattened into one row with per-token positions (`ragged`: the attention function that
writes KV into the pool and attends each sequence to a view of its own region); logits are computed
only for the sequences that sample. The asyncio loop only queues requests and reads results.

A sequence's tokens never see another's: attention is per sequence over its real length, and every
other layer is token-wise, so greedy output does not depend on the batch.

Logprobs are the log-softmax of the *raw* model logits (before penalties, logit bias, temperature
and truncation), like vLLM's default `raw_logprobs`: they describe the model, not the sampler. Only
the decodable vocabulary is ever considered (`ModelFacts.padded`: padded logit rows are cut off).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable

import torch

from tokenway_common.errors import Internal, Unavailable

from . import ragged
from .base import (Chunk, Engine, FinishReason, GenerateRequest, Load, ModelFacts, SamplingOptions, StoppingOptions,
                   merge_chunks, validate, check_admission, ModelInfo, ResolvedParams, TokenLogprob)
from .kvpool import KVPool, Region
from .sampler import Sampler, SamplingState
from .scheduler import BatchScheduler, Work

log = logging.getLogger("tokenway.inference.engine")

#: Multiply-adds of linear layers worth one more torch thread in a step (a few ms of one core's work).
WORK_PER_THREAD = 200_000_000


class _Stream:
    """The event-loop side of one sequence: chunks pushed by the scheduler, read by `generate`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: collections.deque[Chunk | BaseException] = collections.deque()
        self.ready = asyncio.Event()

    def push(self, item: Chunk | BaseException) -> None:  # on the loop
        self.items.append(item)
        self.ready.set()

    async def next(self) -> Chunk:
        """Everything queued so far, merged into one chunk (waits for at least one)."""
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        chunks: list[Chunk] = []
        while self.items:
            item = self.items.popleft()
            if isinstance(item, BaseException):
                if chunks:  # deliver what came before the error first
                    self.items.appendleft(item)
                    break
                raise item
            chunks.append(item)
            if item.finish_reason is not None:
                break
        return merge_chunks(chunks)


class _Seq:
    """One sequence; its fields below `stream` are touched by the scheduler thread only."""

    def __init__(self, req: GenerateRequest, params: ResolvedParams, stream: _Stream, eos: tuple[int, ...],
                 context: int, vocab: int) -> None:
        self.req, self.params, self.stream = req, params, stream
        self.rid = req.request_id
        self.prompt_len = len(req.prompt_token_ids)  # tokens[:prompt_len] is the prompt
        self.aborted = False  # set under the engine lock by abort()/cancellation
        self.finished = False
        self.tokens: list[int] = list(req.prompt_token_ids)  # prompt, then every generated token
        self.cached = 0  # tokens whose KV is in the pool
        self.region: Region | None = None
        self.prefix_hit = 0  # leading tokens whose KV was copied from the prefix cache at admission
        self.reserve = min(self.prompt_len + params.max_tokens, context)
        self.sampling = SamplingState(params, req.prompt_token_ids, eos, vocab)

    @property
    def generated(self) -> int:
        return len(self.tokens) - self.prompt_len


@dataclasses.dataclass(eq=False)
class _Waiter:
    """One wait_until() call: the scheduler sets `done` after the first step that satisfies `predicate`."""

    predicate: Callable[[Load], bool]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    error: Exception | None = None


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, model_dir: str, *, model_name: str = "", max_batch_size: int = 32, max_waiting: int = 256,
                 max_model_len: int = 0, dtype: str = "float32", threads: int = 0, kv_cache_tokens: int = 65536,
                 max_batch_tokens: int = 512, prefix_caching: bool = True, prefill_dtype: str = "float32") -> None:
        self.model_dir = model_dir
        self.facts = ModelFacts.read(model_dir, max_model_len)
        self._info = self.facts.model_info(model_dir, model_name, self.name)
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.max_batch_tokens = max_batch_tokens
        self.prefix_caching = prefix_caching
        if kv_cache_tokens < self.facts.max_context_length:
            raise ValueError(f"kv_cache_tokens {kv_cache_tokens} cannot hold one sequence of the model's "
                             f"context, {self.facts.max_context_length} tokens: raise it or lower max_model_len")
        self.kv_cache_tokens = kv_cache_tokens
        self.dtype = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        self.prefill_dtype = _prefill_dtype(prefill_dtype, self.dtype)
        self.threads = threads
        self._model = None
        self._prefill_model = None  # the model in prefill_dtype (the same object when that is dtype)
        self._pool: KVPool | None = None
        self._sched: BatchScheduler | None = None
        self._sampler = Sampler(self.facts.vocab_size)
        self._lock = threading.Condition()
        self._waiting: collections.deque[_Seq] = collections.deque()
        self._seqs: dict[str, _Seq] = {}  # every sequence not yet finished, by request id
        self._running = 0
        self._usage = 0.0
        self._steps = 0
        self._in_step = False  # between the scheduler taking work and its chunks being queued
        self._waiters: list[_Waiter] = []  # wait_until() calls, checked after each step
        self._stop = False
        self._thread: threading.Thread | None = None
        self._eos = self.facts.eos_token_ids

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @max_batch_size.setter
    def max_batch_size(self, value: int) -> None:
        self._max_batch_size = value
        if getattr(self, "_sched", None) is not None:
            self._sched.max_batch_size = value

    @classmethod
    def from_settings(cls, s) -> TransformersEngine:
        return cls(s.model, model_name=s.served_model_name, max_batch_size=s.max_batch_size,
                   max_waiting=s.max_waiting, max_model_len=s.max_model_len, dtype=s.dtype, threads=s.threads,
                   kv_cache_tokens=s.kv_cache_tokens, max_batch_tokens=s.max_batch_tokens,
                   prefix_caching=s.prefix_caching, prefill_dtype=s.prefill_dtype)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return  # already started
        # One thread owns every torch call (load, prefill, decode): OpenMP thread teams are per
        # calling thread, and a second team spinning next to the first halves the speed on 2 cores.
        loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(loaded,), name="tokenway-scheduler", daemon=True)
        self._thread.start()
        try:
            await loaded
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        warm = GenerateRequest("__warmup__", tuple(range(1, 9)), SamplingOptions(temperature=0.0),
                               StoppingOptions(max_tokens=4, ignore_eos=True))
        async for _ in self.generate(warm):
            pass
        log.info("engine warm", extra={"fields": {
            "model": self.model_dir, "dtype": str(self.dtype).removeprefix("torch."), "threads": self.threads,
            "kv_cache_tokens": self._pool.slots, "kv_cache_bytes": self._pool.nbytes,
            "max_batch_tokens": self.max_batch_tokens, "prefix_caching": self.prefix_caching,
            "prefill_dtype": str(self.prefill_dtype).removeprefix("torch.")}})

    def _load_model(self) -> None:
        from transformers import AutoModelForCausalLM  # noqa: PLC0415 - slow import, off the loop
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        hf_logging.disable_progress_bar()  # a terminal progress bar in a service log is noise
        ragged.register()
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=self.dtype,
                                                     attn_implementation=ragged.NAME)
        model.eval()
        head = model.get_output_embeddings()
        rows = head.weight.shape[0] if head is not None else self.facts.logit_rows
        if rows < self.facts.vocab_size:
            raise ValueError(f"{self.model_dir}: the model has {rows} logit rows, fewer than the "
                             f"{self.facts.vocab_size} ids its config and tokenizer promise")
        cfg = model.config.get_text_config()
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        self._pool = KVPool(layers=cfg.num_hidden_layers, kv_heads=kv_heads, head_dim=head_dim,
                            tokens=self.kv_cache_tokens, dtype=self.dtype)
        # multiply-adds per token of the linear layers: sizes a step's work for `_threads_for`
        self._macs_per_token = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
        self._sched = BatchScheduler(self._pool, max_batch_size=self.max_batch_size,
                                     max_batch_tokens=self.max_batch_tokens, prefix_caching=self.prefix_caching)
        self._model = self._prefill_model = model
        if self.prefill_dtype != self.dtype:  # its own copy: from_pretrained keeps RoPE tables etc. in float32
            self._prefill_model = AutoModelForCausalLM.from_pretrained(
                self.model_dir, dtype=self.prefill_dtype, attn_implementation=ragged.NAME).eval()

    async def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._model = self._prefill_model = self._pool = self._sched = None
        gc.collect()

    # ---- the event-loop side ---------------------------------------------------------------

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Chunk]:
        seq = self._submit(request)
        done = False
        try:
            while True:
                chunk = await seq.stream.next()
                done = chunk.finish_reason is not None
                yield chunk
                if done:
                    return
        finally:
            if not done:  # the consumer went away (cancelled call): free the row at the next step
                self._mark_aborted([seq.rid])

    def _submit(self, request: GenerateRequest) -> _Seq:
        params = validate(request, self.facts)
        if self._model is None or self._thread is None:
            raise Unavailable("the model is not loaded", reason="ENGINE_NOT_READY")
        seq = _Seq(request, params, _Stream(asyncio.get_running_loop()), self._eos, self.facts.max_context_length,
                   self.facts.vocab_size)
        with self._lock:
            check_admission(request.request_id, self._seqs, self.max_batch_size, self.max_waiting)
            self._seqs[seq.rid] = seq
            self._waiting.append(seq)
            self._lock.notify_all()
        return seq

    def _mark_aborted(self, ids: Iterable[str]) -> list[str]:
        found = []
        with self._lock:
            for rid in ids:
                seq = self._seqs.get(rid)
                if seq is not None and not seq.aborted:
                    seq.aborted = True
                    found.append(rid)
            if found:
                self._lock.notify_all()
        return found

    async def abort(self, request_ids: Iterable[str]) -> list[str]:
        return self._mark_aborted(request_ids)

    def load(self) -> Load:
        return Load(running=self._running, waiting=len(self._waiting), kv_cache_usage=self._usage,
                    max_batch_size=self.max_batch_size, steps=self._steps)

    def model_info(self) -> ModelInfo:
        return self._info

    def generated_tokens(self, request_id: str) -> int | None:
        """How many tokens the scheduler has produced so far for a running or waiting sequence, delivered
        to its stream or not; None once it has finished (or was never submitted). For tests and tools."""
        with self._lock:
            seq = self._seqs.get(request_id)
            return seq.generated if seq is not None else None

    def memory(self) -> dict[str, int]:
        """The KV pool: its size and what regions hold now, in tokens and bytes. For tests and tools."""
        pool = self._pool
        if pool is None:
            return {}
        sched = self._sched
        held = sched.held() * pool.block
        per_token = pool.nbytes // pool.slots
        prefix = sched.prefix
        return {"pool_tokens": pool.slots, "pool_bytes": pool.nbytes, "held_tokens": held,
                "held_bytes": held * per_token, "preemptions": sched.preemptions, "compactions": sched.compactions,
                "clears": sched.clears,
                "prefix_cache_tokens": prefix.held_blocks * pool.block if prefix else 0,
                "prefix_hits": prefix.hits if prefix else 0, "prefix_hit_tokens": prefix.hit_tokens if prefix else 0}

    def wait_until(self, predicate: Callable[[Load], bool], timeout: float) -> bool:
        """Blocks the calling thread until predicate(load) holds between two scheduler steps, when every
        chunk of the last step is already queued on its event loop; False at the timeout. The predicate
        runs under the engine lock (it may call `load()` or `generated_tokens()`). For tests and tools."""
        waiter = _Waiter(predicate)
        with self._lock:
            if not self._in_step and predicate(self.load()):
                return True
            self._waiters.append(waiter)
        try:
            met = waiter.done.wait(timeout)
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if waiter.error is not None:
            raise waiter.error
        return met

    def _wake_waiters(self) -> None:  # under the lock, between steps
        if not self._waiters:
            return
        load = self.load()
        for waiter in list(self._waiters):
            try:
                met = waiter.predicate(load)
            except Exception as exc:  # noqa: BLE001 - a bad predicate must not kill the scheduler
                waiter.error, met = exc, True
            if met:
                self._waiters.remove(waiter)
                waiter.done.set()

    # ---- the scheduler thread --------------------------------------------------------------

    def _run(self, loaded: asyncio.Future) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)  # OpenMP thread counts are per thread
        self._max_threads = self._step_threads = torch.get_num_threads()
        try:
            self._load_model()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            loaded.get_loop().call_soon_threadsafe(_set_result, loaded, exc)
            return
        loaded.get_loop().call_soon_threadsafe(_set_result, loaded, None)
        sched = self._sched
        with torch.inference_mode():
            while True:
                out: list[tuple[_Seq, Chunk | BaseException]] = []
                with self._lock:
                    while not self._stop and not self._waiting and not sched.running:
                        self._lock.wait()
                    if self._stop:
                        break
                    self._in_step = True
                    for seq in self._take_aborted():
                        self._finish(seq, FinishReason.ABORT, out)
                    works: list[Work] = []
                    try:
                        works, _ = sched.plan(self._waiting)
                    except Exception as exc:  # noqa: BLE001 - a bug must not kill the scheduler silently
                        log.exception("scheduling failed; failing the batch")
                        self._fail_all(exc, out)
                try:
                    if works:
                        self._step(works, out)
                except Exception as exc:  # noqa: BLE001 - a bug must not kill the scheduler silently
                    log.exception("scheduler step failed; failing the batch")
                    self._fail_all(exc, out)
                with self._lock:  # counters first: a reader woken by a final chunk sees them updated
                    self._steps += 1
                    self._running = len(sched.running)
                    self._usage = sched.held() / self._pool.blocks
                self._deliver(out)
                with self._lock:  # then wake wait_until(): this step's chunks are already queued
                    self._in_step = False
                    self._wake_waiters()
        # shutting down: end every stream
        out = []
        with self._lock:
            rest = list(self._seqs.values())
            self._waiting.clear()
        for seq in rest:
            self._finish(seq, FinishReason.ABORT, out)
        self._running, self._usage = 0, 0.0
        self._deliver(out)
        with self._lock:
            self._wake_waiters()

    def _take_aborted(self) -> list[_Seq]:  # under the lock
        dropped = [s for s in self._waiting if s.aborted]
        if dropped:
            self._waiting = collections.deque(s for s in self._waiting if not s.aborted)
        return dropped + [s for s in self._sched.running if s.aborted]

    def _finish(self, seq: _Seq, reason: FinishReason, out: list, chunk: Chunk | None = None) -> None:
        if seq.finished:
            return
        seq.finished = True
        if self._sched is not None:
            self._sched.release(seq, keep=True)
        if chunk is None:
            chunk = Chunk(token_ids=[], completion_tokens=seq.generated, finish_reason=reason,
                          logprobs=[] if seq.params.logprobs is not None else None,
                          prompt_tokens=None if seq.generated else seq.prompt_len)
        out.append((seq, chunk))
        with self._lock:
            if self._seqs.get(seq.rid) is seq:
                del self._seqs[seq.rid]

    def _fail_all(self, exc: Exception, out: list) -> None:
        """Ends every admitted sequence with an internal error (a bug in a step); the queue lives on."""
        err = Internal("the engine failed; see the server log", reason="ENGINE_FAILURE")
        err.__cause__ = exc
        for seq in list(self._sched.running):
            self._sched.release(seq)
            if not seq.finished:
                seq.finished = True
                out.append((seq, err))
                with self._lock:
                    if self._seqs.get(seq.rid) is seq:
                        del self._seqs[seq.rid]

    def _deliver(self, out: list[tuple[_Seq, Chunk | BaseException]]) -> None:
        if not out:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for seq, item in out:
            by_loop.setdefault(seq.stream.loop, []).append((seq.stream, item))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_push_all, items)
            except RuntimeError:  # the loop is closed: nobody is listening
                pass

    def _threads_for(self, tokens: int) -> int:
        """Torch threads for a step of `tokens`: one per WORK_PER_THREAD multiply-adds, at most `threads`.
        Waking a second thread costs more than it saves on a small decode step of a small model, and
        on a shared host it is a core the CPU tier does not get; a prefill chunk is worth every core."""
        return max(1, min(self._max_threads, tokens * self._macs_per_token // WORK_PER_THREAD))

    def _step(self, works: list[Work], out: list) -> None:
        """Runs the model over every work's tokens (prompt chunks through the prefill model when it has its
        own dtype, in a call of their own) and samples for the works that reach their end."""
        if self._prefill_model is self._model:
            groups = [(self._model, works)]
        else:
            groups = [(m, g) for m, g in ((self._prefill_model, [w for w in works if w.prompt]),
                                          (self._model, [w for w in works if not w.prompt])) if g]
        sampling: list[_Seq] = []
        logits: list[torch.Tensor] = []
        for model, group in groups:
            seqs, rows = self._forward(model, group)
            if seqs:
                sampling += seqs
                logits.append(rows)
        self._sched.computed(works)
        if not sampling:
            return
        rows = logits[0] if len(logits) == 1 else torch.cat([x.float() for x in logits])
        tokens = self._sampler.sample(rows, [s.sampling for s in sampling])
        for seq, tok in zip(sampling, tokens):
            self._emit(seq, tok, out)

    def _forward(self, model, works: list[Work]) -> tuple[list[_Seq], torch.Tensor | None]:
        """One model call over the works' tokens, flattened; the sequences that sample and their logits."""
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        segments: list[ragged.Segment] = []
        keep: list[int] = []
        sampling: list[_Seq] = []
        pool = self._pool
        for w in works:
            seq, n, ctx = w.seq, w.n, w.seq.cached
            slot0 = pool.slot(seq.region)
            segments.append(ragged.Segment(len(ids), n, slot0, ctx))
            ids.extend(seq.tokens[ctx:ctx + n])
            positions.extend(range(ctx, ctx + n))
            slots.extend(range(slot0 + ctx, slot0 + ctx + n))
            if w.sample:
                keep.append(len(ids) - 1)
                sampling.append(seq)
            seq.cached = ctx + n
        threads = self._threads_for(len(ids))
        if threads != self._step_threads:
            torch.set_num_threads(threads)
            self._step_threads = threads
        layout = ragged.StepLayout(segments, torch.tensor(slots, dtype=torch.long), pool.k, pool.v)
        with ragged.use_layout(layout):
            res = model(input_ids=torch.tensor([ids], dtype=torch.long),
                        position_ids=torch.tensor([positions], dtype=torch.long), use_cache=False,
                        logits_to_keep=torch.tensor(keep, dtype=torch.long))
        return sampling, res.logits[0]

    def _emit(self, seq: _Seq, token: tuple[int, TokenLogprob | None], out: list) -> None:
        """Records one sampled token and queues its chunk (the last one when the sequence ends)."""
        tid, lp = token
        seq.tokens.append(tid)
        seq.sampling.observe(tid)
        n = seq.generated
        p = seq.params
        reason, stop_id = None, None
        if tid in seq.sampling.stop_ids and n > p.min_tokens:
            reason, stop_id = FinishReason.STOP, tid
        elif n >= p.max_tokens:
            reason = FinishReason.LENGTH
        chunk = Chunk(token_ids=[tid], completion_tokens=n, logprobs=[lp] if lp is not None else None,
                      finish_reason=reason, stop_token_id=stop_id,
                      prompt_tokens=seq.prompt_len if n == 1 else None,
                      cached_tokens=min(seq.prefix_hit, seq.prompt_len) if n == 1 else 0)
        if reason is not None:
            self._finish(seq, reason, out, chunk)
        else:
            out.append((seq, chunk))


def _prefill_dtype(setting: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype prompt chunks run in. `auto`: bfloat16 for a float32 engine on a CPU with native bfloat16
    matrix instructions (AVX512-BF16, AMX), where it runs a prefill chunk's matmuls ~2x faster; decode
    steps stay float32 (bfloat16 matrix-vector products are slower there) and so does the KV pool."""
    if setting == "auto":
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return torch.bfloat16 if dtype == torch.float32 and native else dtype
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[setting]


def _set_result(fut: asyncio.Future, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def _push_all(items: list[tuple[_Stream, Chunk | BaseException]]) -> None:
    for stream, item in items:
        stream.push(item)
