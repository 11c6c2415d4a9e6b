"""One request's generation: n choices per prompt, streamed as text deltas with exact usage.

Each choice runs the inference stream into the tokenizer's streaming detokenizer (which matches
stop strings), and the choices' events are merged into one ordered stream. Closing the stream
(client gone, deadline, error in a sibling choice) cancels every choice, which cancels both
downstream calls and so the engine request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence

from tokenway_common import errors, tracing

from .ports import DetokenizerPort, EngineChunk, EngineSpec, InferencePort, ModelInfo, TokenizerPort

log = logging.getLogger("tokenway.orchestrator.requests")
PROMPT_CONTEXT_TOKENS = 8  # prompt tail the detokenizer sees, so the first token decodes as in context


@dataclasses.dataclass(frozen=True)
class TokenLogprob:
    token: str  # the text this token added to the stream the caller saw
    logprob: float
    top: tuple[tuple[str, float, bytes], ...]  # (text, logprob, real bytes) per alternative
    bytes: bytes = b""  # the token's real bytes (a lone byte of a UTF-8 character stays that one byte)


@dataclasses.dataclass(frozen=True)
class ChoiceEvent:
    index: int
    text: str
    first: bool = False
    finish_reason: str | None = None
    stop_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    tokens: int = 0  # the choice's completion tokens up to and including this event (what it bills so far)


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of prompt_tokens, reused from the engine's prefix cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything needed to generate: prompts (token ids) and per-prompt engine specs."""

    request_id: str
    prompts: list[list[int]]
    specs: list[EngineSpec]  # one per prompt (max_tokens may differ by prompt length)
    n: int
    stop: tuple[str, ...]
    include_stop: bool
    skip_special_tokens: bool
    want_logprobs: bool
    affinity: str = ""  # a session or user key: its sequences prefer one replica


