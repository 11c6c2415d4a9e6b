"""The inference replicas, behind the core's InferencePort: prefix-cache-aware, balanced routing over ready
replicas (or least-loaded), circuit breakers, retries before the first token, mid-stream migration."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc

from tokenway_common import errors, tracing
from tokenway_common.channels import ReadinessFollower

from ..core.ports import EngineChunk, EngineSpec
from . import public_error, translated
from .breaker import Breaker, RetryBudget, jitter
from .routing import MIN_GAIN_BLOCKS, PrefixIndex, balanced, block_hashes

log = logging.getLogger("tokenway.orchestrator.inference")
SERVICE = "tokenway.inference.v1.InferenceService"
GENERATE = f"{SERVICE}/Generate"
FINISH = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length", pb.FINISH_REASON_ABORT: "abort"}
# a replica's own failures (what its breaker counts); the others are the request's or the caller's doing
FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                      grpc.StatusCode.DATA_LOSS})


class Replica:
    """One inference replica: its channel, its stub, its load, and its readiness (a health follower)."""

    def __init__(self, address: str, channel: grpc.aio.Channel, breaker: Breaker | None = None,
                 weight: float = 1.0) -> None:
        self.address = address
        self.channel = channel
        self.stub = inference_pb2_grpc.InferenceServiceStub(channel)
        self.in_flight = 0  # this orchestrator's sequences on it
        self.engine_load = 0  # its engine's running + waiting sequences (every orchestrator's), polled
        self.max_batch = 0  # its engine's most sequences in one batch (GetLoad; 0: not known yet)
        self.calls = 0  # Generate calls sent to it
        self.weight = weight  # declared capacity: at equal load per unit of weight, the replicas are equally busy
        self.health = ReadinessFollower(channel, SERVICE, f"inference replica {address}")
        self.breaker = breaker or Breaker()
        # Does it serve the model it is routed for? Checked (GetModelInfo) each time it becomes ready; a
        # replica built without a registry is trusted.
        self.accepted = True
        self.declared = ""  # the model it is listed under ("": it serves whatever GetModelInfo says)
        self.info: pb.GetModelInfoResponse | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.health.ready and self.accepted

    def begin(self) -> None:
        self.in_flight += 1
        self.calls += 1
        self._idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Waits until no sequence of this orchestrator runs on it (True), or `timeout` passed (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    @property
    def ready_changed(self) -> asyncio.Event:
        """Set on every health change (consumers clear it)."""
        return self.health.changed

    def watch(self) -> None:
        self.health.start()

    @property
    def load(self) -> int:
        """Sequences on it: this orchestrator's (exact, now) or its engine's (every orchestrator's, polled),
        whichever is more."""
        return max(self.in_flight, self.engine_load)

    @property
    def busy(self) -> float:
        """Its load per unit of declared capacity (weight): what routing compares."""
        return self.load / self.weight

    async def close(self) -> None:
        await self.health.close()
        await self.channel.close()


def _request(request_id: str, prompt: list[int], spec: EngineSpec) -> pb.GenerateRequest:
    s = pb.SamplingParams(logit_bias=dict(spec.logit_bias))
    for name in ("temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty",
                 "repetition_penalty"):
        value = getattr(spec, name)
        if value is not None:
            setattr(s, name, value)
    req = pb.GenerateRequest(
        request_id=request_id, prompt_token_ids=prompt, sampling=s,
        stopping=pb.StoppingParams(max_tokens=spec.max_tokens, min_tokens=spec.min_tokens, ignore_eos=spec.ignore_eos,
                                   stop_token_ids=spec.stop_token_ids))
    if spec.logprobs is not None:
        req.logprobs = spec.logprobs
    return req


MAX_MIGRATIONS = 2  # how many times one sequence may move to another replica after tokens were streamed


def _rest_of(spec: EngineSpec, done: int) -> EngineSpec:
    """The spec of a sequence that already produced `done` tokens, for the replica that continues it."""
    if not done:
        return spec
    return dataclasses.replace(spec, max_tokens=spec.max_tokens - done, min_tokens=max(0, spec.min_tokens - done))


class InferenceRouter:
    """The replicas of one model. Their list changes while it runs (`add`, `remove`: a reload, a DNS
    re-resolution); their health is followed by whoever made them (the registry, or `start`)."""

    def __init__(self, replicas: list[Replica], budget: RetryBudget | None = None, policy: str = "prefix",
                 load_poll_seconds: float = 0.0) -> None:
        self.replicas = list(replicas)
        self.budget = budget or RetryBudget()
        self.policy = policy  # "prefix" (prefix-cache-aware, balanced), "least_load" or "round_robin" (to compare)
        self._turn = -1
        self.load_poll_seconds = load_poll_seconds  # 0: route by this orchestrator's own in-flight counts
        self._poller: asyncio.Task | None = None
        self.routed: Callable[[str], None] | None = None  # told each replica address a call is sent to (metrics)
        self.prefixes = PrefixIndex()

    def start(self, on_change: Callable[[bool], None] | None = None) -> None:
        """Follows every replica's readiness (a router used without a registry); `on_change(any_ready)` runs
        on each replica's change."""
        for r in self.replicas:
            r.health.add_callback(lambda ready, a=r.address: None if ready else self.forget(a))
            if on_change is not None:
                r.health.add_callback(lambda _ready: on_change(any(x.ready for x in self.replicas)))
            r.watch()
        self.poll_loads()

    def poll_loads(self) -> None:
        if self.load_poll_seconds > 0 and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_loads())

    def add(self, replica: Replica, order: list[str] | None = None) -> None:
        """Routes to `replica` too (kept in `order`, a list of addresses, when given)."""
        if replica not in self.replicas:
            self.replicas.append(replica)
        if order:
            rank = {a: i for i, a in enumerate(order)}
            self.replicas.sort(key=lambda r: rank.get(r.address, len(rank)))

    def remove(self, replica: Replica) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)
        self.forget(replica.address)

    def forget(self, address: str) -> None:
        """A replica went away: whatever it cached is gone."""
        self.prefixes.forget(address)

    async def _poll_loads(self) -> None:
        """Keeps each ready replica's engine load (GetLoad: running + waiting) fresh, so that orchestrators
        sharing replicas see each other's work."""
        async def one(r: Replica) -> None:
            try:
                load = await r.stub.GetLoad(pb.GetLoadRequest(), timeout=max(1.0, 2 * self.load_poll_seconds))
                r.engine_load, r.max_batch = load.running + load.waiting, load.max_batch_size
            except grpc.aio.AioRpcError:
                r.engine_load = 0  # its readiness (health Watch) decides whether it is used at all
        while True:
            await asyncio.gather(*(one(r) for r in list(self.replicas) if r.ready))
            await asyncio.sleep(self.load_poll_seconds)  # the polling period, not synchronisation

    async def close(self, replicas: bool = True) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if replicas:
            await asyncio.gather(*(r.close() for r in self.replicas))

    def available(self) -> bool:
        """Would a sequence find a replica now?"""
        return any(r.ready and r.breaker.allows() for r in self.replicas)

    def pick(self, exclude: set[str] = frozenset(), hashes: list[int] | None = None, affinity: str = "") -> Replica:
        """Among the ready replicas whose breaker lets calls by: the session's own (`affinity`: a session or user
        key, rendezvous-hashed over the replicas, so it moves only when its replica goes) or, without one, the
        one holding the longest run of the prompt's leading blocks (`hashes`; policy "prefix"), while the
        balance guard allows; else the least busy (sequences in flight per unit of weight; round-robin: in
        turn)."""
        ready = [r for r in self.replicas if r.ready and r.address not in exclude]
        allowed = [r for r in ready if r.breaker.allows()]
        if not allowed:
            why = "no inference replica is ready" if not ready else \
                f"every ready inference replica is failing (circuit open: {', '.join(r.address for r in ready)})"
            raise errors.Unavailable(why, reason="NO_READY_REPLICA", retry_after=1.0)
        least = min(allowed, key=lambda r: (r.busy, r.calls / r.weight))  # ties: the one sent least so far
        if self.policy == "round_robin":
            self._turn += 1
            return allowed[self._turn % len(allowed)]
        if affinity:
            own = max(allowed, key=lambda r: hashlib.blake2b(f"{affinity}|{r.address}".encode(), digest_size=8).digest())
            if balanced(own.busy, least.busy, own.max_batch):
                return own
            return least
        if self.policy == "prefix" and hashes:
            best = max(allowed, key=lambda r: (self.prefixes.matched(r.address, hashes), -r.busy))
            gain = self.prefixes.matched(best.address, hashes) - self.prefixes.matched(least.address, hashes)
            # only a prefix worth a prefill beats load: an opening every prompt shares (a chat template, a
            # common first line) matches everywhere it was sent and would starve a replica that has none
            if gain >= MIN_GAIN_BLOCKS and balanced(best.busy, least.busy, best.max_batch):
                return best
            # no prefix worth it elsewhere: among the least busy, the one holding most of it, else the one
            # filled least, so that new prefixes spread over the caches
            calm = [r for r in allowed if r.busy <= least.busy]
            return min(calm, key=lambda r: (-self.prefixes.matched(r.address, hashes), self.prefixes.size(r.address),
                                            r.calls / r.weight))
        return least

    async def wait_any_ready(self) -> None:
        if any(r.ready for r in self.replicas):
            return
        waits = [asyncio.create_task(r.health.wait_for(True)) for r in self.replicas]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def model_info(self, timeout: float) -> pb.GetModelInfoResponse:
        """Model info from a ready replica (all replicas must serve one model)."""
        with translated("inference"):
            return await self.pick().stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout)

    async def batch_capacity(self, timeout: float) -> int:
        """The sum of the ready replicas' max_batch_size (GetLoad); 0 when none says."""
        async def one(r: Replica) -> int:
            try:
                r.max_batch = (await r.stub.GetLoad(pb.GetLoadRequest(), timeout=timeout)).max_batch_size
                return r.max_batch
            except grpc.aio.AioRpcError:
                return 0
        return sum(await asyncio.gather(*(one(r) for r in self.replicas if r.ready)))

    async def generate(self, request_id: str, prompt: list[int], spec: EngineSpec,
                       timeout: float | None, affinity: str = "") -> AsyncIterator[EngineChunk]:
        """Streams one sequence.

        - A replica that is unavailable before the sequence's first message is retried on another, after a
          jittered pause, within the retry budget.
        - One lost mid-stream (UNAVAILABLE: dead, unreachable, shutting down) hands the sequence to another,
          which continues from the prompt plus the tokens already streamed (at most MAX_MIGRATIONS times):
          the caller sees one stream. The tokens already streamed are sent as `resumed_tokens`: the
          embedded engine counts them as generated (penalties) and advances a seeded sampler past them, so
          greedy and seeded output are the unbroken run's; vLLM treats them as prompt (greedy output is
          still the same without penalties; a seeded stream restarts).
        - Every outcome feeds the replica's breaker (a failure, a success, or neither when the caller left).
        """
        tried: set[str] = set()
        produced: list[int] = []  # tokens already handed to the caller
        moves = retries = 0
        self.budget.called()
        hashes = block_hashes(prompt) if self.policy == "prefix" else None
        try:
            while True:
                replica = self.pick(tried, hashes, affinity)
                tried.add(replica.address)
                if hashes:
                    self.prefixes.record(replica.address, hashes)
                base = len(produced)
                req = _request(request_id if not moves else f"{request_id}-m{moves}", prompt + produced,
                               _rest_of(spec, base))
                if base:  # the engine counts them as generated: penalties and a seeded stream go on as unbroken
                    req.resumed_tokens = base
                replica.breaker.started()
                # the CLIENT span of this attempt; the request's stream span (current) names the replica
                span, md = tracing.peer_call(GENERATE, replica.address, {
                    "tokenway.sequence_id": req.request_id, "tokenway.prompt_tokens": len(req.prompt_token_ids),
                    "tokenway.resumed_tokens": base or None})
                tracing.current().set("tokenway.replica", replica.address)
                call = replica.stub.Generate(req, timeout=timeout, metadata=md)
                replica.begin()
                if self.routed is not None:
                    self.routed(replica.address)
                started, outcome = False, replica.breaker.released
                try:
                    while (resp := await call.read()) is not grpc.aio.EOF:  # one layer less than `async for`
                        if not started:
                            started = True
                            span.event("first_token")
                        chunk = EngineChunk(
                            token_ids=tuple(resp.token_ids), completion_tokens=base + resp.completion_tokens,
                            finish_reason=FINISH.get(resp.finish_reason),
                            stop_token_id=resp.stop_token_id if resp.HasField("stop_token_id") else None,
                            logprobs=tuple((lp.logprob, tuple((t.token_id, t.logprob) for t in lp.top))
                                           for lp in resp.logprobs) if resp.logprobs else (),
                            cached_tokens=resp.prompt_info.cached_tokens
                            if resp.HasField("prompt_info") and not moves else None)
                        produced.extend(resp.token_ids)
                        yield chunk
                    outcome = replica.breaker.succeeded
                    return
                except grpc.aio.AioRpcError as e:
                    span.end(e)
                    if e.code() in FAILURES:
                        outcome = replica.breaker.failed
                    lost = e.code() == grpc.StatusCode.UNAVAILABLE
                    if lost and not started and any(r.address not in tried for r in self.replicas) \
                            and self.budget.take():
                        retries += 1
                        log.warning("replica %s unavailable, trying another", replica.address)
                        await asyncio.sleep(jitter(retries))  # a jittered pause before the retry
                        continue
                    if lost and started and moves < MAX_MIGRATIONS and any(
                            r.ready and r.address not in tried for r in self.replicas):
                        moves += 1
                        log.warning("replica %s lost mid-stream after %d tokens of %s (%s); continuing on another",
                                    replica.address, len(produced), request_id, e.details())
                        stream = tracing.current()
                        stream.event("migration", {"tokenway.replica": replica.address, "tokenway.tokens": len(produced)})
                        stream.set("tokenway.migrations", moves)
                        continue
                    raise public_error(e, "inference") from None
                except BaseException as e:  # the caller left (cancelled, closed): no error of the replica's
                    span.end(e)
                    raise
                finally:
                    span.end()
                    replica.end()
                    outcome()
                    call.cancel()  # no-op when finished; aborts the engine request otherwise
        finally:
            for _ in range(retries):
                self.budget.done()
