"""Outbound channels, deadlines and peer readiness.

Every downstream call carries the caller's remaining time; every channel pings its peer so a hung
peer (a stopped process, a dead host that sent no RST) is found within ~10-11 s and its calls fail with
UNAVAILABLE instead of waiting for their deadlines; reconnects are fast (backoff capped at 0.5 s).
`ReadinessFollower` follows a peer's grpc.health.v1 Watch and tells its owner when it changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from . import config
from .server import read_tls_file, server_options

log = logging.getLogger("tokenway.channels")

#: HTTP/2 keepalive: ping every KEEPALIVE_MS even with no call in flight; a ping unanswered for
#: KEEPALIVE_TIMEOUT_MS closes the connection and fails its calls with UNAVAILABLE (a SIGSTOPped peer
#: is found in ~10-11 s). gRPC core also needs grpc.http2.ping_timeout_ms for that (its default, 1 min,
#: wins otherwise). The servers (server.server_options) accept pings this frequent. The timeout is
#: the longest a healthy but busy peer may stay silent: a 1 s timeout dropped live streams to the vLLM
#: engine's service on a busy 2-core host (it sends nothing for 1-4.9 s at times during long generations:
#: services/inference/README.md, known defect).
KEEPALIVE_MS = 1_000
KEEPALIVE_TIMEOUT_MS = 10_000
#: Reconnect backoff: first retry after 100 ms, never more than 500 ms apart. The minimum is also
#: gRPC's floor for one connection attempt (a peer that accepts TCP but never answers HTTP/2).
RECONNECT_INITIAL_MS = 100
RECONNECT_MIN_MS = 250
RECONNECT_MAX_MS = 500
#: Pause before a health Watch is re-opened after it broke (the channel's own backoff does the rest).
WATCH_RETRY_SECONDS = 0.05


def _service_config(services: tuple[str, ...]) -> str:
    # Retry only UNAVAILABLE (never an answer that may have been half-produced).
    return json.dumps({
        "methodConfig": [{
            "name": [{"service": s} for s in services],
            "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.5s",
                            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
        }]
    })


def channel_options(settings: config.ServerSettings, services: tuple[str, ...] = ()) -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = [o for o in server_options(settings, receiving="responses")
                                            if not o[0].startswith("grpc.so_reuseport")]
    options += [
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_INITIAL_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_MIN_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
        ("grpc.enable_retries", 1),
    ]
    if services:
        options.append(("grpc.service_config", _service_config(services)))
    return options


def insecure_channel(address: str, settings: config.ServerSettings, services: tuple[str, ...] = ()) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=channel_options(settings, services))


def peer_credentials(settings: config.ServerSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials for channels to peers: verified with peer_tls_ca, presenting peer_tls_cert/peer_tls_key
    (mTLS) when set; None when peer_tls_ca is unset (plaintext). Raises OSError when a file cannot be read."""
    if not settings.peer_tls_ca:
        return None
    cert = read_tls_file(settings.peer_tls_cert, "peer_tls_cert") if settings.peer_tls_cert else None
    key = read_tls_file(settings.peer_tls_key, "peer_tls_key") if settings.peer_tls_key else None
    return grpc.ssl_channel_credentials(root_certificates=read_tls_file(settings.peer_tls_ca, "peer_tls_ca"),
                                        private_key=key, certificate_chain=cert)


def peer_channel(address: str, settings: config.ServerSettings, services: tuple[str, ...] = ()) -> grpc.aio.Channel:
    """A channel to a peer service: TLS (mTLS with a client certificate) when settings' peer_tls_ca is set,
    else plaintext, as `insecure_channel`. A peer whose certificate does not verify is never connected:
    its calls fail with UNAVAILABLE and a ReadinessFollower keeps it not ready."""
    credentials = peer_credentials(settings)
    if credentials is None:
        return insecure_channel(address, settings, services)
    options = channel_options(settings, services)
    if settings.peer_tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.peer_tls_server_name))
    return grpc.aio.secure_channel(address, credentials, options=options)


