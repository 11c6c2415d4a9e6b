"""The CPU default engine: transformers + torch with continuous (iteration-level) batching.

One scheduler thread owns the model and the batch. Each iteration it
  1. drops aborted or cancelled sequences (their KV rows are freed at once, the cache compacted),
  2. admits waiting sequences while the batch has room and the KV budget allows, prefills each one
     alone (exact, unpadded) and merges its KV into the running, left-padded batch cache,
  3. runs one decode step for the whole batch (per-row attention mask and position ids), samples
     one token per row and hands the new tokens to the event loop in one call.
The asyncio loop only queues requests and reads results, so it stays responsive while the model runs.

Padding never leaks into a row: padded key slots are masked out of attention, positions are per
row, and prefill is unpadded, so a greedy sequence gives the same tokens alone or in any batch.

Logprobs are the log-softmax of the *raw* model logits (before penalties, logit bias, temperature
and truncation), like vLLM's default `raw_logprobs`: they describe the model, not the sampler.

Only the decodable vocabulary is ever considered: when the checkpoint pads its embedding past the
tokenizer (`ModelFacts.padded`), each step's logits are cut to their first `vocab_size` columns (a
view, no copy) before anything else, so no padded id is sampled, named in top logprobs or counted in
a logprob's normalisation.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterable

import torch

from tokenway_common.errors import Internal, Unavailable

from .base import (Chunk, Engine, FinishReason, GenerateRequest, Load, ModelFacts, ModelInfo, ResolvedParams,
                   SamplingOptions, StoppingOptions, TokenLogprob, merge_chunks, validate, check_admission)

log = logging.getLogger("tokenway.inference.engine")

_NEG_INF = float("-inf")


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
        self.prompt_len = len(req.prompt_token_ids)
        self.aborted = False  # set under the engine lock by abort()/cancellation
        self.finished = False
        self.generated: list[int] = []
        self.reserve = min(self.prompt_len + params.max_tokens, context)
        gen = torch.Generator()
        gen.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
        self.generator = gen
        stops = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos))
        self.stop_ids = frozenset(stops)
        # ids masked while min_tokens is not reached: every id that could end the sequence (and be sampled)
        self.min_mask = torch.tensor(sorted(i for i in stops | set(eos) if 0 <= i < vocab), dtype=torch.long)
        if params.logit_bias:
            self.bias_ids = torch.tensor(list(params.logit_bias.keys()), dtype=torch.long)
            self.bias_vals = torch.tensor(list(params.logit_bias.values()), dtype=torch.float32)
        else:
            self.bias_ids = self.bias_vals = None


@dataclasses.dataclass(eq=False)
class _Waiter:
    """One wait_until() call: the scheduler sets `done` after the first step that satisfies `predicate`."""

    predicate: Callable[[Load], bool]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    error: Exception | None = None


@dataclasses.dataclass
class _Batch:
    """The running batch: row i of every tensor belongs to rows[i]; the cache is left-padded."""

    rows: list[_Seq]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [B, kv_heads, T, head_dim]
    mask: torch.Tensor  # [B, T] long, 1 where the slot holds a real token
    pos: torch.Tensor  # [B] long: position of the pending token (= real tokens in the cache)
    pending: torch.Tensor  # [B] long: the last sampled token, not yet in the cache
    counts: torch.Tensor  # [B, V] float: how often each id was generated (presence/frequency penalties)
    seen: torch.Tensor  # [B, V] bool: ids in the prompt or generated (repetition penalty)

    @property
    def width(self) -> int:
        return self.mask.shape[1]


def _left_pad(t: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, model_dir: str, *, model_name: str = "", max_batch_size: int = 32, max_waiting: int = 256,
                 max_model_len: int = 0, dtype: str = "float32", threads: int = 0, kv_cache_tokens: int = 65536) -> None:
        self.model_dir = model_dir
        self.facts = ModelFacts.read(model_dir, max_model_len)
        self._info = self.facts.model_info(model_dir, model_name, self.name)
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.kv_cache_tokens = kv_cache_tokens
        self.dtype = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        self.threads = threads
        self._model = None
        self._lock = threading.Condition()
        self._waiting: collections.deque[_Seq] = collections.deque()
        self._seqs: dict[str, _Seq] = {}  # every sequence not yet finished, by request id
        self._batch: _Batch | None = None
        self._running = 0
        self._steps = 0
        self._in_step = False  # between the scheduler taking work and its chunks being queued
        self._waiters: list[_Waiter] = []  # wait_until() calls, checked after each step
        self._stop = False
        self._thread: threading.Thread | None = None
        self._eos = self.facts.eos_token_ids

    @classmethod
    def from_settings(cls, s) -> TransformersEngine:
        return cls(s.model, model_name=s.served_model_name, max_batch_size=s.max_batch_size,
                   max_waiting=s.max_waiting, max_model_len=s.max_model_len, dtype=s.dtype, threads=s.threads,
                   kv_cache_tokens=s.kv_cache_tokens)

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
        log.info("engine warm", extra={"fields": {"model": self.model_dir, "dtype": str(self.dtype).removeprefix("torch."),
                                                    "threads": self.threads}})

    def _load_model(self) -> None:
        from transformers import AutoModelForCausalLM  # noqa: PLC0415 - slow import, off the loop
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        hf_logging.disable_progress_bar()  # a terminal progress bar in a service log is noise
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=self.dtype)
        model.eval()
        head = model.get_output_embeddings()
        rows = head.weight.shape[0] if head is not None else self.facts.logit_rows
        if rows < self.facts.vocab_size:
            raise ValueError(f"{self.model_dir}: the model has {rows} logit rows, fewer than the "
                             f"{self.facts.vocab_size} ids its config and tokenizer promise")
        self._model = model

    async def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._model = None
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
        batch = self._batch
        usage = 0.0
        if batch is not None:
            usage = min(1.0, len(batch.rows) * batch.width / self.kv_cache_tokens)
        return Load(running=self._running, waiting=len(self._waiting), kv_cache_usage=usage,
                    max_batch_size=self.max_batch_size, steps=self._steps)

    def model_info(self) -> ModelInfo:
        return self._info

    def generated_tokens(self, request_id: str) -> int | None:
        """How many tokens the scheduler has produced so far for a running or waiting sequence, delivered
        to its stream or not; None once it has finished (or was never submitted). For tests and tools."""
        with self._lock:
            seq = self._seqs.get(request_id)
            return len(seq.generated) if seq is not None else None

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
        try:
            self._load_model()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            loaded.get_loop().call_soon_threadsafe(_set_result, loaded, exc)
            return
        loaded.get_loop().call_soon_threadsafe(_set_result, loaded, None)
        with torch.inference_mode():
            while True:
                with self._lock:
                    while not self._stop and not self._waiting and self._batch is None:
                        self._lock.wait()
                    if self._stop:
                        break
                    self._in_step = True
                    admitted = self._admit()
                    dropped = self._take_aborted()
                out: list[tuple[_Seq, Chunk | BaseException]] = []
                try:
                    self._drop(dropped, out)
                    for seq in admitted:
                        if seq.aborted:
                            self._finish(seq, FinishReason.ABORT, out)
                        else:
                            self._prefill(seq, out)
                    if self._batch is not None:
                        self._decode(out)
                except Exception as exc:  # noqa: BLE001 - a bug must not kill the scheduler silently
                    log.exception("scheduler step failed; failing the batch")
                    self._fail_all(exc, admitted, out)
                with self._lock:  # counters first: a reader woken by a final chunk sees them updated
                    self._steps += 1
                    self._running = len(self._batch.rows) if self._batch is not None else 0
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
        self._batch, self._running = None, 0
        self._deliver(out)
        with self._lock:
            self._wake_waiters()

    def _admit(self) -> list[_Seq]:
        """Moves waiting sequences into the batch while rows and KV budget allow (FIFO, under the lock)."""
        admitted: list[_Seq] = []
        rows = len(self._batch.rows) if self._batch is not None else 0
        reserved = sum(s.reserve for s in self._batch.rows) if self._batch is not None else 0
        while self._waiting and rows + len(admitted) < self.max_batch_size:
            head = self._waiting[0]
            if not head.aborted and (rows or admitted) and reserved + head.reserve > self.kv_cache_tokens:
                break
            self._waiting.popleft()
            admitted.append(head)
            reserved += head.reserve
        self._running = rows + len(admitted)
        return admitted

    def _take_aborted(self) -> list[_Seq]:
        dropped = [s for s in self._waiting if s.aborted]
        if dropped:
            self._waiting = collections.deque(s for s in self._waiting if not s.aborted)
        if self._batch is not None:
            dropped += [s for s in self._batch.rows if s.aborted]
        return dropped

    def _drop(self, dropped: list[_Seq], out: list) -> None:
        for seq in dropped:
            self._finish(seq, FinishReason.ABORT, out)
        self._compact()

    def _finish(self, seq: _Seq, reason: FinishReason, out: list, chunk: Chunk | None = None) -> None:
        if seq.finished:
            return
        seq.finished = True
        if chunk is None:
            chunk = Chunk(token_ids=[], completion_tokens=len(seq.generated), finish_reason=reason,
                          logprobs=[] if seq.params.logprobs is not None else None,
                          prompt_tokens=None if seq.generated else seq.prompt_len)
        out.append((seq, chunk))
        with self._lock:
            if self._seqs.get(seq.rid) is seq:
                del self._seqs[seq.rid]

    def _fail_all(self, exc: Exception, admitted: list[_Seq], out: list) -> None:
        err = Internal("the engine failed; see the server log", reason="ENGINE_FAILURE")
        err.__cause__ = exc
        victims = list(admitted) + (list(self._batch.rows) if self._batch is not None else [])
        self._batch = None
        for seq in victims:
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

    def _compact(self) -> None:
        """Removes finished rows and the leading columns that only padding uses."""
        b = self._batch
        if b is None:
            return
        keep = [i for i, s in enumerate(b.rows) if not s.finished]
        if len(keep) == len(b.rows):
            return
        if not keep:
            self._batch = None
            return
        idx = torch.tensor(keep, dtype=torch.long)
        mask = b.mask.index_select(0, idx)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        mask = mask[:, first:]
        kv = [(k.index_select(0, idx)[:, :, first:], v.index_select(0, idx)[:, :, first:]) for k, v in b.kv]
        self._batch = _Batch(rows=[b.rows[i] for i in keep], kv=kv, mask=mask, pos=b.pos.index_select(0, idx),
                             pending=b.pending.index_select(0, idx), counts=b.counts.index_select(0, idx),
                             seen=b.seen.index_select(0, idx))

    def _prefill(self, seq: _Seq, out: list) -> None:
        from transformers import DynamicCache  # noqa: PLC0415

        model = self._model
        ids = torch.tensor([seq.req.prompt_token_ids], dtype=torch.long)
        res = model(input_ids=ids, past_key_values=DynamicCache(config=model.config), use_cache=True,
                    logits_to_keep=1)
        kv = [(layer.keys, layer.values) for layer in res.past_key_values.layers]
        vocab = self.facts.vocab_size
        counts = torch.zeros(1, vocab)
        seen = torch.zeros(1, vocab, dtype=torch.bool)
        seen[0, ids[0]] = True
        token = self._sample(res.logits[:, -1, :], [seq], counts, seen)[0]
        seq_done = self._emit(seq, token, out)
        if seq_done:
            return
        counts[0, token[0]] += 1
        seen[0, token[0]] = True
        n = seq.prompt_len
        mask = torch.ones(1, n, dtype=torch.long)
        pos = torch.tensor([n], dtype=torch.long)
        pending = torch.tensor([token[0]], dtype=torch.long)
        b = self._batch
        if b is None:
            self._batch = _Batch([seq], kv, mask, pos, pending, counts, seen)
            return
        width = max(b.width, n)
        pad_old, pad_new = width - b.width, width - n
        kv = [(torch.cat([_left_pad(k0, 2, pad_old), _left_pad(k1, 2, pad_new)]),
               torch.cat([_left_pad(v0, 2, pad_old), _left_pad(v1, 2, pad_new)]))
              for (k0, v0), (k1, v1) in zip(b.kv, kv)]
        self._batch = _Batch(rows=b.rows + [seq], kv=kv,
                             mask=torch.cat([_left_pad(b.mask, 1, pad_old), _left_pad(mask, 1, pad_new)]),
                             pos=torch.cat([b.pos, pos]), pending=torch.cat([b.pending, pending]),
                             counts=torch.cat([b.counts, counts]), seen=torch.cat([b.seen, seen]))

    def _decode(self, out: list) -> None:
        from transformers import DynamicCache  # noqa: PLC0415

        b = self._batch
        model = self._model
        n = len(b.rows)
        mask = torch.cat([b.mask, torch.ones(n, 1, dtype=torch.long)], dim=1)
        cache = DynamicCache(config=model.config)
        for layer, (k, v) in zip(cache.layers, b.kv):  # adopt the tensors without copying them
            layer.lazy_initialization(k, v)
            layer.keys, layer.values = k, v
        res = model(input_ids=b.pending[:, None], attention_mask=mask, position_ids=b.pos[:, None],
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
        b.kv = [(layer.keys, layer.values) for layer in res.past_key_values.layers]
        b.mask = mask
        b.pos = b.pos + 1
        tokens = self._sample(res.logits[:, -1, :], b.rows, b.counts, b.seen)
        ids = torch.tensor([t for t, _ in tokens], dtype=torch.long)
        rows = torch.arange(n)
        b.counts[rows, ids] += 1
        b.seen[rows, ids] = True
        b.pending = ids
        for seq, tok in zip(b.rows, tokens):
            self._emit(seq, tok, out)
        self._compact()

    def _emit(self, seq: _Seq, token: tuple[int, TokenLogprob | None], out: list) -> bool:
        """Records one sampled token and queues its chunk; True when the sequence ended."""
        tid, lp = token
        seq.generated.append(tid)
        n = len(seq.generated)
        p = seq.params
        reason, stop_id = None, None
        if tid in seq.stop_ids and n > p.min_tokens:
            reason, stop_id = FinishReason.STOP, tid
        elif n >= p.max_tokens:
            reason = FinishReason.LENGTH
        chunk = Chunk(token_ids=[tid], completion_tokens=n, logprobs=[lp] if lp is not None else None,
                      finish_reason=reason, stop_token_id=stop_id,
                      prompt_tokens=seq.prompt_len if n == 1 else None)
        if reason is not None:
            self._finish(seq, reason, out, chunk)
            return True
        out.append((seq, chunk))
        return False

    def _sample(self, logits: torch.Tensor, rows: list[_Seq], counts: torch.Tensor,
                seen: torch.Tensor) -> list[tuple[int, TokenLogprob | None]]:
        """One token per row from [B, rows] logits, each row with its own parameters and generator.

        Only the decodable columns [0, vocab_size) take part: padded rows are cut off first (a view)."""
        logits = logits[:, :self.facts.vocab_size].float()
        params = [s.params for s in rows]
        raw_lp = None
        if any(p.logprobs is not None for p in params):
            raw_lp = torch.log_softmax(logits, dim=-1)
        x = logits.clone()
        rep = [p.repetition_penalty for p in params]
        if any(r != 1.0 for r in rep):
            r = torch.tensor(rep)[:, None]
            x = torch.where(seen, torch.where(x > 0, x / r, x * r), x)
        freq = [p.frequency_penalty for p in params]
        pres = [p.presence_penalty for p in params]
        if any(freq) or any(pres):
            x = x - torch.tensor(freq)[:, None] * counts - torch.tensor(pres)[:, None] * (counts > 0).float()
        for i, s in enumerate(rows):
            if s.bias_ids is not None:
                x[i].index_add_(0, s.bias_ids, s.bias_vals)
            if len(s.generated) < s.params.min_tokens and len(s.min_mask):
                x[i, s.min_mask] = _NEG_INF
        chosen = x.argmax(dim=-1)
        sampled = [i for i, p in enumerate(params) if not p.greedy]
        if sampled:
            idx = torch.tensor(sampled)
            xs = x.index_select(0, idx) / torch.tensor([params[i].temperature for i in sampled])[:, None]
            vocab = xs.shape[-1]
            ks = torch.tensor([min(params[i].top_k, vocab) if params[i].top_k > 0 else vocab for i in sampled])
            width = int(ks.max())
            if width < vocab:  # every row has a top-k: only the best `width` candidates can survive
                sorted_x, order = xs.topk(width, dim=-1)
            else:
                sorted_x, order = xs.sort(dim=-1, descending=True)
            ranks = torch.arange(sorted_x.shape[-1])[None, :]
            remove = ranks >= ks[:, None]
            probs = torch.softmax(sorted_x.masked_fill(remove, _NEG_INF), dim=-1)
            top_p = torch.tensor([params[i].top_p for i in sampled])
            remove |= ((probs.cumsum(dim=-1) - probs) >= top_p[:, None]) & (top_p < 1)[:, None]
            min_p = torch.tensor([params[i].min_p for i in sampled])
            remove |= probs < (min_p * probs[:, 0])[:, None]
            remove[:, 0] = False  # the best token always survives
            sorted_x = sorted_x.masked_fill(remove, _NEG_INF)
            probs = torch.softmax(sorted_x, dim=-1)
            for j, i in enumerate(sampled):
                k = torch.multinomial(probs[j], 1, generator=rows[i].generator)
                chosen[i] = order[j, k[0]]
        ids = chosen.tolist()
        result: list[tuple[int, TokenLogprob | None]] = []
        if raw_lp is None:
            return [(t, None) for t in ids]
        top_n = max(p.logprobs or 0 for p in params)
        top_vals = top_ids = None
        if top_n:
            top_vals, top_ids = raw_lp.topk(top_n, dim=-1)
            top_vals, top_ids = top_vals.tolist(), top_ids.tolist()
        chosen_lp = raw_lp.gather(1, chosen[:, None])[:, 0].tolist()
        for i, (t, p) in enumerate(zip(ids, params)):
            if p.logprobs is None:
                result.append((t, None))
                continue
            top = tuple(zip(top_ids[i][:p.logprobs], top_vals[i][:p.logprobs])) if p.logprobs else ()
            result.append((t, TokenLogprob(chosen_lp[i], top)))
        return result


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
