"""Several server processes on one port: the setting, the port reservation, the worker's identity, and the
supervisor's lifecycle over a trivial service (real processes, real gRPC, no model)."""

from __future__ import annotations

import io
import logging
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenway_common import config, logs, workers

BOUND = 60.0  # seconds: a bound against hangs, never a timing assertion


def test_processes_zero_means_one_per_core_at_most_eight(monkeypatch):
    monkeypatch.setattr(workers, "cores", lambda: 2)
    assert (workers.count(0), workers.count(1), workers.count(3)) == (2, 1, 3)
    monkeypatch.setattr(workers, "cores", lambda: 64)
    assert workers.count(0) == workers.MAX_AUTO == 8
    assert workers.count(12) == 12  # an explicit count is taken as it is


def test_processes_is_read_like_every_setting_and_a_single_process_service_refuses_more():
    assert config.load(config.ServerSettings, "TOKENWAY_X", [], env={}).processes == 1
    assert config.load(config.ServerSettings, "TOKENWAY_X", ["--processes", "3"], env={}).processes == 3
    assert config.load(config.ServerSettings, "TOKENWAY_X", [], env={"TOKENWAY_X_PROCESSES": "0"}).processes == 0
    with pytest.raises(config.ConfigError, match="TOKENWAY_X_PROCESSES"):
        config.load(config.ServerSettings, "TOKENWAY_X", ["--processes", "-1"], env={})
    for value in ("2", "0"):
        with pytest.raises(config.ConfigError, match=r"TOKENWAY_X_PROCESSES \(--processes\): must be 1 here: one model"):
            config.load(config.ServerSettings, "TOKENWAY_X", [], env={"TOKENWAY_X_PROCESSES": value},
                        single_process="one model per process")
    assert config.load(config.ServerSettings, "TOKENWAY_X", ["--processes", "1"], env={},
                       single_process="one model per process").processes == 1


def test_a_worker_knows_itself_from_variables_nobody_after_it_inherits():
    env = {"TOKENWAY_WORKER_INDEX": "2", "TOKENWAY_WORKER_SUPERVISOR": "4242", "TOKENWAY_WORKER_READY_FD": "7",
           "OTHER": "x"}
    assert workers.from_env(env) == workers.Worker(index=2, supervisor=4242, ready_fd=7)
    assert env == {"OTHER": "x"}
    assert workers.from_env(env) is None  # a process with none of them is no worker
    env.update({"TOKENWAY_WORKER_INDEX": "1", "TOKENWAY_WORKER_SUPERVISOR": "9", "TOKENWAY_WORKER_READY_FD": "5",
                "TOKENWAY_WORKER_BIND": "ready"})
    assert workers.from_env(env).bind_when_ready  # a replacement: it binds once it is ready


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_log_line_of_a_worker_carries_its_index(root_logging, monkeypatch, fmt):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    logs.setup("tokenizer", "INFO", fmt)
    workers.Worker(index=3, supervisor=1, ready_fd=-1).tag_logs()
    fields = {"model": "m"}
    logging.getLogger("tokenway.test").info("loaded", extra={"fields": fields})
    logging.getLogger("tokenway.test").info("plain")
    first, second = out.getvalue().splitlines()
    if fmt == "json":
        assert '"model": "m"' in first and '"worker": 3' in first and '"worker": 3' in second
    else:
        assert first.endswith("loaded model=m worker=3") and second.endswith("plain worker=3")
    assert fields == {"model": "m"}  # the caller's dict is not changed


