"""The model registry: which models this orchestrator serves, on which replicas, with which tokenizers.

Every inference replica and tokenizer is a peer followed by its health Watch. Each time a replica becomes
ready it is asked what it serves (GetModelInfo), each tokenizer its fingerprint (GetTokenizerInfo):

  - a replica listed under a model serves that model, and is refused (logged, never routed to) when its
    tokenizer fingerprint is not the model's; a discovered one serves the model it names;
  - a model's tokenizers are those listed under it, else every shared tokenizer with its fingerprint;
  - a model is built (vocabulary, detokenizer, limits: a `core.Orchestrator`) once it has a replica and
    a tokenizer, and it is ready while it has a ready replica and a ready tokenizer.

The configuration (`spec.RegistrySpec`) may change while serving: `apply` reconciles the peers and the
models with a new one (a reloaded models file, new DNS answers). A removed replica takes no new work and
is closed once its streams end; a removed model is refused at once (NOT_FOUND), its streams run on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

import grpc
from tokenway.inference.v1 import inference_pb2 as ipb

from tokenway_common import errors
from tokenway_common.channels import peer_channel
from tokenway_text import Detokenizer, spec_digest

from ..clients.breaker import Breaker
from ..clients.inference import SERVICE as INFERENCE_SERVICE
from ..clients.inference import InferenceRouter, Replica
from ..config import OrchestratorSettings
from ..core.detokenize import LocalDetokenizer
from ..core.ports import ModelInfo
from ..core.service import Orchestrator
from . import spec as specs
from .tokenizers import SERVICE as TOKENIZER_SERVICE
from .tokenizers import TokenizerPeer, TokenizerPool, identify

log = logging.getLogger("tokenway.orchestrator.registry")
HEALTH_PREFIX = "tokenway.v1.ModelService/"  # + a model's name: its readiness, on the health service
RETRY_BUILD_SECONDS = 2.0


@dataclasses.dataclass
class ModelEntry:
    name: str
    spec: specs.ModelSpec
    router: InferenceRouter
    tokenizers: TokenizerPool = dataclasses.field(default_factory=TokenizerPool)
    declared: bool = True  # in the models file (else discovered from its replicas)
    fingerprint: str = ""  # its tokenizer's, from its first replica
    info: ipb.GetModelInfoResponse | None = None
    core: Orchestrator | None = None
    created: int = 0  # when it was first ready (unix seconds)
    system_fingerprint: str = ""
    building: asyncio.Task | None = None
    ready: bool = False  # as last published

    @property
    def available(self) -> bool:
        """Can it take a request now? (Built, a ready tokenizer, a ready replica whose circuit is closed.)"""
        return self.core is not None and self.tokenizers.ready and self.router.available()

    def check_ready(self) -> bool:
        return self.core is not None and self.tokenizers.ready and any(r.ready for r in self.router.replicas)


class Registry:
    def __init__(self, settings: OrchestratorSettings, spec: specs.RegistrySpec, *,
                 on_change: Callable[[], None] = lambda: None,
                 set_health: Callable[[str, bool], None] = lambda name, ready: None, metrics=None) -> None:
        """`metrics`: an OrchestratorMetrics, whose per-replica counts each model's router feeds."""
        self.settings = settings
        self.metrics = metrics
        self.spec = specs.RegistrySpec()
        self._pending_spec = spec
        self.replicas: dict[str, Replica] = {}
        self.tokenizers: dict[str, TokenizerPeer] = {}
        self.models: dict[str, ModelEntry] = {}
        self.names: dict[str, str] = {}  # a name or alias -> the model's name
        self._resolved: dict[str, list[str]] = {}  # dns:/// address -> the addresses it gave last
        self._order: list[str] = []  # replica addresses in the order configured
        self._on_change = on_change
        self._set_health = set_health
        self.started = False  # the orchestrator is up: models' health may say SERVING
        self.changed = asyncio.Event()  # set on every change (consumers clear it)
        self._tasks: set[asyncio.Task] = set()
        self._loops: list[asyncio.Task] = []
        self._file_stamp: tuple[int, int] | None = None
        self.reloads = 0  # applied reloads, for logs and tests

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if s.models:
            self._file_stamp = _stamp(s.models)
        await self._resolve_all(self._pending_spec)
        self.apply(self._pending_spec)
        if any(r.address.startswith(specs.DNS_SCHEME) for r in self.spec.replicas + self.spec.tokenizers) \
                and s.dns_refresh_seconds > 0:
            self._loops.append(asyncio.create_task(self._dns_loop(), name="registry:dns"))
        if s.models and s.reload_seconds > 0:
            self._loops.append(asyncio.create_task(self._file_loop(), name="registry:reload"))
        if s.models:
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload_now)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread: polling only
                pass

    async def close(self) -> None:
        for t in self._loops:
            t.cancel()
        if self.settings.models:
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        for t in list(self._tasks):
            t.cancel()
        for e in self.models.values():
            await e.router.close(replicas=False)
        await asyncio.gather(*(r.close() for r in self.replicas.values()),
                             *(t.close() for t in self.tokenizers.values()), return_exceptions=True)

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- serving -----------------------------------------------------------------------------------------

    def served(self) -> list[ModelEntry]:
        """The ready models, by name."""
        return sorted((e for e in self.models.values() if e.ready), key=lambda e: e.name)

    def lookup(self, name: str) -> ModelEntry:
        """The model `name` (or alias) names; INVALID_ARGUMENT when empty, NOT_FOUND when none."""
        if not name:
            raise errors.InvalidArgument("model is required", reason="INVALID_REQUEST",
                                         field_violations=[("model", "must name a served model")],
                                         metadata={"param": "model"})
        entry = self.models.get(self.names.get(name, name))
        if entry is None:
            known = ", ".join(f"'{e.name}'" for e in self.served()) or "none ready now"
            raise errors.NotFound(f"The model '{errors.clip(name, 100)}' does not exist; this deployment serves "
                                  f"{known}", reason="MODEL_NOT_FOUND", metadata={"model": name, "param": "model"})
        return entry

    def route(self, name: str, allows: Callable[[str], bool] = lambda model: True) -> ModelEntry:
        """The model that serves a request for `name`: that model when it can take a request, else its
        fallback (when configured, ready, and `allows` it), else UNAVAILABLE."""
        entry = self.lookup(name)
        if entry.available:
            return entry
        fallback = self.models.get(self.names.get(entry.spec.fallback, "")) if entry.spec.fallback else None
        if fallback is not None and fallback.available and allows(fallback.name):
            log.info("model %s unavailable: served by its fallback %s", entry.name, fallback.name)
            return fallback
        raise errors.Unavailable(f"The model '{entry.name}' has no ready replica now; retry shortly",
                                 reason="MODEL_UNAVAILABLE", retry_after=1.0, metadata={"model": entry.name})

    # -- reconciling -------------------------------------------------------------------------------------

    def apply(self, spec: specs.RegistrySpec) -> None:
        """Makes the peers and models those of `spec` (DNS names as last resolved)."""
        self.spec = spec
        names: dict[str, str] = {}
        for m in spec.models:
            for n in (m.name, *m.aliases):
                names[n] = m.name
        self.names = names
        for m in spec.models:
            entry = self.models.get(m.name)
            if entry is None:
                self.models[m.name] = self._entry(m.name, m, declared=True)
            else:
                entry.spec, entry.declared = m, True
                entry.router.policy = m.routing or self.settings.routing
                if entry.core is not None:
                    entry.core.limits = self._limits(m, entry.core.model)
        for name, entry in list(self.models.items()):
            if entry.declared and spec.model(name) is None:
                self._drop_model(entry)
        # replicas: the wanted concrete addresses, each with the spec it came from
        wanted: dict[str, specs.ReplicaSpec] = {}
        for r in spec.replicas:
            for address in self._expand(r.address):
                wanted.setdefault(address, r)
        self._order = list(wanted)
        for address in [a for a in self.replicas if a not in wanted]:
            self._drop_replica(self.replicas.pop(address))
        for address, r in wanted.items():
            replica = self.replicas.get(address)
            if replica is None:
                replica = self.replicas[address] = self._replica(address, r)
            replica.weight = r.weight
            if replica.declared != r.model:
                replica.declared = r.model
                self._detach(replica)
                if replica.info is not None:
                    self._assign(replica)
        # tokenizers
        listed: dict[str, set[str]] = {}
        for t in spec.tokenizers:
            for address in self._expand(t.address):
                listed.setdefault(address, set()).add(t.model)
        for address in [a for a in self.tokenizers if a not in listed]:
            peer = self.tokenizers.pop(address)
            self._spawn(peer.close(), f"close:{address}")
        for address, models in listed.items():
            peer = self.tokenizers.get(address)
            if peer is None:
                peer = self.tokenizers[address] = self._tokenizer(address)
            peer.listed = models
        for entry in list(self.models.values()):
            if not entry.declared and not entry.router.replicas and not any(
                    r.declared == "" and r.info is not None and r.info.model_name == entry.name
                    for r in self.replicas.values()):
                self._drop_model(entry)
        self._changed()

    def _entry(self, name: str, m: specs.ModelSpec, declared: bool) -> ModelEntry:
        router = InferenceRouter([], policy=m.routing or self.settings.routing,
                                 load_poll_seconds=self.settings.load_poll_seconds)
        router.poll_loads()
        if self.metrics is not None:
            router.routed = self.metrics.router(name)
        self._set_health(HEALTH_PREFIX + name, False)  # known, not ready yet (a Watch sees NOT_SERVING, not UNKNOWN)
        return ModelEntry(name, m, router, declared=declared)

    def _drop_model(self, entry: ModelEntry) -> None:
        log.info("model %s removed", entry.name)
        self.models.pop(entry.name, None)
        if entry.building is not None:
            entry.building.cancel()
        for r in list(entry.router.replicas):
            entry.router.remove(r)
            r.accepted = False
        self._spawn(entry.router.close(replicas=False), f"close:{entry.name}")
        if entry.ready:
            entry.ready = False
            self._set_health(HEALTH_PREFIX + entry.name, False)

    def _replica(self, address: str, r: specs.ReplicaSpec) -> Replica:
        s = self.settings
        replica = Replica(address, peer_channel(address, s, (INFERENCE_SERVICE,)),
                          Breaker(s.breaker_failures, s.breaker_open_seconds, s.breaker_close_successes), r.weight)
        replica.accepted, replica.declared = False, r.model

        def changed(ready: bool) -> None:
            if replica not in self.replicas.values():
                return
            if ready:
                self._spawn(self._identify(replica), f"identify:{address}")
            else:
                replica.accepted = False
                for e in self.models.values():
                    e.router.forget(address)
                self._changed()
        replica.health.add_callback(changed)
        replica.watch()
        return replica

    def _drop_replica(self, replica: Replica) -> None:
        self._detach(replica)
        replica.accepted = False
        log.info("inference replica %s removed; closing it once its %d sequence(s) end", replica.address,
                 replica.in_flight)

        async def close() -> None:
            await replica.drain(self.settings.request_timeout_seconds)
            await replica.close()
        self._spawn(close(), f"close:{replica.address}")

    def _tokenizer(self, address: str) -> TokenizerPeer:
        s = self.settings
        peer = TokenizerPeer(address, peer_channel(address, s, (TOKENIZER_SERVICE,)), s.peer_timeout_seconds)

        def changed(ready: bool) -> None:
            if self.tokenizers.get(address) is not peer:
                return
            if ready:
                async def read() -> None:
                    if await identify(peer, s.peer_timeout_seconds):
                        self._changed()
                self._spawn(read(), f"identify:{address}")
            else:
                peer.info = None
                self._changed()
        peer.health.add_callback(changed)
        peer.health.start()
        return peer

    async def _identify(self, replica: Replica) -> None:
        try:
            replica.info = await replica.stub.GetModelInfo(ipb.GetModelInfoRequest(),
                                                           timeout=self.settings.peer_timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            log.warning("inference replica %s: cannot read its model info: %s", replica.address, exc.code().name)
            return
        if replica.health.ready and self.replicas.get(replica.address) is replica:
            self._assign(replica)

    def _detach(self, replica: Replica) -> None:
        for e in self.models.values():
            if replica in e.router.replicas:
                e.router.remove(replica)

    def _expected(self, entry: ModelEntry) -> set[str]:
        """The tokenizer fingerprints a model with tokenizers of its own may be served with (as known now)."""
        if not entry.spec.tokenizers_listed:
            return set()
        return {p.fingerprint for p in self.tokenizers.values() if p.info is not None and entry.name in p.listed}

    def _refuse(self, replica: Replica, why: str) -> None:
        if replica.accepted or any(replica in e.router.replicas for e in self.models.values()):
            log.error("inference replica %s: %s: not routing to it", replica.address, why)
        self._detach(replica)
        replica.accepted = False

    def _assign(self, replica: Replica, notify: bool = True) -> None:
        """Routes to `replica` for the model it serves, when it may."""
        info = replica.info
        declared = replica.declared
        name = declared or self.names.get(info.model_name, info.model_name)
        entry = self.models.get(name)
        if entry is None:
            entry = self.models[name] = self._entry(name, specs.ModelSpec(name), declared=False)
            log.info("model %s discovered on inference replica %s", name, replica.address)
        expected = self._expected(entry)
        if expected and info.tokenizer_fingerprint not in expected:
            self._refuse(replica, f"it serves {info.model_name} with tokenizer {info.tokenizer_fingerprint[:12]}, "
                                  f"not one of model {entry.name}'s tokenizers")
            if notify:
                self._changed()
            return
        live = [r for r in entry.router.replicas if r is not replica and r.ready]
        if entry.fingerprint and info.tokenizer_fingerprint != entry.fingerprint:
            if live:
                self._refuse(replica, f"it serves {info.model_name} with tokenizer {info.tokenizer_fingerprint[:12]}, "
                                      f"but model {entry.name} is served with tokenizer {entry.fingerprint[:12]}")
                if notify:
                    self._changed()
                return
            log.warning("model %s changed tokenizer (%s -> %s): rebuilding it", entry.name, entry.fingerprint[:12],
                        info.tokenizer_fingerprint[:12])
            if entry.building is not None:
                entry.building.cancel()
            entry.core, entry.building, entry.fingerprint = None, None, ""
        for e in self.models.values():
            if e is not entry and replica in e.router.replicas:
                e.router.remove(replica)
        if not entry.fingerprint:
            entry.fingerprint, entry.info = info.tokenizer_fingerprint, info
        entry.router.add(replica, self._order)
        replica.accepted = True
        if notify:
            self._changed()

    def _changed(self) -> None:
        """After any change: tokenizer pools, builds, readiness, health."""
        for entry in list(self.models.values()):
            expected = self._expected(entry)
            if expected and entry.fingerprint and entry.fingerprint not in expected:
                # its first replica was not one of its own tokenizers' model: start over (below, every
                # replica is assigned again, so those serving the right model are found)
                log.warning("model %s: its tokenizers serve %s, not %s: choosing its replicas again", entry.name,
                            ",".join(f[:12] for f in sorted(expected)), entry.fingerprint[:12])
                if entry.building is not None:
                    entry.building.cancel()
                entry.core, entry.building, entry.fingerprint, entry.info = None, None, "", None
                for r in list(entry.router.replicas):
                    self._detach(r)
                    r.accepted = False
        # a replica refused earlier is looked at again: the replicas it disagreed with may be gone, or its
        # model may have started over
        for r in list(self.replicas.values()):
            if r.info is not None and r.health.ready and not r.accepted:
                self._assign(r, notify=False)
        for entry in self.models.values():
            entry.tokenizers.peers = [
                p for p in self.tokenizers.values()
                if p.info is not None and p.fingerprint == entry.fingerprint
                and (entry.name in p.listed if entry.spec.tokenizers_listed else "" in p.listed)]
            if entry.core is None and entry.building is None and entry.info is not None and entry.tokenizers.ready:
                entry.building = self._spawn(self._build(entry), f"build:{entry.name}")
        for entry in self.models.values():
            ready = self.started and entry.check_ready()
            if ready != entry.ready:
                entry.ready = ready
                if ready and not entry.created:
                    entry.created = int(time.time())
                log.log(logging.INFO if ready else logging.WARNING, "model %s is %s", entry.name,
                        "ready" if ready else "not ready")
                self._set_health(HEALTH_PREFIX + entry.name, ready)
        self.changed.set()
        self._on_change()

    def set_started(self) -> None:
        self.started = True
        self._changed()

    def any_ready(self) -> bool:
        return any(e.check_ready() for e in self.models.values())

    def settled(self) -> bool:
        """Has every peer answered once, every ready one been identified, and every model that can be
        built been built? (What a start waits for, briefly, once a model is ready.)"""
        return (all(r.health.answered and (r.info is not None or not r.health.ready) for r in self.replicas.values())
                and all(t.health.answered and (t.info is not None or not t.health.ready)
                        for t in self.tokenizers.values())
                and not any(e.building is not None for e in self.models.values()))

    async def wait(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()

    # -- building a model --------------------------------------------------------------------------------

    def _limits(self, m: specs.ModelSpec, model: ModelInfo):
        s = self.settings
        values = {"max_n": s.max_n, "max_prompts": s.max_prompts, "max_stop_strings": s.max_stop_strings,
                  "max_stop_string_chars": s.max_stop_string_chars, **dict(m.limits)}
        return Orchestrator.make_limits(model, **values)

    async def _build(self, entry: ModelEntry) -> None:
        s = self.settings
        try:
            info = entry.info
            peer = entry.tokenizers.pick()
            tinfo = peer.info
            token_bytes = await peer.client.vocabulary(s.peer_timeout_seconds)
            detokenizer = await local_detokenizer(peer.client, tinfo, s.peer_timeout_seconds) \
                if s.detokenize == "local" else None
            # ids valid in requests: those the tokenizer can decode (a checkpoint may pad its embedding past them)
            model = ModelInfo(name=entry.name, context_length=info.max_context_length,
                              vocab_size=min(info.vocab_size, tinfo.vocab_size, len(token_bytes)),
                              eos_token_ids=tuple(info.eos_token_ids), default_max_tokens=info.default_max_tokens,
                              tokenizer_fingerprint=info.tokenizer_fingerprint, engine=info.engine,
                              max_chars_per_token=tinfo.max_chars_per_token)
            core = Orchestrator(entry.tokenizers, entry.router, model, limits=self._limits(entry.spec, model),
                                token_bytes=token_bytes, detokenizer=detokenizer)
        except (errors.TokenwayError, RuntimeError) as exc:
            log.error("model %s: cannot be built yet (%s); trying again in %.0fs", entry.name, exc, RETRY_BUILD_SECONDS)
            await asyncio.sleep(RETRY_BUILD_SECONDS)  # the retry's pacing, not synchronisation
            entry.building = None
            self._changed()
            return
        entry.core, entry.building = core, None
        entry.system_fingerprint = f"fp_{info.engine}_{info.tokenizer_fingerprint[:10]}"
        log.info("model %s: engine %s (%s), context %d, tokenizer %s, detokenizing %s", entry.name, info.engine,
                 info.model_name, model.context_length, tinfo.fingerprint[:12], s.detokenize)
        self._changed()

    # -- DNS and the models file -------------------------------------------------------------------------

    def _expand(self, address: str) -> list[str]:
        if address.startswith(specs.DNS_SCHEME):
            return self._resolved.get(address, [])
        return [address]

    async def _resolve_all(self, spec: specs.RegistrySpec) -> bool:
        """Resolves every dns:/// address again; True when an answer changed. A failed lookup keeps the
        last answer (a DNS hiccup must not empty the fleet)."""
        names = {a.address for a in spec.replicas + spec.tokenizers if a.address.startswith(specs.DNS_SCHEME)}
        changed = False
        for address in sorted(names):
            host, _, port = address[len(specs.DNS_SCHEME):].rpartition(":")
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host.strip("[]"), int(port),
                                                                     type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("cannot resolve %s: %s (keeping %d address(es))", address, exc,
                            len(self._resolved.get(address, [])))
                continue
            found = sorted({(f"[{i[4][0]}]" if i[0] == socket.AF_INET6 else i[4][0]) + f":{port}" for i in infos})
            if found != self._resolved.get(address):
                log.info("%s resolves to %s", address, ", ".join(found) or "nothing")
                self._resolved[address] = found
                changed = True
        return changed

    async def _dns_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.dns_refresh_seconds)  # the refresh period, not synchronisation
            if await self._resolve_all(self.spec):
                self.apply(self.spec)

    async def _file_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_seconds)  # the polling period, not synchronisation
            stamp = _stamp(self.settings.models)
            if stamp != self._file_stamp:
                self._file_stamp = stamp
                await self.reload()

    def _reload_now(self) -> None:
        self._file_stamp = _stamp(self.settings.models)
        self._spawn(self.reload(), "registry:sighup")

    async def reload(self) -> bool:
        """Reads the models file again and applies it; a file that does not parse changes nothing."""
        path = self.settings.models
        try:
            spec = specs.parse(await asyncio.to_thread(_read, path), path)
        except (OSError, specs.SpecError) as exc:
            log.error("models file not reloaded, keeping the current models: %s", exc)
            return False
        await self._resolve_all(spec)
        self.apply(spec)
        self.reloads += 1
        log.info("models file %s reloaded: %s", path, ", ".join(m.name for m in spec.models) or "discovered models only")
        return True


