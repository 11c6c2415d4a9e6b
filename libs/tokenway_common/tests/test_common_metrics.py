"""The metrics every service gets from the shared bootstrap: calls counted once each with their final code
(unary and streaming, failed, aborted, cancelled), refusals by reason, the HTTP endpoint, a metrics port that
cannot be bound, and the sum over several worker processes on one port (real processes, real HTTP)."""

from __future__ import annotations

import asyncio
import gzip
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenway_common import config, errors, metrics, workers
from tokenway_common.server import serve_metrics, start_server

if str(Path(__file__).resolve().parents[3]) not in sys.path:  # the repo root, whose tests/ package has:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.metrics import ascrape, scrape  # noqa: E402

BOUND = 60.0  # seconds: a bound against hangs, never a timing assertion
SERVICE = "tokenway.probe.v1.ProbeService"


async def _echo(request: bytes, context) -> bytes:
    if request == b"full":
        raise errors.ResourceExhausted("no room", reason="OVERLOADED", retry_after=1.0)
    if request == b"bad":
        raise errors.InvalidArgument("bad input", reason="INVALID_REQUEST")
    if request == b"bug":
        raise RuntimeError("a bug")
    if request == b"abort":
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "aborted by the handler")
    return request


async def _count(request: bytes, context):
    n = int(request or b"0")
    for i in range(max(n, 0)):
        yield str(i).encode()
    if n < 0:  # -1: one message, then it fails; -2: runs until cancelled
        yield b"0"
        if n == -1:
            raise errors.Unavailable("lost mid-stream", reason="PEER_UNAVAILABLE")
        await asyncio.Event().wait()


class ProbeApp:
    service_names = (SERVICE,)

    def __init__(self) -> None:
        self.metrics = metrics.ServiceMetrics("probe", rejections={"OVERLOADED": "overload"})

    def register(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Echo": grpc.unary_unary_rpc_method_handler(_echo),
            "Count": grpc.unary_stream_rpc_method_handler(_count)}),))

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture
async def probe():
    app = ProbeApp()
    running = await start_server(config.ServerSettings(port=0), app)
    endpoint = metrics.MetricsEndpoint(app.metrics, "127.0.0.1", 0)
    await endpoint.start()
    async with grpc.aio.insecure_channel(running.address) as ch:
        yield ch, endpoint.port
    await endpoint.close()
    await running.stop()


def _rpc(name: str) -> str:
    return f"{SERVICE}/{name}"


async def _until(predicate, seconds: float = BOUND) -> None:
    async def poll():
        while not await predicate():
            await asyncio.sleep(0.02)  # a poll for the server's side of a cancellation, bounded by wait_for
    await asyncio.wait_for(poll(), seconds)