def _listener(port: int, reuse_port: bool) -> socket.socket:
    """A listening socket set up as gRPC sets up a server's (SO_REUSEADDR, SO_REUSEPORT as asked)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_the_reserved_port_is_shared_by_the_workers_and_refused_to_everyone_else():
    with workers.reserve_port("127.0.0.1", 0) as held:
        port = held.getsockname()[1]
        assert port != 0
        with _listener(port, reuse_port=True), _listener(port, reuse_port=True):  # two workers
            with socket.create_connection(("127.0.0.1", port), timeout=BOUND):
                pass  # a worker takes it: the held socket never listens
            with pytest.raises(OSError):
                _listener(port, reuse_port=False)  # a single-process server (so_reuseport=0)
            with pytest.raises(OSError):
                workers.reserve_port("127.0.0.1", port)  # another supervisor
    with _listener(0, reuse_port=False) as taken:
        with pytest.raises(OSError):
            workers.reserve_port("127.0.0.1", taken.getsockname()[1])


def test_single_process_servers_still_refuse_to_share_a_port():
    from tokenway_common.server import server_options

    assert ("grpc.so_reuseport", 0) in server_options(config.ServerSettings())
    assert ("grpc.so_reuseport", 1) in server_options(config.ServerSettings(), reuse_port=True)


# A trivial service on the shared bootstrap: health only, startup that can be told to fail in one worker.
FAKE_MAIN = '''
import os, sys
from tokenway_common.config import ServerSettings, load_or_exit
from tokenway_common.server import run

FAIL = os.environ.get("TOKENWAY_WORKER_INDEX") == os.environ.get("FAKE_FAIL_WORKER", "-")


class App:
    service_names = ("tokenway.fake.v1.FakeService",)

    def __init__(self, settings):
        pass

    def register(self, server):
        pass

    async def start(self):
        if FAIL:
            raise RuntimeError("this worker cannot start")

    async def close(self):
        pass


if __name__ == "__main__":
    sys.exit(run(load_or_exit(ServerSettings, "TOKENWAY_FAKE"), App, "fake", module=__package__))
'''


class Service:
    """`python -m twfake` with its output read line by line (synchronisation on log lines)."""

    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        (tmp_path / "twfake").mkdir(exist_ok=True)
        (tmp_path / "twfake" / "__init__.py").write_text("")
        (tmp_path / "twfake" / "__main__.py").write_text(textwrap.dedent(FAKE_MAIN))
        path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        self.proc = subprocess.Popen([sys.executable, "-m", "twfake", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                     env=dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", **env))
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


def _wait_gone(pids: list[int], timeout: float) -> bool:
    """Waits (on pidfds: the kernel says when each process exits, no polling) until none of `pids` runs."""
    deadline = time.monotonic() + timeout
    fds = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:  # already gone
                pass
        waiter = select.poll()
        for fd in fds:
            waiter.register(fd, select.POLLIN)
        while any(_alive(pid) for pid in pids):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for fd, _ in waiter.poll(left * 1000):  # an exited process's pidfd turns readable
                waiter.unregister(fd)
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent to reap it counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _check(port: int) -> tuple[int, str]:
    """Readiness over a new connection, and the worker that answered."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        resp, call = health_pb2_grpc.HealthStub(ch).Check.with_call(
            health_pb2.HealthCheckRequest(service="tokenway.fake.v1.FakeService"), timeout=BOUND)
        return resp.status, dict(call.trailing_metadata())[workers.TAG_KEY]


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT and PR_SET_PDEATHSIG are Linux's")
def test_sigkill_to_the_supervisor_takes_every_worker_with_it(tmp_path):
    svc = Service(tmp_path, "--port", "0", "--processes", "2")
    try:
        port = int(svc.wait_line(r"fake SERVING on 127\.0\.0\.1:(\d+) \(2 worker processes\)").group(1))
        pids = [int(m) for m in svc.wait_line(r"with 2 worker processes: pids (\d+ \d+)").group(1).split()]
        assert _check(port)[0] == health_pb2.HealthCheckResponse.SERVING
        svc.proc.kill()
        svc.proc.wait()
        assert _wait_gone(pids, BOUND), f"workers outlived their supervisor: {[p for p in pids if _alive(p)]}"
    finally:
        svc.close()


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT is Linux's")
def test_a_worker_that_cannot_start_stops_the_service_with_an_error(tmp_path):
    svc = Service(tmp_path, "--port", "0", "--processes", "3", FAKE_FAIL_WORKER="2")
    try:
        svc.wait_line(r"fake failed to start: this worker cannot start")
        svc.wait_line(r"worker 2 exited with code 1 before it was SERVING; stopping the service")
        assert svc.proc.wait(timeout=BOUND) == 1
    finally:
        svc.close()


@pytest.mark.integration
def test_one_process_is_the_service_itself(tmp_path):
    svc = Service(tmp_path, "--port", "0")
    try:
        port = int(svc.wait_line(r"^fake SERVING on 127\.0\.0\.1:(\d+)$").group(1))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            _, call = health_pb2_grpc.HealthStub(ch).Check.with_call(
                health_pb2.HealthCheckRequest(service=""), timeout=BOUND)
            assert workers.TAG_KEY not in dict(call.trailing_metadata())
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=BOUND) == 0
        assert not any("worker=" in line for line in svc.seen)  # no supervisor, no worker
    finally:
        svc.close()
