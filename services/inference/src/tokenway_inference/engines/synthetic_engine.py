"""A benchmarking engine: made-up tokens at a fixed step time, no model weights. Never for users.

It measures what the CPU tier (orchestrator, tokenizer, Envoy) adds to a request: the model's cost
is replaced by a fixed `step_ms` per decode step whatever the batch size (5 ms: roughly an 8B model
on an H100), so a benchmark compares the hops against calling this service directly.

Everything the other services see is the real model's: `ModelFacts` (vocabulary, EOS ids, context
length, defaults) and GetModelInfo come from the model directory, only the engine name is
"synthetic". No torch import, no weights: startup reads config.json and tokenizer.json.

One asyncio task on the service's event loop is the scheduler (no threads). Each step it
  1. admits waiting sequences, FIFO, up to `max_batch_size` running, while the reserved
     prompt + max_tokens fit `kv_cache_tokens` (one sequence always fits an empty batch),
  2. waits for the step's absolute deadline (the previous deadline + step_ms; a step that starts
     more than one step late starts at once from now, so lag neither accumulates nor bursts),
  3. emits exactly one token to every running sequence. A newly admitted sequence gets its first
     token at the step that admits it: prefill costs one step.
With nothing running or waiting it sleeps on an event.

Tokens are deterministic per request (the seed, else a hash of request_id and prompt; one draw per
token, so a resumed request skips `resumed_tokens` draws and continues the stream) and drawn
from the "ordinary" ids only: not special, not EOS/BOS/PAD, decoding alone to non-empty text that is
valid UTF-8 without control characters (tab and newline aside). EOS is never generated, so an answer
runs to max_tokens (FinishReason.LENGTH); a request's own stop_token_ids still end it when drawn,
never before min_tokens. Logprobs are made up but well formed: the chosen token first at -0.5, then
distinct ordinary ids at -1.5, -2.5, ...

Aborting a sequence (Abort, or the consumer closing its iterator) removes it at once: its stream
ends with FinishReason.ABORT and its slot and KV reservation are free before the call returns.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import random
from array import array
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from tokenway_common.errors import Internal, Unavailable

from .base import (Chunk, Engine, FinishReason, GenerateRequest, Load, ModelFacts, ModelInfo, ResolvedParams,
                   TokenLogprob, validate, check_admission)

log = logging.getLogger("tokenway.inference.synthetic")

#: Logprob of the chosen token; alternative k (1-based) gets CHOSEN_LOGPROB - k. Their probabilities
#: sum to less than 1 (0.61 + 0.22 + 0.08 + ...), as a real distribution's top entries do.
CHOSEN_LOGPROB = -0.5
#: While busy, one INFO line per this many seconds with the achieved step time.
STATS_EVERY_S = 10.0


def ordinary_token_ids(model_dir: str, facts: ModelFacts) -> list[int]:
    """The ids the engine may emit, ascending: in [0, vocab_size), not special, not EOS/BOS/PAD, and
    decoding alone to non-empty, valid UTF-8 text without control characters other than tab and newline
    (so any sequence of them detokenizes to clean text). Reads tokenizer.json with the `tokenizers`
    library, as `base.tokenizer_vocab_size` does; without one every id but EOS/BOS/PAD qualifies."""
    excluded = set(facts.eos_token_ids)
    excluded.update(i for i in (facts.bos_token_id, facts.pad_token_id) if i is not None)
    root = Path(model_dir)
    path = root / "tokenizer.json"
    if not path.is_file():
        log.warning("no tokenizer.json in the model directory: the synthetic engine emits any id but EOS/BOS/PAD")
        return [i for i in range(facts.vocab_size) if i not in excluded]
    from tokenizers import Tokenizer  # noqa: PLC0415 - startup only

    tok = Tokenizer.from_file(str(path))
    excluded.update(i for i, t in tok.get_added_tokens_decoder().items() if t.special)
    cfg_path = root / "tokenizer_config.json"
    added = json.loads(cfg_path.read_text()).get("added_tokens_decoder") if cfg_path.is_file() else None
    excluded.update(int(i) for i, t in (added or {}).items() if t.get("special"))
    ids = [i for i in range(facts.vocab_size) if i not in excluded]
    texts = tok.decode_batch([[i] for i in ids], skip_special_tokens=False)
    return [i for i, text in zip(ids, texts)
            if text and "\ufffd" not in text and all(c.isprintable() or c in "\n\t" for c in text)]


class _Seq:
    """One sequence: the scheduler appends tokens, the consumer (`generate`) takes them all at once."""

    __slots__ = ("req", "rid", "params", "prompt_len", "reserve", "rng", "stops", "count", "pending",
                 "pending_lp", "finish", "stop_id", "first", "ready", "done", "error")

    def __init__(self, req: GenerateRequest, params: ResolvedParams, context: int, stops: frozenset[int],
                 n_ordinary: int) -> None:
        self.req, self.rid, self.params = req, req.request_id, params
        self.prompt_len = len(req.prompt_token_ids)
        self.reserve = min(self.prompt_len + params.max_tokens, context)
        self.rng = random.Random(params.seed if params.seed is not None else _request_seed(req))
        for _ in range(params.resumed_tokens):  # a resumed sequence: skip the draws of the tokens it already has
            self.rng.randrange(n_ordinary)
        self.stops = stops  # the request's stop ids that can be drawn (EOS never is)
        self.count = 0  # tokens generated so far, read or not
        self.pending: list[int] = []  # generated, not yet read
        self.pending_lp: list[TokenLogprob] | None = [] if params.logprobs is not None else None
        self.finish: FinishReason | None = None
        self.stop_id: int | None = None
        self.first = True  # the next chunk is the first: it carries prompt_tokens
        self.ready = asyncio.Event()
        self.done = False  # finished (any reason): no longer running or waiting
        self.error: Exception | None = None  # the engine failed: raised to the consumer instead of a chunk

    def take(self) -> Chunk:
        """Everything generated since the last call, as one chunk (several tokens for a slow reader)."""
        chunk = Chunk(token_ids=self.pending, completion_tokens=self.count, logprobs=self.pending_lp,
                      finish_reason=self.finish, stop_token_id=self.stop_id,
                      prompt_tokens=self.prompt_len if self.first else None)
        self.first = False
        self.pending = []
        self.pending_lp = [] if self.pending_lp is not None else None
        return chunk


def _request_seed(req: GenerateRequest) -> int:
    """A seed from the request id and the prompt proper (without resumed tokens: a resumed sequence with the
    same id continues the stream its first run started)."""
    h = hashlib.blake2b(req.request_id.encode(), digest_size=8)
    h.update(array("q", req.prompt_token_ids[:len(req.prompt_token_ids) - req.resumed_tokens]).tobytes())
    return int.from_bytes(h.digest(), "little")


class SyntheticEngine(Engine):
    name = "synthetic"

    def __init__(self, model_dir: str, *, model_name: str = "", max_batch_size: int = 32, max_waiting: int = 256,
                 max_model_len: int = 0, kv_cache_tokens: int = 65536, step_ms: float = 5.0) -> None:
        if step_ms <= 0:
            raise ValueError(f"step_ms must be > 0, not {step_ms}")
        self.model_dir = model_dir
        self.facts = ModelFacts.read(model_dir, max_model_len)
        self._info = self.facts.model_info(model_dir, model_name, self.name)
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.kv_cache_tokens = kv_cache_tokens
        self.step_ms = step_ms
        self._ordinary: list[int] = []
        self._ordinary_set: frozenset[int] = frozenset()
        self._waiting: collections.deque[_Seq] = collections.deque()
        self._running: dict[str, _Seq] = {}
        self._seqs: dict[str, _Seq] = {}  # running or waiting, by request id
        self._reserved = 0  # sum of the running sequences' reserve
        self._cached = 0  # prompt + generated tokens of the running sequences (kv_cache_usage)
        self._steps = 0
        self._late_steps = 0  # steps that started more than one step_ms after their deadline
        self._wake = asyncio.Event()
        self._watchers: list[asyncio.Future] = []  # wait_until() calls, woken on every change
        self._task: asyncio.Task | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, s) -> SyntheticEngine:
        return cls(s.model, model_name=s.served_model_name, max_batch_size=s.max_batch_size,
                   max_waiting=s.max_waiting, max_model_len=s.max_model_len, kv_cache_tokens=s.kv_cache_tokens,
                   step_ms=s.synthetic_step_ms)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return  # already started
        self._ordinary = await asyncio.to_thread(ordinary_token_ids, self.model_dir, self.facts)
        if not self._ordinary:
            raise ValueError(f"{self.model_dir}: no token decodes to plain text; the synthetic engine has nothing "
                             "to emit")
        self._ordinary_set = frozenset(self._ordinary)
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tokenway-synthetic-scheduler")
        log.warning("the synthetic engine is for benchmarking only: it emits made-up tokens, %.3g ms per step "
                    "for any batch size, and never runs the model", self.step_ms,
                    extra={"fields": {"model": self.model_dir, "step_ms": self.step_ms,
                                      "max_batch_size": self.max_batch_size, "max_waiting": self.max_waiting,
                                      "kv_cache_tokens": self.kv_cache_tokens,
                                      "ordinary_ids": len(self._ordinary)}})

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for seq in list(self._seqs.values()):
            self._end(seq, FinishReason.ABORT)
        log.info("synthetic engine closed", extra={"fields": {"steps": self._steps, "late_steps": self._late_steps}})

    # ---- the consumer side -----------------------------------------------------------------

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Chunk]:
        seq = self._submit(request)
        try:
            while True:
                while not seq.pending and seq.finish is None:
                    seq.ready.clear()
                    await seq.ready.wait()
                if seq.error is not None:  # the tokens that came before the failure, then the error
                    if seq.pending:
                        chunk = seq.take()
                        chunk.finish_reason = None
                        yield chunk
                    raise seq.error
                chunk = seq.take()
                yield chunk
                if chunk.finish_reason is not None:
                    return
        finally:
            if not seq.done:  # the consumer went away (cancelled call): free the slot now
                self._end(seq, FinishReason.ABORT)

    def _submit(self, request: GenerateRequest) -> _Seq:
        params = validate(request, self.facts)
        if self._task is None or self._closed:
            raise Unavailable("the engine is not started", reason="ENGINE_NOT_READY")
        rid = request.request_id
        check_admission(rid, self._seqs, self.max_batch_size, self.max_waiting)
        stops = frozenset(params.stop_token_ids) & self._ordinary_set
        seq = _Seq(request, params, self.facts.max_context_length, stops, len(self._ordinary))
        self._seqs[rid] = seq
        self._waiting.append(seq)
        self._wake.set()
        self._notify()
        return seq

    async def abort(self, request_ids: Iterable[str]) -> list[str]:
        found = []
        for rid in request_ids:
            seq = self._seqs.get(rid)
            if seq is not None:
                self._end(seq, FinishReason.ABORT)
                found.append(rid)
        return found

    def load(self) -> Load:
        return Load(running=len(self._running), waiting=len(self._waiting),
                    kv_cache_usage=min(1.0, self._cached / self.kv_cache_tokens), max_batch_size=self.max_batch_size,
                    steps=self._steps)

    def model_info(self) -> ModelInfo:
        return self._info

    async def wait_until(self, predicate: Callable[[Load], bool], timeout: float) -> bool:
        """Waits on the event loop until predicate(load()) holds, checked after every step, submission and
        finish; False at the timeout. For tests and tools."""
        loop = asyncio.get_running_loop()

        async def watch() -> None:
            while not predicate(self.load()):
                fut = loop.create_future()
                self._watchers.append(fut)
                await fut

        try:
            await asyncio.wait_for(watch(), timeout)
        except TimeoutError:
            return False
        return True

    def _notify(self) -> None:
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for fut in watchers:
                if not fut.done():
                    fut.set_result(None)

    def _end(self, seq: _Seq, reason: FinishReason, stop_id: int | None = None) -> None:
        """Finishes a running or waiting sequence: out of the batch or queue, its stream told."""
        if seq.done:
            return
        seq.done = True
        seq.finish, seq.stop_id = reason, stop_id
        if self._seqs.get(seq.rid) is seq:
            del self._seqs[seq.rid]
        if self._running.get(seq.rid) is seq:
            del self._running[seq.rid]
            self._reserved -= seq.reserve
            self._cached -= seq.prompt_len + seq.count
        else:
            try:
                self._waiting.remove(seq)
            except ValueError:
                pass
        seq.ready.set()
        self._notify()

    # ---- the scheduler task ----------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        step = self.step_ms / 1000.0
        deadline: float | None = None  # when the current step started (or should have)
        last = stat_start = loop.time()
        stat_steps = stat_late = 0
        stat_busy = 0.0  # seconds of this period spent stepping (idle time left out)
        while True:
            if not self._running and not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                deadline = None
                continue
            now = loop.time()
            if deadline is None:  # idle until now
                deadline = last = now
            elif now - deadline > step:  # more than a whole step behind: start at once, from now
                deadline = now
                self._late_steps += 1
                stat_late += 1
            try:
                self._admit()
                end = deadline + step
                # Always yield, even when late: the consumers and the gRPC handlers share this loop.
                await asyncio.sleep(max(0.0, end - loop.time()))
                self._emit()
            except Exception as exc:  # noqa: BLE001 - a bug must not leave streams hanging
                log.exception("synthetic engine step failed; failing every open sequence")
                self._fail_all(exc)
                deadline = None
                continue
            self._steps += 1
            stat_steps += 1
            deadline = end
            self._notify()
            now = loop.time()
            stat_busy += now - last
            last = now
            if now - stat_start >= STATS_EVERY_S:
                log.info("synthetic engine: %d steps, %.2f ms per step (target %.3g)", stat_steps,
                         1000.0 * stat_busy / stat_steps, self.step_ms,
                         extra={"fields": {"steps": stat_steps, "late_steps": stat_late,
                                           "running": len(self._running), "waiting": len(self._waiting)}})
                stat_start, stat_steps, stat_late, stat_busy = now, 0, 0, 0.0

    def _fail_all(self, exc: Exception) -> None:
        err = Internal("the engine failed; see the server log", reason="ENGINE_FAILURE")
        err.__cause__ = exc
        for seq in list(self._seqs.values()):
            seq.error = err
            self._end(seq, FinishReason.ABORT)

    def _admit(self) -> None:
        """Moves waiting sequences into the batch while rows and the KV budget allow (FIFO)."""
        while self._waiting and len(self._running) < self.max_batch_size:
            head = self._waiting[0]
            if self._running and self._reserved + head.reserve > self.kv_cache_tokens:
                break
            self._waiting.popleft()
            self._running[head.rid] = head
            self._reserved += head.reserve
            self._cached += head.prompt_len

    def _emit(self) -> None:
        """One token for every running sequence; those that reach a stop id or max_tokens finish."""
        ordinary = self._ordinary
        n_ordinary = len(ordinary)
        finished: list[tuple[_Seq, FinishReason, int | None]] = []
        for seq in self._running.values():
            p = seq.params
            n = seq.count + 1
            idx = seq.rng.randrange(n_ordinary)
            tid = ordinary[idx]
            if seq.stops and tid in seq.stops and n <= p.min_tokens:  # no stop before min_tokens: redraw
                for _ in range(n_ordinary):
                    idx = (idx + 1) % n_ordinary
                    tid = ordinary[idx]
                    if tid not in seq.stops:
                        break
            seq.count = n
            seq.pending.append(tid)
            if seq.pending_lp is not None:
                top = ()
                if p.logprobs:  # the chosen token first, then its neighbours in the ordinary list
                    top = ((tid, CHOSEN_LOGPROB),) + tuple((ordinary[(idx + k) % n_ordinary], CHOSEN_LOGPROB - k)
                                                           for k in range(1, min(p.logprobs, n_ordinary)))
                seq.pending_lp.append(TokenLogprob(CHOSEN_LOGPROB, top))
            if seq.stops and tid in seq.stops and n > p.min_tokens:
                finished.append((seq, FinishReason.STOP, tid))
            elif n >= p.max_tokens:
                finished.append((seq, FinishReason.LENGTH, None))
            else:
                seq.ready.set()
        self._cached += len(self._running)
        for seq, reason, stop_id in finished:
            self._end(seq, reason, stop_id)