class Pipeline:
    def __init__(self, tokenizer: TokenizerPort, inference: InferencePort, model: ModelInfo,
                 token_bytes: Sequence[bytes] = (), detokenizer: DetokenizerPort | None = None) -> None:
        self.tokenizer = tokenizer
        # In process (core.detokenize) or, without one, the tokenizer service's DetokenizeStream per choice.
        self.detokenizer: DetokenizerPort = detokenizer if detokenizer is not None else tokenizer
        self.inference = inference
        self.model = model
        # Logprobs without a round trip: every id's real bytes (the tokenizer's vocabulary table) and the
        # text an alternative token shows on its own.
        self._bytes = list(token_bytes)
        self._texts = [b.decode("utf-8", errors="replace") for b in self._bytes]
        self._running: set[asyncio.Queue] = set()  # one per request in flight

    def interrupt_all(self, exc: BaseException) -> int:
        """Ends every request in flight with `exc` (raised where its events are read, so a stream ends with
        an error its caller sees); returns how many there were."""
        for queue in self._running:
            queue.put_nowait(exc)
        return len(self._running)

    async def run(self, job: Job, timeout: float | None) -> AsyncIterator[ChoiceEvent | Usage]:
        """Yields ChoiceEvents as they are produced, then one Usage. Traced as the request's `stream` span (current
        in the choices' tasks, so that their Generate calls are its children): the usage and finish reasons as
        attributes, an event at the first text."""
        with tracing.span("stream", {"tokenway.model": self.model.name, "tokenway.completion_id": job.request_id,
                                     "tokenway.choices": len(job.prompts) * job.n}) as span:
            started = time.monotonic()
            finishes: dict[int, str] = {}
            progress: dict[int, int] = {}  # tokens generated so far, per choice
            cached: dict[int, int] = {}  # prompt tokens the engine reused, per choice
            queue: asyncio.Queue[ChoiceEvent | BaseException | None] = asyncio.Queue()
            tasks: list[asyncio.Task[int]] = []
            for p, prompt in enumerate(job.prompts):
                for j in range(job.n):
                    index = p * job.n + j
                    spec = job.specs[p]
                    if spec.seed is not None and job.n > 1:
                        spec = dataclasses.replace(spec, seed=spec.seed + j)
                    tasks.append(asyncio.create_task(self._choice(job, index, prompt, spec, queue, timeout, progress,
                                                                  cached)))
            for t in tasks:
                t.add_done_callback(lambda t: queue.put_nowait(None if t.cancelled() or t.exception() is None
                                                               else t.exception()))
            self._running.add(queue)
            outcome: BaseException | None = None
            finished, first = False, True
            try:
                pending = len(tasks)
                while pending:
                    item = await queue.get()
                    if item is None:
                        pending -= 1
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        if item.finish_reason is not None:
                            finishes[item.index] = item.finish_reason
                        if first:
                            first = False
                            span.event("first_token")
                        yield item
                # a prompt counts once however many choices it has: its cached part is what none of them computed
                usage = Usage(prompt_tokens=sum(len(p) for p in job.prompts),
                              completion_tokens=sum(t.result() for t in tasks),
                              cached_tokens=sum(min(cached.get(p * job.n + j, 0) for j in range(job.n))
                                                for p in range(len(job.prompts))))
                log.info("%s done", job.request_id, extra={"fields": {
                    "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                    "choices": len(tasks), "finish": ",".join(sorted(set(finishes.values()))),
                    "ms": round((time.monotonic() - started) * 1e3, 1)}})
                span.update({"tokenway.prompt_tokens": usage.prompt_tokens,
                             "tokenway.completion_tokens": usage.completion_tokens,
                             "tokenway.cached_tokens": usage.cached_tokens,
                             "tokenway.finish_reason": ",".join(sorted(set(finishes.values())))})
                finished = True
                yield usage
            except BaseException as exc:
                if not finished:
                    outcome = exc
                raise
            finally:
                self._running.discard(queue)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if outcome is not None:
                    self._log_unfinished(job, outcome, progress, started)

    @staticmethod
    def _log_unfinished(job: Job, exc: BaseException, progress: dict[int, int], started: float) -> None:
        """One line per request that did not finish, like the line of a finished one."""
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            outcome, reason = "cancelled", "CLIENT_GONE"
        elif isinstance(exc, errors.TokenwayError):
            outcome, reason = "failed", exc.reason
        else:
            outcome, reason = "failed", type(exc).__name__
        log.info("%s %s", job.request_id, outcome, extra={"fields": {
            "reason": reason, "prompt_tokens": sum(len(p) for p in job.prompts),
            "completion_tokens": sum(progress.values()), "choices": len(job.prompts) * job.n,
            "ms": round((time.monotonic() - started) * 1e3, 1)}})

    async def _choice(self, job: Job, index: int, prompt: list[int], spec: EngineSpec,
                      out: asyncio.Queue, timeout: float | None, progress: dict[int, int],
                      cached: dict[int, int]) -> int:
        """Runs one choice; returns its billed completion tokens."""
        gen = self.inference.generate(f"{job.request_id}-{index}", prompt, spec, timeout, affinity=job.affinity)
        detok = self.detokenizer.detokenize_stream(prompt[-PROMPT_CONTEXT_TOKENS:], job.skip_special_tokens,
                                                 job.stop, job.include_stop, timeout)
        first, consumed = True, 0
        try:
            async for chunk in gen:
                if chunk.cached_tokens is not None:
                    cached[index] = chunk.cached_tokens
                last = chunk.finish_reason is not None
                if not chunk.token_ids and not last:
                    continue
                res = await detok.push(chunk.token_ids, last)
                used = res.num_tokens - consumed
                consumed = progress[index] = res.num_tokens
                logprobs = self._logprobs(chunk, used, res.token_texts) if job.want_logprobs else None
                if res.matched_stop is not None:
                    out.put_nowait(ChoiceEvent(index, res.text, first, "stop", res.matched_stop, logprobs,
                                               res.num_tokens))
                    return res.num_tokens
                if last:
                    out.put_nowait(ChoiceEvent(index, res.text, first, chunk.finish_reason,
                                               self._stop_reason(chunk), logprobs, chunk.completion_tokens))
                    return chunk.completion_tokens
                if res.text or logprobs:
                    out.put_nowait(ChoiceEvent(index, res.text, first, logprobs=logprobs, tokens=res.num_tokens))
                    first = False
            raise errors.Unavailable("the inference stream ended before the sequence finished",
                                     reason="INFERENCE_STREAM_TRUNCATED")
        finally:
            await gen.aclose()
            await detok.aclose()

    def _stop_reason(self, chunk: EngineChunk) -> str | None:
        if chunk.stop_token_id is None or chunk.stop_token_id in self.model.eos_token_ids:
            return None
        return str(chunk.stop_token_id)

    def _token(self, tid: int) -> tuple[str, bytes]:
        if 0 <= tid < len(self._bytes):
            return self._texts[tid], self._bytes[tid]
        return "", b""

    def _logprobs(self, chunk: EngineChunk, used: int, token_texts: Sequence[str]) -> tuple[TokenLogprob, ...]:
        """The logprobs of the `used` tokens of `chunk`: each chosen token's text is what it added to the
        caller's stream (`token_texts`, from the streaming detokenizer), its bytes its real bytes."""
        out = []
        for k, (tid, (chosen, top)) in enumerate(zip(chunk.token_ids[:used], chunk.logprobs[:used])):
            text, raw = self._token(tid)
            alternatives = tuple((alt, lp, alt_bytes) for t, lp in top for alt, alt_bytes in (self._token(t),))
            out.append(TokenLogprob(token_texts[k] if k < len(token_texts) else text, chosen, alternatives, raw))
        return tuple(out)
