"""Server factory and lifecycle shared by every service.

An `App` registers its servicers, loads what it needs in `start()` (readiness stays NOT_SERVING
until it returns) and releases it in `close()`. `serve()` runs one until SIGTERM/SIGINT:
NOT_SERVING -> drain period -> `server.stop(grace)` (with the App's `on_shutdown(grace)` running
alongside) -> `app.close()`. `run()`, an entry point's body, does that in this process, or with the
`processes` setting above 1 supervises that many worker processes on the same port (workers.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import config, interceptors, logs, metrics, tracing, workers

log = logging.getLogger("tokenway.server")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
S = TypeVar("S", bound=config.ServerSettings)


class App(Protocol):
    """What a service plugs into the shared server.

    Optional hooks, found by name (an App without them needs nothing more):

    `def follow_readiness(self, set_ready: Callable[[bool], None]) -> None`
        Called once, before `start()`. The App keeps `set_ready` and calls it, from the event loop,
        whenever its own readiness changes (e.g. a peer it needs went away or came back). Each of
        `service_names` reports SERVING iff `start()` returned, the App's last word is True (the
        default) and shutdown has not begun; once shutdown began, calls change nothing. Liveness
        ("") is never affected.

    `def use_health(self, servicer: grpc_health.v1 HealthServicer) -> None`
        Called once, before `start()`: the App may publish health of names of its own (the
        orchestrator: one per model). Shutdown turns them NOT_SERVING with the others.

    `metrics: tokenway_common.metrics.ServiceMetrics` (an attribute)
        The service's metrics: every call is counted by RPC and code, and `serve()` serves them on the
        `metrics_port` setting (with several worker processes the supervisor serves their sum).

    `background_methods: frozenset[str]` (an attribute)
        Full method names ("package.Service/Method") that peers call on their own schedule (load polls,
        startup reads): with tracing on they are traced only when the caller sent trace context, so that
        polls do not each start a trace of their own.

    `async def on_shutdown(self, grace: float) -> None`
        Called once when shutdown begins, after NOT_SERVING and the drain period, as a task that runs
        concurrently with `server.stop(grace)` (which refuses new calls and lets in-flight ones run
        for up to `grace` seconds): the place to end long streams cleanly before the grace runs out.
        It is cancelled if still running when `server.stop` returns; `close()` follows.
    """

    #: Fully qualified gRPC service names this app serves (readiness is reported for each).
    service_names: tuple[str, ...]

    def register(self, server: grpc.aio.Server) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


METADATA_BYTES = 16 * 1024


def server_options(settings: config.ServerSettings, *, receiving: str = "requests",
                   reuse_port: bool = False) -> list[tuple[str, int]]:
    """Options for a server (`receiving="requests"`: at most max_request_mb) or, with `receiving="responses"`,
    for a channel to a peer (whose answers may be as large as max_message_mb). `reuse_port`: the server is
    one of a supervisor's workers, which share their port (SO_REUSEPORT)."""
    size = settings.max_message_mb * 1024 * 1024
    receive = settings.max_request_mb * 1024 * 1024 if receiving == "requests" and settings.max_request_mb else size
    return [
        ("grpc.max_send_message_length", size),
        ("grpc.max_receive_message_length", receive),
        # Metadata up to 16 KiB is read, more is refused (RESOURCE_EXHAUSTED), always: gRPC's default refuses
        # *at random* between its soft (8 KiB) and hard (16 KiB) limits, so one oversized header (an 8 kB
        # bearer token) got UNAUTHENTICATED from our check on one call and RESOURCE_EXHAUSTED on the next.
        ("grpc.max_metadata_size", METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", METADATA_BYTES),
        # A second server on a taken port must fail, not share it; only one supervisor's workers share theirs.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # Accept the peers' keepalive pings (channels.py pings every second so that a hung peer is
        # found fast): a ping every 0.5 s or slower is fine, and never answered with GOAWAY.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 500),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def read_tls_file(path: str, setting: str) -> bytes:
    """The bytes of a certificate, key or CA file; OSError naming the setting when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise OSError(f"{setting}: cannot read {path}: {e.strerror or e}") from None


def server_credentials(settings: config.ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from settings' tls_cert/tls_key (and tls_client_ca: client certificates required,
    mTLS), or None: plaintext. Raises OSError when a file cannot be read."""
    if not settings.tls_cert:
        return None
    if not settings.tls_key:
        raise OSError("tls_cert is set without tls_key")
    chain, key = read_tls_file(settings.tls_cert, "tls_cert"), read_tls_file(settings.tls_key, "tls_key")
    ca = read_tls_file(settings.tls_client_ca, "tls_client_ca") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)


@dataclasses.dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    app: App
    started: bool = False  # app.start() returned
    app_ready: bool = True  # the App's own word (follow_readiness)
    stopping: bool = False
    listening: bool = False  # bound and started
    _lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task] = dataclasses.field(default_factory=set)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ready(self) -> bool:
        return self.started and self.app_ready and not self.stopping

    async def listen(self, settings: config.ServerSettings) -> None:
        """Binds settings' host:port (TLS or mTLS when settings say so) and starts serving (liveness ""
        SERVING); raises OSError."""
        address = f"{settings.host}:{settings.port}"
        credentials = server_credentials(settings)
        try:  # grpcio raises RuntimeError on a taken port (older ones returned 0)
            port = (self.server.add_secure_port(address, credentials) if credentials is not None
                    else self.server.add_insecure_port(address))
        except RuntimeError as exc:
            raise OSError(f"cannot bind {address}: {exc}") from None
        if port == 0:
            raise OSError(f"cannot bind {address}")
        if credentials is not None:
            log.info("%s on %s:%d: certificate %s%s", settings.tls_mode.upper(), settings.host, port, settings.tls_cert,
                     f", client certificates required, signed by {settings.tls_client_ca}" if settings.tls_client_ca else "")
        await self.server.start()
        self.port, self.listening = port, True
        await self.health.set("", SERVING)

    async def set_ready(self, ready: bool) -> None:
        """Marks the App started (True) or not (False) and publishes the readiness that follows."""
        self.started = ready
        await self._publish()

    def set_app_ready(self, ready: bool) -> None:
        """The setter handed to `App.follow_readiness`: callable from sync code on the event loop."""
        if ready == self.app_ready:
            return
        self.app_ready = ready
        task = asyncio.get_running_loop().create_task(self._publish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self) -> None:
        async with self._lock:  # each publish writes the state as of now: the last one wins
            status = SERVING if self.ready else NOT_SERVING
            for name in self.app.service_names:
                await self.health.set(name, status)

    async def stop(self, grace: float | None = 0.0, drain: float = 0.0) -> None:
        """NOT_SERVING everywhere, optional drain period, stop with grace (and `app.on_shutdown`), close."""
        self.stopping = True
        await self.health.enter_graceful_shutdown()
        if drain > 0:
            await asyncio.sleep(drain)  # let load balancers see NOT_SERVING before we refuse calls
        hook = getattr(self.app, "on_shutdown", None)
        shutdown = asyncio.create_task(hook(grace or 0.0), name="on_shutdown") if hook is not None else None
        try:
            await self.server.stop(grace)
        finally:
            if shutdown is not None:
                shutdown.cancel()  # no-op when it finished
                result = (await asyncio.gather(shutdown, return_exceptions=True))[0]
                if isinstance(result, Exception):
                    log.error("on_shutdown failed: %s", result, exc_info=result)
        await self.app.close()