def remaining(context: grpc.aio.ServicerContext | None, default: float | None) -> float | None:
    """Seconds left of the caller's deadline, capped by `default` (None = no cap)."""
    left = context.time_remaining() if context is not None else None
    if left is None:
        return default
    if default is None:
        return max(left, 0.0)
    return max(min(left, default), 0.0)


class ReadinessFollower:
    """Follows one peer's readiness for `service` (grpc.health.v1 Watch), reconnecting forever.

    `ready` is True while the peer's last word was SERVING on a live connection: a NOT_SERVING
    update, a broken Watch (peer gone, or silent past the channel's keepalive timeout) or a closed
    connection makes it False at once. Every change sets `changed` (an asyncio.Event that consumers
    clear) and calls each `on_change` callback with the new value (the first answer calls them too, even
    when it is "not ready", and sets `answered`); `wait_for(state)` waits for one.
    """

    def __init__(self, channel: grpc.aio.Channel, service: str, name: str,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.channel, self.service, self.name = channel, service, name
        self.ready = False
        self.answered = False  # the peer's readiness was learned at least once (an update, or a failed Watch)
        self.changed = asyncio.Event()
        self._callbacks: list[Callable[[bool], None]] = [on_change] if on_change else []
        self._waiters: list[tuple[bool, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    def add_callback(self, callback: Callable[[bool], None]) -> None:
        self._callbacks.append(callback)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name=f"readiness:{self.name}")

    async def wait_for(self, ready: bool = True) -> None:
        """Returns once `ready` has this value (at once if it has it now)."""
        if self.ready == ready:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((ready, fut))
        try:
            await fut
        finally:
            if (ready, fut) in self._waiters:
                self._waiters.remove((ready, fut))

    def _set(self, ready: bool, why: str) -> None:
        first, self.answered = not self.answered, True
        if ready == self.ready:
            if first:
                for callback in list(self._callbacks):
                    try:
                        callback(ready)
                    except Exception:  # noqa: BLE001 - one bad listener must not stop the follower
                        log.exception("readiness callback for %s failed", self.name)
            return
        self.ready = ready
        (log.info if ready else log.warning)("%s is %s (%s)", self.name, "ready" if ready else "not ready", why)
        self.changed.set()
        for state, fut in list(self._waiters):
            if state == ready and not fut.done():
                fut.set_result(None)
        for callback in list(self._callbacks):
            try:
                callback(ready)
            except Exception:  # noqa: BLE001 - one bad listener must not stop the follower
                log.exception("readiness callback for %s failed", self.name)

    async def _unreachable(self) -> None:
        """Until the first answer: a connection attempt that fails is an answer ("not ready"), so that
        whoever waits for every peer to be heard from is not held up by one that is down (the Watch
        itself waits for the connection)."""
        state = self.channel.get_state(try_to_connect=True)
        while not self.answered:
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                self._set(False, "unreachable")
                return
            await self.channel.wait_for_state_change(state)
            state = self.channel.get_state()

    async def _follow(self) -> None:
        probe = asyncio.create_task(self._unreachable(), name=f"reachable:{self.name}")
        try:
            await self._watch()
        finally:
            probe.cancel()

    async def _watch(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        request = health_pb2.HealthCheckRequest(service=self.service)
        while True:
            try:
                # wait_for_ready: the Watch waits for the (re)connection instead of failing at once.
                async for resp in stub.Watch(request, wait_for_ready=True):
                    self._set(resp.status == health_pb2.HealthCheckResponse.SERVING,
                              health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
                self._set(False, "health watch ended")
            except grpc.aio.AioRpcError as e:
                self._set(False, f"health watch failed: {e.code().name}")
            await asyncio.sleep(WATCH_RETRY_SECONDS)  # reconnect pacing, not synchronisation

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise  # we are cancelled ourselves, not just the follower
            finally:
                self._task = None


async def wait_serving(channel: grpc.aio.Channel, service: str) -> None:
    """Returns once the peer's readiness for `service` is SERVING (grpc.health.v1 Watch, reconnecting)."""
    follower = ReadinessFollower(channel, service, service)
    follower.start()
    try:
        await follower.wait_for(True)
    finally:
        await follower.close()
