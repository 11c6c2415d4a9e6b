"""Prometheus metrics for every service: its registry, the per-RPC metrics every service has, and the HTTP
endpoint that serves them (`GET /metrics` on the `metrics_port` setting, bound on the service's host).

Names are `tokenway_<service>_<what>[_<unit>][_total]`. Every service counts its calls by RPC and final status
code (`tokenway_<service>_requests_total{rpc,code}`, `rpc` being "package.Service/Method") and times them
(`tokenway_<service>_request_duration_seconds{rpc}`); the ErrorInterceptor reports each call once, when it
ends (a stream with its final code), see `ServiceMetrics.ended`. A service that refuses work names the
ErrorInfo reasons that are refusals (`rejections`: reason -> kind, e.g. "INVALID_API_KEY" -> "auth") and gets
`tokenway_<service>_rejections_total{kind,reason}`. Everything else a service measures it declares on its
`ServiceMetrics` (`counter`, `histogram`, `gauge`, or a collector of its own read at scrape time).

Each service instance has its own registry, so that the three services (or several of one) in one test process
keep apart; the endpoint serves it together with prometheus_client's default registry, where libraries
register theirs (vLLM's `vllm:*` engine metrics, the process and GC collectors).

Several processes on one port (workers.py): the supervisor points PROMETHEUS_MULTIPROC_DIR at a private
directory before it starts the workers; prometheus_client then keeps every worker's values in files there,
and the supervisor alone serves the metrics port, summing over the workers (`MultiProcessCollector`): counters
and histograms over every worker that ever ran (a restarted worker's counts are not lost), gauges over the
live ones (`multiprocess_mode`, "livesum" unless a gauge says otherwise). Gauges read at scrape time
(collectors) cannot be summed that way: only single-process services (inference) use them.

Hot paths take label children once (`labels()` is a dict lookup under a lock) and then call only `inc` /
`observe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import urlsplit

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

log = logging.getLogger("tokenway.metrics")

#: Latency buckets, seconds: roughly log-spaced (1-2.5-5), resolving 1 ms to 60 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0)
#: prometheus_client's multiprocess mode: set (by the supervisor) in a worker's environment before it starts.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The paths the endpoint answers.
PATHS = ("/metrics", "/")


def multiprocess() -> bool:
    """This process is one of several whose metrics a supervisor sums."""
    return bool(os.environ.get(MULTIPROC_ENV))


class ServiceMetrics:
    """One service instance's metrics and their registry."""

    def __init__(self, service: str, *, rejections: Mapping[str, str] | None = None) -> None:
        # No `<name>_created` series beside every counter and histogram (process-wide, as vLLM's server does):
        # they double what is stored and no query here needs them.
        disable_created_metrics()
        self.namespace = f"tokenway_{service}"
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = self.counter("requests_total", "RPCs that ended, by RPC and final gRPC status code "
                                                       "(a stream counts once, when it ends)", ("rpc", "code"))
        self.duration = self.histogram("request_duration_seconds", "time from an RPC's arrival to its end (a "
                                                                    "stream's last message)", ("rpc",))
        self.kinds = dict(rejections or {})
        self.rejections = self.counter(
            "rejections_total", "requests refused, by kind (auth, limit, overload) and ErrorInfo reason",
            ("kind", "reason")) if self.kinds else None
        self._ended: dict[tuple[str, grpc.StatusCode], tuple[Counter, Histogram]] = {}
        self._rejected: dict[str, Counter | None] = {}

    def name(self, what: str) -> str:
        return f"{self.namespace}_{what}"

    def counter(self, what: str, doc: str, labels: Iterable[str] = ()) -> Counter:
        return Counter(self.name(what), doc, tuple(labels), registry=self.registry)

    def histogram(self, what: str, doc: str, labels: Iterable[str] = (),
                  buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        return Histogram(self.name(what), doc, tuple(labels), buckets=buckets, registry=self.registry)

    def gauge(self, what: str, doc: str, labels: Iterable[str] = (), mode: str = "livesum") -> Gauge:
        """`mode`: how several worker processes' values combine (prometheus_client's multiprocess_mode)."""
        return Gauge(self.name(what), doc, tuple(labels), multiprocess_mode=mode, registry=self.registry)  # type: ignore[arg-type]

    def ended(self, method: str, code: grpc.StatusCode, reason: str, seconds: float) -> None:
        """An RPC ended (called once per call by the ErrorInterceptor): `method` "/package.Service/Method",
        its final status code and, for an error, its ErrorInfo reason ("" if none)."""
        key = (method, code)
        children = self._ended.get(key)
        if children is None:
            rpc = method.lstrip("/")
            children = self._ended[key] = (self.requests.labels(rpc, code.name), self.duration.labels(rpc))
        children[0].inc()
        children[1].observe(seconds)
        if reason and self.rejections is not None:
            child = self._rejected.get(reason, False)
            if child is False:
                kind = self.kinds.get(reason)
                child = self._rejected[reason] = self.rejections.labels(kind, reason) if kind else None
            if child is not None:
                child.inc()

    def collect(self) -> Iterator:
        """What the endpoint serves: this service's metrics, then the default registry's (vLLM's, process)."""
        yield from self.registry.collect()
        yield from REGISTRY.collect()


class MetricsEndpoint:
    """`GET /metrics` over HTTP/1.1 on the event loop (so that collectors read state the loop owns, as the
    RPCs do). Plain text exposition, or OpenMetrics when the scraper asks for it; gzip when accepted."""

    def __init__(self, source: Collector, host: str, port: int) -> None:
        self.source, self.host, self.port = source, host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Binds host:port (0: a free one) and serves; returns the port. Raises OSError naming the address."""
        try:
            self._server = await asyncio.start_server(self._handle, self.host.strip("[]"), self.port,
                                                      reuse_address=True)
        except OSError as e:
            raise OSError(f"cannot bind the metrics port {self.host}:{self.port}: {e.strerror or e}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            status, headers, body = self._respond(head.decode("latin-1"))
            writer.write(f"HTTP/1.1 {status}\r\n".encode() + b"".join(
                f"{k}: {v}\r\n".encode() for k, v in headers) + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _respond(self, head: str) -> tuple[str, list[tuple[str, str]], bytes]:
        line, *rest = head.split("\r\n")
        parts = line.split(" ")
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Length", "0")], b""
        if urlsplit(parts[1]).path not in PATHS:
            text = b"not found: the metrics are at /metrics\n"
            return "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))], text
        encoder, content_type = choose_encoder(fields.get("accept", ""))
        body = encoder(self.source)
        headers = [("Content-Type", content_type)]
        if "gzip" in fields.get("accept-encoding", ""):
            body = gzip.compress(body, 1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        return "200 OK", headers, b"" if parts[0] == "HEAD" else body


class WorkerMetrics:
    """The supervisor's side of multiprocess mode: a private directory its workers write to (handed to them
    in their environment), the endpoint summing them, and the cleanup of dead workers' live gauges."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import multiprocess as mp  # noqa: PLC0415 - only supervisors need it

        self._mp = mp
        self.dir = tempfile.mkdtemp(prefix="tokenway-metrics-")
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry, path=self.dir)
        self.endpoint = MetricsEndpoint(registry, host, port)

    @property
    def environ(self) -> dict[str, str]:
        """What a worker's environment gets."""
        return {MULTIPROC_ENV: self.dir}

    def worker_exited(self, pid: int) -> None:
        """A worker is gone: its live gauges stop counting (its counters and histograms stay in the sums)."""
        self._mp.mark_process_dead(pid, self.dir)

    async def close(self) -> None:
        await self.endpoint.close()
        shutil.rmtree(self.dir, ignore_errors=True)