async def test_every_call_counts_once_with_its_final_code_and_refusals_by_reason(probe):
    ch, port = probe
    echo = ch.unary_unary(f"/{_rpc('Echo')}")
    count = ch.unary_stream(f"/{_rpc('Count')}")
    assert await echo(b"hi", timeout=BOUND) == b"hi"
    assert await echo(b"again", timeout=BOUND) == b"again"
    for payload, code in ((b"full", grpc.StatusCode.RESOURCE_EXHAUSTED), (b"bad", grpc.StatusCode.INVALID_ARGUMENT),
                          (b"bug", grpc.StatusCode.INTERNAL), (b"abort", grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await echo(payload, timeout=BOUND)
        assert e.value.code() == code
    assert [m async for m in count(b"3", timeout=BOUND)] == [b"0", b"1", b"2"]
    failing = count(b"-1", timeout=BOUND)
    assert await failing.read() == b"0"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await failing.read()
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    endless = count(b"-2", timeout=BOUND)
    assert await endless.read() == b"0"
    endless.cancel()

    async def cancelled_counted() -> bool:
        return (await ascrape(port)).value("tokenway_probe_requests_total", rpc=_rpc("Count"), code="CANCELLED") == 1
    await _until(cancelled_counted)

    m = await ascrape(port)
    req = "tokenway_probe_requests_total"
    assert m.value(req, rpc=_rpc("Echo"), code="OK") == 2
    for code in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "INTERNAL", "PERMISSION_DENIED"):
        assert m.value(req, rpc=_rpc("Echo"), code=code) == 1, code
    assert m.value(req, rpc=_rpc("Count"), code="OK") == 1  # the stream that ended, once, not per message
    assert m.value(req, rpc=_rpc("Count"), code="UNAVAILABLE") == 1  # its final code, after a message went
    assert m.value(req, rpc=_rpc("Echo")) == 6 and m.value(req, rpc=_rpc("Count")) == 3
    assert m.value("tokenway_probe_request_duration_seconds_count", rpc=_rpc("Echo")) == 6
    assert m.value("tokenway_probe_request_duration_seconds_count", rpc=_rpc("Count")) == 3
    # only the reasons the service calls refusals are counted as such
    assert m.value("tokenway_probe_rejections_total", kind="overload", reason="OVERLOADED") == 1
    assert m.value("tokenway_probe_rejections_total") == 1
    # buckets resolve 1 ms to 60 s
    les = {lab["le"] for n, lab, _ in m.samples if n == "tokenway_probe_request_duration_seconds_bucket"}
    assert {"0.001", "60.0", "+Inf"} <= les


async def test_a_deadline_that_passes_is_counted_as_such(probe):
    ch, port = probe
    endless = ch.unary_stream(f"/{_rpc('Count')}")(b"-2", timeout=0.5)  # the deadline is the test's subject
    assert await endless.read() == b"0"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await endless.read()
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    async def counted() -> bool:
        return (await ascrape(port)).value("tokenway_probe_requests_total", rpc=_rpc("Count"),
                                           code="DEADLINE_EXCEEDED") == 1
    await _until(counted)


def _get(port: int, path: str, method: str = "GET", **headers: str) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=BOUND) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def test_the_endpoint_speaks_prometheus_text_openmetrics_and_gzip(probe):
    _, port = probe
    status, headers, body = await asyncio.to_thread(_get, port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE tokenway_probe_requests_total counter" in text
    assert "# TYPE process_cpu_seconds_total counter" in text  # the default registry is served too
    status, headers, body = await asyncio.to_thread(_get, port, "/metrics", **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and b"tokenway_probe_requests" in gzip.decompress(body)
    status, headers, body = await asyncio.to_thread(_get, port, "/metrics",
                                                    Accept="application/openmetrics-text; version=1.0.0")
    assert headers["Content-Type"].startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    assert (await asyncio.to_thread(_get, port, "/metrics", "HEAD"))[2] == b""
    assert (await asyncio.to_thread(_get, port, "/nothing"))[0] == 404
    assert (await asyncio.to_thread(_get, port, "/metrics", "POST"))[0] == 405


def test_the_metrics_port_is_a_setting_off_by_default_here():
    assert config.load(config.ServerSettings, "TOKENWAY_X", [], env={}).metrics_port == 0
    assert config.load(config.ServerSettings, "TOKENWAY_X", ["--metrics-port", "9100"], env={}).metrics_port == 9100
    with pytest.raises(config.ConfigError, match="TOKENWAY_X_METRICS_PORT"):
        config.load(config.ServerSettings, "TOKENWAY_X", [], env={"TOKENWAY_X_METRICS_PORT": "-1"})


async def test_a_metrics_port_that_cannot_be_bound_stops_the_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot bind the metrics port 127.0.0.1:{port}"):
            await serve_metrics(config.ServerSettings(metrics_port=port), ProbeApp())
    assert await serve_metrics(config.ServerSettings(metrics_port=0), ProbeApp()) is None  # 0: off


# A service on the shared bootstrap with metrics of its own: each worker says it is up (a live gauge) and
# counts its own starts (a counter), so that the supervisor's sum shows what it adds up.
FAKE_MAIN = '''
import sys
from tokenway_common.config import ServerSettings, load_or_exit
from tokenway_common.metrics import ServiceMetrics
from tokenway_common.server import run


class App:
    service_names = ("tokenway.fake.v1.FakeService",)

    def __init__(self, settings):
        self.metrics = ServiceMetrics("fake")
        self.up = self.metrics.gauge("workers_up", "1 per live worker")
        self.starts = self.metrics.counter("starts_total", "worker starts")

    def register(self, server):
        pass

    async def start(self):
        self.up.set(1)
        self.starts.inc()

    async def close(self):
        pass


if __name__ == "__main__":
    sys.exit(run(load_or_exit(ServerSettings, "TOKENWAY_FAKE"), App, "fake", module=__package__))
'''


class Service:
    """`python -m twmetrics` with its output read line by line (synchronisation on log lines)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        pkg = tmp_path / "twmetrics"
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "__main__.py").write_text(textwrap.dedent(FAKE_MAIN))
        path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        self.proc = subprocess.Popen([sys.executable, "-m", "twmetrics", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                     env=dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1"))
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_line(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; seen:\n{''.join(self.seen)}") from None
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(port: int) -> str:
    """A health Check over a new connection; the worker that answered."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        _, call = health_pb2_grpc.HealthStub(ch).Check.with_call(
            health_pb2.HealthCheckRequest(service="tokenway.fake.v1.FakeService"), timeout=BOUND)
        return dict(call.trailing_metadata())[workers.TAG_KEY]


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT is Linux's")
def test_several_workers_are_summed_on_the_supervisors_one_metrics_port(tmp_path):
    mport = _free_port()
    svc = Service(tmp_path, "--port", "0", "--processes", "2", "--metrics-port", str(mport))
    try:
        port = int(svc.wait_line(r"fake SERVING on 127\.0\.0\.1:(\d+) \(2 worker processes\)").group(1))
        pids = {int(p) for p in svc.wait_line(r"with 2 worker processes: pids (\d+ \d+)").group(1).split()}
        answered: dict[str, int] = {}
        while len(answered) < 2:  # new connections until both workers answered (the kernel spreads them)
            tag = _check(port)
            answered[tag] = answered.get(tag, 0) + 1
            assert sum(answered.values()) < 500, answered
        checks = sum(answered.values())
        m = scrape(mport)
        rpc = "grpc.health.v1.Health/Check"
        assert m.value("tokenway_fake_requests_total", rpc=rpc, code="OK") == checks  # both workers' calls
        assert m.value("tokenway_fake_request_duration_seconds_count", rpc=rpc) == checks
        assert m.value("tokenway_fake_workers_up") == 2 and m.value("tokenway_fake_starts_total") == 2

        victim = next(iter(pids))
        os.kill(victim, signal.SIGKILL)
        svc.wait_line(r"worker \d exited unexpectedly \(killed by SIGKILL\)")
        svc.wait_line(r"fake worker \d SERVING again")
        m = scrape(mport)
        assert m.value("tokenway_fake_workers_up") == 2  # the dead worker's live gauge is gone, the new one's here
        assert m.value("tokenway_fake_starts_total") == 3  # counters keep what dead workers counted
        assert m.value("tokenway_fake_requests_total", rpc=rpc, code="OK") == checks
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=BOUND) == 0
    finally:
        svc.close()
    with pytest.raises(OSError):
        scrape(mport)  # the supervisor closed it


@pytest.mark.integration
def test_a_service_whose_metrics_port_is_taken_does_not_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        mport = taken.getsockname()[1]
        for processes in ("1", "2"):
            svc = Service(tmp_path, "--port", "0", "--processes", processes, "--metrics-port", str(mport))
            try:
                svc.wait_line(rf"cannot bind the metrics port 127\.0\.0\.1:{mport}")
                assert svc.proc.wait(timeout=BOUND) == 1
                assert not any("SERVING" in line for line in svc.seen)
            finally:
                svc.close()