async def _settle_rpc_tasks(timeout: float = 5.0) -> None:
    """Lets grpc.aio's per-RPC tasks finish after `server.stop()` returned, before the process exits.

    stop() returns once the core has no live call, but each call's Python task (grpc's
    `_schedule_rpc_coro`, named "rpc_task") still needs a few loop turns to unwind its handler. If
    `asyncio.run()` ends first, it cancels those tasks and grpc logs each one as "Exception not handled
    by _handle_exceptions" with a CancelledError traceback (long health Watch streams, streams cut at
    the end of the grace period). Waiting for them is the fix; nothing is filtered. Called by `serve()`
    only: there this process's one server owns every RPC task (in-process tests run several servers
    in one loop, whose tasks are not ours to wait for).
    """
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done() and
               (t.get_name() == "rpc_task" or "_schedule_rpc_coro" in getattr(t.get_coro(), "__qualname__", ""))]
    if pending:
        done, still = await asyncio.wait(pending, timeout=timeout)
        if still:
            log.warning("%d RPC task(s) still running %.0fs after the server stopped", len(still), timeout)


class _WorkerHealth(health.aio.HealthServicer):
    """Health of one worker process: a Check's trailing metadata says which worker answered."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self._tag = ((workers.TAG_KEY, tag),)

    async def Check(self, request, context):
        context.set_trailing_metadata(self._tag)
        return await super().Check(request, context)


async def start_server(settings: config.ServerSettings, app: App, *, wait_ready: bool = True,
                       worker: workers.Worker | None = None, listen: bool = True) -> RunningServer:
    """Binds, starts and (unless wait_ready=False) awaits `app.start()` before reporting SERVING.

    Liveness ("") is SERVING as soon as the port is bound; each of the app's services turns
    SERVING only after `app.start()` returned. A `worker` shares its port with its siblings.
    `listen=False` leaves binding to the caller (`RunningServer.listen`).
    """
    observer = getattr(app, "metrics", None)
    calls = interceptors.ErrorInterceptor(observer, getattr(app, "background_methods", frozenset()))
    server = grpc.aio.server(interceptors=[calls, *getattr(app, "interceptors", ())],
                             options=server_options(settings, reuse_port=worker is not None))
    app.register(server)
    health_servicer = health.aio.HealthServicer() if worker is None else _WorkerHealth(worker.tag)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*app.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    running = RunningServer(server, 0, health_servicer, app)
    if listen:
        await running.listen(settings)
    await running.set_ready(False)
    follow = getattr(app, "follow_readiness", None)
    if follow is not None:
        follow(running.set_app_ready)
    use_health = getattr(app, "use_health", None)
    if use_health is not None:  # an app that publishes more health names of its own
        use_health(health_servicer)
    if wait_ready:
        await app.start()
        await running.set_ready(True)
    return running


async def serve_metrics(settings: config.ServerSettings, app: App) -> metrics.MetricsEndpoint | None:
    """The app's metrics endpoint on settings' host:metrics_port, started; None when the port is 0 or the
    app has no metrics. Raises OSError when the port cannot be bound."""
    service_metrics = getattr(app, "metrics", None)
    if not settings.metrics_port or service_metrics is None:
        return None
    endpoint = metrics.MetricsEndpoint(service_metrics, settings.host, settings.metrics_port)
    port = await endpoint.start()
    log.info("metrics on http://%s:%d/metrics", settings.host, port)
    return endpoint


def freeze_startup_heap() -> None:
    """Moves every object that exists once startup is done (modules, model wrappers, vLLM's engine
    client: ~650k objects with torch and vLLM imported) out of the collector's reach, as vLLM's own
    server does: a full collection over them took 0.3 s here, during which the process answers nothing."""
    gc.collect()
    gc.freeze()


async def serve(settings: config.ServerSettings, app: App, name: str, *, worker: workers.Worker | None = None) -> int:
    """Runs `app` until SIGTERM/SIGINT; returns the process exit code. As a supervisor's `worker` it shares
    the port, its log lines carry `worker=<index>` and it tells the supervisor when it is SERVING; a worker
    that replaces a dead one binds only then, so that no new connection reaches it before it is ready."""
    logs.setup(name, settings.log_level, settings.log_format)
    if worker is not None:
        worker.tag_logs()
    log.info("starting %s", name, extra={"fields": config.redacted(settings)})
    try:
        traces = tracing.setup(name)
    except (tracing.TracingConfigError, ValueError) as e:
        log.error("tracing: %s", e)
        return 2
    log.info("tracing: %s", traces.description if traces is not None else
             "off (set OTEL_EXPORTER_OTLP_ENDPOINT to export traces)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    late = worker is not None and worker.bind_when_ready
    endpoint = None
    try:
        endpoint = await serve_metrics(settings, app)
        running = await start_server(settings, app, wait_ready=False, worker=worker, listen=not late)
    except OSError as e:
        log.error("%s", e)
        if endpoint is not None:
            await endpoint.close()
        if traces is not None:
            traces.close()
        return 1
    if late:
        log.info("%s starting up; binds %s:%d once ready", name, settings.host, settings.port)
    else:
        log.info("%s listening on %s:%d; starting up", name, settings.host, running.port)
    startup = asyncio.create_task(app.start())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if startup.done() and startup.exception() is None:
        try:
            if not running.listening:
                await running.listen(settings)
        except OSError as e:
            log.error("%s", e)
            code = 1
        else:
            freeze_startup_heap()
            await running.set_ready(True)
            print(f"{name} SERVING on {settings.host}:{running.port}", flush=True)
            log.info("%s SERVING on %s:%d", name, settings.host, running.port)
            if worker is not None:
                worker.notify_ready()
            await stop.wait()
    elif startup.done():
        log.error("%s failed to start: %s", name, startup.exception(), exc_info=startup.exception())
        code = 1
    else:
        startup.cancel()
    stopper.cancel()
    log.info("%s shutting down: NOT_SERVING, drain %.1fs, grace %.1fs", name, settings.drain_seconds, settings.grace_seconds)
    await running.stop(settings.grace_seconds, settings.drain_seconds)
    await _settle_rpc_tasks()
    if endpoint is not None:
        await endpoint.close()  # last: a scrape during the drain still sees the service
    if traces is not None:
        await asyncio.to_thread(traces.close)  # the last spans, within a bound
    log.info("%s stopped", name)
    return code


def run(settings: S, make_app: Callable[[S], App], name: str, *, module: str, argv: Sequence[str] | None = None) -> int:
    """An entry point's body; returns the exit code.

    `settings.processes` (0: one per core, at most workers.MAX_AUTO) of 1 serves in this process. More
    make this process a supervisor of that many workers (`python -m <module> <argv>` each, argv being
    this process's flags) sharing host:port; the App is built only in the workers.
    """
    worker = workers.from_env()
    if worker is None:
        processes = workers.count(settings.processes)
        if processes > 1:
            return workers.supervise(settings, name, module, processes, sys.argv[1:] if argv is None else argv)
    elif not worker.attach():
        print(f"{name}: worker {worker.index}: the supervisor (pid {worker.supervisor}) is gone", file=sys.stderr)
        return 1
    try:
        app = make_app(settings)
    except (ValueError, OSError) as exc:  # a bad configuration file, an unreadable path: said plainly
        print(f"{name}: cannot start: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings, app, name, worker=worker))
