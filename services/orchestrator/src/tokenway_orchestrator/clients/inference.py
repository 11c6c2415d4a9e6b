"""The inference replicas, behind the core's InferencePort: least-loaded routing over ready replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc

from tokenway_common import errors

from ..core.ports import EngineChunk, EngineSpec
from . import translated

log = logging.getLogger("tokenway.orchestrator.inference")
SERVICE = "tokenway.inference.v1.InferenceService"
FINISH = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length", pb.FINISH_REASON_ABORT: "abort"}


class Replica:
    def __init__(self, address: str, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.channel = channel
        self.stub = inference_pb2_grpc.InferenceServiceStub(channel)
        self.in_flight = 0
        self.ready = False
        self.ready_changed = asyncio.Event()
        self._watch: asyncio.Task | None = None

    def watch(self) -> None:
        self._watch = asyncio.create_task(self._watch_health())

    async def _watch_health(self) -> None:
        """Follows the replica's readiness with grpc.health.v1 Watch, reconnecting on failure."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        backoff = 0.1
        while True:
            try:
                async for resp in stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), wait_for_ready=True):
                    ready = resp.status == health_pb2.HealthCheckResponse.SERVING
                    if ready != self.ready:
                        log.info("inference replica %s is %s", self.address, "ready" if ready else "not ready")
                    self.ready = ready
                    self.ready_changed.set()
                    backoff = 0.1
            except grpc.aio.AioRpcError as e:
                if self.ready:
                    log.warning("inference replica %s lost: %s", self.address, e.code().name)
                    self.ready = False
                    self.ready_changed.set()
            await asyncio.sleep(backoff)  # reconnect pacing, not synchronisation
            backoff = min(backoff * 2, 2.0)

    async def close(self) -> None:
        if self._watch:
            self._watch.cancel()
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


class InferenceRouter:
    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas

    def start(self) -> None:
        for r in self.replicas:
            r.watch()

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for r in self.replicas))

    def pick(self, exclude: set[str] = frozenset()) -> Replica:
        ready = [r for r in self.replicas if r.ready and r.address not in exclude]
        if not ready:
            raise errors.Unavailable("no inference replica is ready", reason="NO_READY_REPLICA", retry_after=1.0)
        return min(ready, key=lambda r: r.in_flight)

    async def wait_any_ready(self) -> None:
        while not any(r.ready for r in self.replicas):
            waits = [asyncio.create_task(r.ready_changed.wait()) for r in self.replicas]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            for r in self.replicas:
                r.ready_changed.clear()

    async def model_info(self, timeout: float) -> pb.GetModelInfoResponse:
        """Model info from a ready replica (all replicas must serve one model)."""
        with translated("inference"):
            return await self.pick().stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout)

    async def generate(self, request_id: str, prompt: list[int], spec: EngineSpec,
                       timeout: float | None) -> AsyncIterator[EngineChunk]:
        """Streams one sequence; retries another replica only if one fails before its first message."""
        tried: set[str] = set()
        req = _request(request_id, prompt, spec)
        while True:
            replica = self.pick(tried)
            tried.add(replica.address)
            call = replica.stub.Generate(req, timeout=timeout)
            replica.in_flight += 1
            started = False
            try:
                async for resp in call:
                    started = True
                    yield EngineChunk(
                        token_ids=tuple(resp.token_ids), completion_tokens=resp.completion_tokens,
                        finish_reason=FINISH.get(resp.finish_reason),
                        stop_token_id=resp.stop_token_id if resp.HasField("stop_token_id") else None,
                        logprobs=tuple((lp.logprob, tuple((t.token_id, t.logprob) for t in lp.top)) for lp in resp.logprobs))
                return
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and not started and len(tried) < len(self.replicas):
                    log.warning("replica %s unavailable, trying another", replica.address)
                    continue
                raise errors.from_rpc_error(e, "inference") from None
            finally:
                replica.in_flight -= 1
                call.cancel()  # no-op when finished; aborts the engine request otherwise
