"""The orchestrator as a tokenway_common App: peers connected and checked before SERVING."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import grpc
from tokenway.v1 import chat_pb2, chat_pb2_grpc, completion_pb2, completion_pb2_grpc, model_pb2, model_pb2_grpc

from tokenway_common import errors
from tokenway_common.channels import ReadinessFollower, peer_channel
from tokenway_text import Detokenizer, spec_digest

from .clients.breaker import Breaker
from .clients.inference import InferenceRouter, Replica
from .clients.tokenizer import TokenizerClient
from .config import OrchestratorSettings
from .policy.admission import Admission
from .policy.auth import Authenticator, AuthInterceptor
from .policy.gate import Gate
from .policy.usage import UsageWriter
from .store import SqliteStore, open_store
from .core.detokenize import LocalDetokenizer
from .core.ports import ModelInfo
from .core.service import Orchestrator
from .servicers.chat import ChatServicer
from .servicers.completion import CompletionServicer
from .servicers.models import ModelServicer

log = logging.getLogger("tokenway.orchestrator")
TOKENIZER_SERVICE = "tokenway.tokenizer.v1.TokenizerService"


class OrchestratorApp:
    service_names = (
        chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
        completion_pb2.DESCRIPTOR.services_by_name["CompletionService"].full_name,
        model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    )

    def __init__(self, settings: OrchestratorSettings) -> None:
        self.settings = settings
        self.started_at = int(time.time())
        self.system_fingerprint = ""
        self._orchestrator: Orchestrator | None = None
        self._tokenizer_channel: grpc.aio.Channel | None = None
        self.tokenizer_health: ReadinessFollower | None = None
        self.router: InferenceRouter | None = None
        self._set_ready: Callable[[bool], None] = lambda ready: None
        self._started = False
        # The store opens (and migrates) here, before the port is bound: a bad store fails the start.
        self.store = open_store(settings.store)
        self.auth = Authenticator(self.store if settings.auth else None,
                                  blocking_reads=not isinstance(self.store, SqliteStore))
        self.interceptors = (AuthInterceptor(self.auth),)
        self.admission = Admission(settings.max_running_sequences, settings.max_queued_requests,
                                   {"interactive": settings.max_interactive_queue_seconds,
                                    "batch": settings.max_queue_seconds}, min(settings.batch_share, 1.0))
        self.gate = Gate(self.store, UsageWriter(self.store), self.admission, f"{socket.gethostname()}:{os.getpid()}:"
                         f"{uuid.uuid4().hex[:8]}")

    def register(self, server: grpc.aio.Server) -> None:
        chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatServicer(self), server)
        completion_pb2_grpc.add_CompletionServiceServicer_to_server(CompletionServicer(self), server)
        model_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self), server)

    def orchestrator(self) -> Orchestrator:
        if self._orchestrator is None:
            raise errors.Unavailable("the orchestrator is starting", reason="NOT_READY", retry_after=1.0)
        return self._orchestrator

    def follow_readiness(self, set_ready: Callable[[bool], None]) -> None:
        """Ready iff started, the tokenizer is ready and at least one inference replica is ready."""
        self._set_ready = set_ready

    def _readiness_changed(self, _ready: bool = False) -> None:
        tokenizer = self.tokenizer_health is not None and self.tokenizer_health.ready
        inference = self.router is not None and any(r.ready for r in self.router.replicas)
        self._set_ready(self._started and tokenizer and inference)

    async def start(self) -> None:
        s = self.settings
        if not self.auth.enabled:
            log.warning("auth is off (TOKENWAY_ORCHESTRATOR_AUTH=off): the API is open to every caller, unlimited")
        self.gate.start()
        self._tokenizer_channel = peer_channel(s.tokenizer_address, s, (TOKENIZER_SERVICE,))
        tokenizer = TokenizerClient(self._tokenizer_channel, s.peer_timeout_seconds)
        self.router = InferenceRouter([
            Replica(a, peer_channel(a, s, ("tokenway.inference.v1.InferenceService",)),
                    Breaker(s.breaker_failures, s.breaker_open_seconds, s.breaker_close_successes))
            for a in s.inference_addresses], policy=s.routing, load_poll_seconds=s.load_poll_seconds)
        self.tokenizer_health = ReadinessFollower(self._tokenizer_channel, TOKENIZER_SERVICE, f"tokenizer {s.tokenizer_address}",
                                                  on_change=self._readiness_changed)
        self.tokenizer_health.start()
        self.router.start(on_change=self._readiness_changed)
        log.info("waiting for the tokenizer at %s and inference at %s", s.tokenizer_address, ",".join(s.inference_addresses))
        try:
            await asyncio.wait_for(asyncio.gather(
                self.tokenizer_health.wait_for(True),
                self.router.wait_any_ready()), s.startup_timeout_seconds)
        except TimeoutError:
            raise RuntimeError(f"peers not ready after {s.startup_timeout_seconds:.0f}s") from None
        tinfo, minfo = await asyncio.gather(tokenizer.info(s.peer_timeout_seconds),
                                            self.router.model_info(s.peer_timeout_seconds))
        if tinfo.fingerprint != minfo.tokenizer_fingerprint:
            raise RuntimeError(f"tokenizer mismatch: the tokenizer service serves {tinfo.name} "
                               f"(fingerprint {tinfo.fingerprint[:12]}) but the inference model {minfo.model_name} "
                               f"was served with fingerprint {minfo.tokenizer_fingerprint[:12]}")
        token_bytes = await tokenizer.vocabulary(s.peer_timeout_seconds)
        detokenizer = await self._local_detokenizer(tokenizer, tinfo) if s.detokenize == "local" else None
        # ids valid in requests: those the tokenizer can decode (a checkpoint may pad its embedding past them)
        model = ModelInfo(name=minfo.model_name, context_length=minfo.max_context_length,
                          vocab_size=min(minfo.vocab_size, tinfo.vocab_size, len(token_bytes)),
                          eos_token_ids=tuple(minfo.eos_token_ids), default_max_tokens=minfo.default_max_tokens,
                          tokenizer_fingerprint=minfo.tokenizer_fingerprint, engine=minfo.engine,
                          max_chars_per_token=tinfo.max_chars_per_token)
        self.system_fingerprint = f"fp_{minfo.engine}_{minfo.tokenizer_fingerprint[:10]}"
        self._orchestrator = Orchestrator(tokenizer, self.router, model, max_n=s.max_n, max_stop_strings=s.max_stop_strings,
                                          max_stop_string_chars=s.max_stop_string_chars, max_prompts=s.max_prompts,
                                          token_bytes=token_bytes, detokenizer=detokenizer)
        log.info("serving model %s (context %d, engine %s, detokenizing %s)", model.name, model.context_length,
                 model.engine, s.detokenize)
        if not s.max_running_sequences:
            capacity = await self.router.batch_capacity(s.peer_timeout_seconds)
            self.admission.max_running = 2 * capacity or 256
        log.info("admission: %d sequences running at most (batch %d), %d requests waiting (interactive at most "
                 "%.1fs, batch %.1fs)", self.admission.max_running, self.admission.batch_limit, self.admission.max_queued,
                 self.admission.max_wait["interactive"], self.admission.max_wait["batch"])
        self._started = True
        self._readiness_changed()

    async def _local_detokenizer(self, tokenizer: TokenizerClient, tinfo) -> LocalDetokenizer:
        """The tokenizer service's own tokenizer, rebuilt here: checked whole (sha256), the same files as the
        served model's (fingerprint) and the same vocabulary, or the orchestrator does not start."""
        spec = await tokenizer.spec(self.settings.peer_timeout_seconds)
        if spec_digest(spec.tokenizer_json) != spec.tokenizer_json_sha256:
            raise RuntimeError("the tokenizer spec from the tokenizer service arrived damaged (sha256 mismatch)")
        if spec.fingerprint != tinfo.fingerprint:
            raise RuntimeError(f"the tokenizer spec's fingerprint {spec.fingerprint[:12]} is not the served "
                               f"tokenizer's {tinfo.fingerprint[:12]}")
        detokenizer = await asyncio.to_thread(Detokenizer.from_json, spec.tokenizer_json)
        if detokenizer.vocab_size != tinfo.vocab_size:
            raise RuntimeError(f"the rebuilt tokenizer has {detokenizer.vocab_size} ids, the tokenizer service "
                               f"{tinfo.vocab_size}")
        log.info("detokenizing in process with tokenizer %s (%d ids, %s)", spec.fingerprint[:12],
                 detokenizer.vocab_size, "byte-level" if detokenizer.byte_level else "windowed decode")
        return LocalDetokenizer(detokenizer)

    async def on_shutdown(self, grace: float) -> None:
        """Lets requests in flight finish for most of the grace period, then ends those still running with
        UNAVAILABLE, so that every caller learns its answer is incomplete (REST streams get an in-band error
        event) instead of being cut off when the server stops."""
        await asyncio.sleep(max(grace - min(1.0, grace / 2), 0.0))  # the grace budget itself, not synchronisation
        if self._orchestrator is not None:
            ended = self._orchestrator.interrupt_all(errors.Unavailable(
                "the server is shutting down; retry the request", reason="SHUTTING_DOWN", retry_after=1.0))
            if ended:
                log.warning("shutdown grace period nearly over: ended %d request(s) still running", ended)

    async def close(self) -> None:
        await self.gate.close()
        await asyncio.to_thread(self.store.close)
        if self.tokenizer_health:
            await self.tokenizer_health.close()
        if self.router:
            await self.router.close()
        if self._tokenizer_channel:
            await self._tokenizer_channel.close()
