"""The orchestrator as a tokenway_common App: SERVING once a model of its registry is ready."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2
from tokenway.v1 import chat_pb2, chat_pb2_grpc, completion_pb2, completion_pb2_grpc, model_pb2, model_pb2_grpc

from tokenway_common import errors

from .clients.inference import InferenceRouter
from .config import OrchestratorSettings
from .policy.admission import Admission
from .policy.auth import CALLER, Authenticator, AuthInterceptor
from .policy.gate import Gate
from .policy.usage import UsageWriter
from .store import SqliteStore, open_store
from .core.service import Orchestrator
from .metrics import OrchestratorMetrics
from .registry import HEALTH_PREFIX, ModelEntry, Registry, load_spec
from .servicers.chat import ChatServicer
from .servicers.completion import CompletionServicer
from .servicers.models import ModelServicer

log = logging.getLogger("tokenway.orchestrator")
SETTLE_SECONDS = 10.0  # once a model is ready, how long the start waits for the other peers to be heard from


class OrchestratorApp:
    service_names = (
        chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
        completion_pb2.DESCRIPTOR.services_by_name["CompletionService"].full_name,
        model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    )

    def __init__(self, settings: OrchestratorSettings) -> None:
        self.settings = settings
        self.started_at = int(time.time())
        self._set_ready: Callable[[bool], None] = lambda ready: None
        self._health = None
        self._health_tasks: set[asyncio.Task] = set()
        self._started = False
        self.metrics = OrchestratorMetrics()
        # The models file is read and the store opens (and migrates) here, before the port is bound: a bad
        # file or store fails the start.
        self.registry = Registry(settings, load_spec(settings), on_change=self._readiness_changed,
                                 set_health=self._publish_model, metrics=self.metrics)
        self.store = open_store(settings.store)
        self.auth = Authenticator(self.store if settings.auth else None,
                                  blocking_reads=not isinstance(self.store, SqliteStore))
        self.interceptors = (AuthInterceptor(self.auth),)
        self.admission = Admission(settings.max_running_sequences, settings.max_queued_requests,
                                   {"interactive": settings.max_interactive_queue_seconds,
                                    "batch": settings.max_queue_seconds}, min(settings.batch_share, 1.0),
                                   report=self.metrics.admission)
        self.gate = Gate(self.store, UsageWriter(self.store), self.admission, f"{socket.gethostname()}:{os.getpid()}:"
                         f"{uuid.uuid4().hex[:8]}", metrics=self.metrics)

    def register(self, server: grpc.aio.Server) -> None:
        chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatServicer(self), server)
        completion_pb2_grpc.add_CompletionServiceServicer_to_server(CompletionServicer(self), server)
        model_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self), server)

    def route(self, model: str) -> ModelEntry:
        """The model serving a request for `model` (its fallback when it is down), authorized for the caller."""
        if not self._started:
            raise errors.Unavailable("the orchestrator is starting", reason="NOT_READY", retry_after=1.0)
        caller = CALLER.get()
        entry = self.registry.lookup(model)
        caller.authorize_any(model, entry.name)
        return self.registry.route(model, caller.allows)

    @property
    def router(self) -> InferenceRouter:
        """The one model's replicas (a single-model deployment; tests)."""
        (entry,) = self.registry.models.values()
        return entry.router

    def orchestrator(self, model: str = "") -> Orchestrator:
        """A built model's core: `model`'s, or the only one's."""
        entries = [self.registry.lookup(model)] if model else list(self.registry.models.values())
        if len(entries) != 1 or entries[0].core is None:
            raise errors.Unavailable("the orchestrator is starting", reason="NOT_READY", retry_after=1.0)
        return entries[0].core

    def follow_readiness(self, set_ready: Callable[[bool], None]) -> None:
        """Ready iff started and at least one model is ready (a ready tokenizer and inference replica)."""
        self._set_ready = set_ready

    def use_health(self, servicer) -> None:
        """Each model's readiness is published as the health of tokenway.v1.ModelService/<model>."""
        self._health = servicer

    def _publish_model(self, name: str, ready: bool) -> None:
        self.metrics.ready(name.removeprefix(HEALTH_PREFIX), ready)
        if self._health is None:
            return
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        task = asyncio.get_running_loop().create_task(self._health.set(name, status))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    def _readiness_changed(self) -> None:
        self._set_ready(self._started and self.registry.any_ready())

    async def start(self) -> None:
        s = self.settings
        if not self.auth.enabled:
            log.warning("auth is off (TOKENWAY_ORCHESTRATOR_AUTH=off): the API is open to every caller, unlimited")
        self.gate.start()
        await self.registry.start()
        spec = self.registry.spec
        log.info("waiting for a model: tokenizers %s, inference replicas %s%s",
                 ",".join(t.address for t in spec.tokenizers), ",".join(r.address for r in spec.replicas),
                 f" (models file {s.models})" if s.models else "")
        try:
            await asyncio.wait_for(self.registry.wait(self.registry.any_ready), s.startup_timeout_seconds)
        except TimeoutError:
            raise RuntimeError(f"no model ready after {s.startup_timeout_seconds:.0f}s") from None
        try:  # the other peers that are up are found too (a peer that is down does not hold the start up long)
            await asyncio.wait_for(self.registry.wait(self.registry.settled), SETTLE_SECONDS)
        except TimeoutError:
            log.warning("starting without the peers that did not answer within %.0fs", SETTLE_SECONDS)
        if not s.max_running_sequences:
            capacity = sum([await e.router.batch_capacity(s.peer_timeout_seconds) for e in self.registry.models.values()])
            self.admission.max_running = 2 * capacity or 256
        log.info("admission: %d sequences running at most (batch %d), %d requests waiting (interactive at most "
                 "%.1fs, batch %.1fs)", self.admission.max_running, self.admission.batch_limit, self.admission.max_queued,
                 self.admission.max_wait["interactive"], self.admission.max_wait["batch"])
        self._started = True
        self.registry.set_started()

    async def on_shutdown(self, grace: float) -> None:
        """Lets requests in flight finish for most of the grace period, then ends those still running with
        UNAVAILABLE, so that every caller learns its answer is incomplete (REST streams get an in-band error
        event) instead of being cut off when the server stops."""
        await asyncio.sleep(max(grace - min(1.0, grace / 2), 0.0))  # the grace budget itself, not synchronisation
        ended = 0
        for entry in list(self.registry.models.values()):
            if entry.core is not None:
                ended += entry.core.interrupt_all(errors.Unavailable(
                    "the server is shutting down; retry the request", reason="SHUTTING_DOWN", retry_after=1.0))
        if ended:
            log.warning("shutdown grace period nearly over: ended %d request(s) still running", ended)

    async def close(self) -> None:
        await self.gate.close()
        await asyncio.to_thread(self.store.close)
        await self.registry.close()