async def local_detokenizer(client, info, timeout: float) -> LocalDetokenizer:
    """The tokenizer service's own tokenizer (`client`, whose GetTokenizerInfo is `info`), rebuilt here:
    checked whole (sha256), the same files as the served model's (fingerprint) and the same vocabulary,
    or the model is not built (RuntimeError)."""
    spec = await client.spec(timeout)
    if spec_digest(spec.tokenizer_json) != spec.tokenizer_json_sha256:
        raise RuntimeError("the tokenizer spec from the tokenizer service arrived damaged (sha256 mismatch)")
    if spec.fingerprint != info.fingerprint:
        raise RuntimeError(f"the tokenizer spec's fingerprint {spec.fingerprint[:12]} is not the served "
                           f"tokenizer's {info.fingerprint[:12]}")
    detokenizer = await asyncio.to_thread(Detokenizer.from_json, spec.tokenizer_json)
    if detokenizer.vocab_size != info.vocab_size:
        raise RuntimeError(f"the rebuilt tokenizer has {detokenizer.vocab_size} ids, the tokenizer service "
                           f"{info.vocab_size}")
    return LocalDetokenizer(detokenizer)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def load(settings: OrchestratorSettings) -> specs.RegistrySpec:
    """The configured spec: the models file's when there is one, else the address settings'."""
    if settings.models:
        return specs.parse(_read(settings.models), settings.models)
    return specs.from_settings(settings.tokenizer_address, settings.inference_addresses)
