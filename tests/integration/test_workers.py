"""The tokenizer as two worker processes on one port (--processes 2): connections spread over both, a
killed worker is replaced while the port keeps serving, SIGTERM drains every worker, and the inference
service refuses to be more than one process."""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.tokenizer.v1 import tokenizer_pb2, tokenizer_pb2_grpc

from tests.conftest import MODEL_DIR, ROOT
from tokenway_common.workers import TAG_KEY

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT is Linux's")]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
READINESS = "tokenway.tokenizer.v1.TokenizerService"
BOUND = 120.0  # seconds: a bound against hangs, never a timing assertion
CONNECTIONS = 64  # new connections tried to reach a given worker: each lands on either with even odds


class Supervised:
    """`python -m tokenway_tokenizer --processes 2` with its output (supervisor's and workers') read line by line."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENWAY_MODEL=str(MODEL_DIR),
                   TOKENWAY_RUN_DIR=str(run_dir))
        self.proc = subprocess.Popen([sys.executable, "-m", "tokenway_tokenizer", "--port", "0", "--processes", "2",
                                      "--drain-seconds", "0.5"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self.port = int(self.wait_line(r"tokenizer SERVING on 127\.0\.0\.1:(\d+) \(2 worker processes\)").group(1))

    def wait_line(self, pattern: str) -> re.Match:
        """The next output line matching `pattern` (synchronisation on log lines, bounded against hangs)."""
        deadline = time.monotonic() + BOUND
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(self.seen)[-5000:]}") from None
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m

    def connect(self) -> grpc.Channel:
        # A channel of its own subchannel pool: a new TCP connection, never one shared with another channel.
        return grpc.insecure_channel(f"127.0.0.1:{self.port}", options=[("grpc.use_local_subchannel_pool", 1)])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def worker_of(ch: grpc.Channel) -> tuple[int, int, int]:
    """(readiness, worker index, worker pid) as told by whichever worker this channel's connection reached."""
    resp, call = health_pb2_grpc.HealthStub(ch).Check.with_call(health_pb2.HealthCheckRequest(service=READINESS),
                                                                timeout=BOUND)
    index, pid = re.fullmatch(r"(\d+) pid=(\d+)", dict(call.trailing_metadata())[TAG_KEY]).groups()
    return resp.status, int(index), int(pid)


def channels_per_worker(svc: Supervised, want: set[int]) -> dict[int, grpc.Channel]:
    """An open channel (one connection) to each worker pid in `want`, trying up to CONNECTIONS new connections."""
    found: dict[int, grpc.Channel] = {}
    for _ in range(CONNECTIONS):
        ch = svc.connect()
        status, _, pid = worker_of(ch)
        assert status == SERVING
        if pid in want and pid not in found:
            found[pid] = ch
        else:
            ch.close()
        if set(found) == want:
            return found
    for ch in found.values():
        ch.close()
    raise AssertionError(f"{CONNECTIONS} new connections reached only workers {sorted(found)} of {sorted(want)}")


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent to reap it counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def pids_of(svc: Supervised) -> set[int]:
    return {int(p) for p in re.search(r"with 2 worker processes: pids (\d+) (\d+)", "".join(svc.seen)).groups()}


def suite_tool():
    """tools/suite.py as a module (it reads TOKENWAY_RUN_DIR when loaded)."""
    spec = importlib.util.spec_from_file_location("tokenway_suite_tool_workers", ROOT / "tools" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = Supervised(tmp_path_factory.mktemp("workers-run"))
    service.wait_line(r"tokenizer SERVING on .* with 2 worker processes: pids")
    yield service
    service.close()


def test_connections_spread_over_both_workers_and_each_serves_the_same_answers(svc):
    pids = pids_of(svc)
    channels = channels_per_worker(svc, pids)
    try:
        answers = []
        for pid, ch in channels.items():
            assert worker_of(ch)[2] == pid  # one channel, one connection, one worker
            resp = tokenizer_pb2_grpc.TokenizerServiceStub(ch).Tokenize(
                tokenizer_pb2.TokenizeRequest(texts=["Hello, workers!"]), timeout=BOUND)
            answers.append([list(t.token_ids) for t in resp.encodings])
        assert answers[0] == answers[1] and answers[0][0]
    finally:
        for ch in channels.values():
            ch.close()
    assert any("worker=1" in line for line in svc.seen) and any("worker=2" in line for line in svc.seen)


def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(svc):
    pids = pids_of(svc)
    with svc.connect() as ch:
        _, index, victim = worker_of(ch)
    (survivor,) = pids - {victim}
    os.kill(victim, signal.SIGKILL)
    svc.wait_line(rf"worker {index} exited unexpectedly \(killed by SIGKILL\); restarting it")
    svc.wait_line(rf"tokenizer starting up; binds 127\.0\.0\.1:{svc.port} once ready worker={index}")
    # The dead worker's socket left the group and its replacement binds only once it is ready: every new
    # connection reaches a worker that is SERVING, never the dead one nor one still loading.
    for _ in range(8):
        with svc.connect() as ch:
            status, _, pid = worker_of(ch)
        assert status == SERVING and pid != victim
    replacement = int(svc.wait_line(rf"worker {index} SERVING again: pid (\d+)").group(1))
    assert replacement not in pids
    channels = channels_per_worker(svc, {survivor, replacement})
    for ch in channels.values():
        ch.close()


def test_sigterm_drains_every_worker_and_the_supervisor_exits_0(svc):
    """Runs last in this module: stops the module's service the way `make down` does (tools/suite.py stop)."""
    with svc.connect() as ch:
        first = worker_of(ch)[2]
    pids = {first} | {int(m) for m in re.findall(r"SERVING again: pid (\d+)", "".join(svc.seen))} | pids_of(svc)
    pids = {p for p in pids if alive(p)}
    assert len(pids) == 2
    channels = channels_per_worker(svc, pids)
    try:
        watches = [health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=READINESS), timeout=BOUND)
                   for ch in channels.values()]
        assert [next(w).status for w in watches] == [SERVING, SERVING]
        with mock.patch.dict(os.environ, TOKENWAY_RUN_DIR=str(svc.run_dir)):
            suite = suite_tool()
        pid_file = svc.run_dir / "tokenizer.pid"
        pid_file.write_text(str(svc.proc.pid))  # as `make up` leaves it: the supervisor's pid
        stopper = threading.Thread(target=suite.stop, args=([("tokenizer", svc.proc.pid, svc.proc)],))
        stopper.start()
        assert [next(w).status for w in watches] == [NOT_SERVING, NOT_SERVING]  # each worker, before it drains
        stopper.join(timeout=BOUND)
        assert svc.proc.returncode == 0 and not pid_file.exists()
    finally:
        for ch in channels.values():
            ch.close()
    assert not [p for p in pids if alive(p)]
    svc.wait_line(r"tokenizer stopped \(2 worker processes\)")
    with pytest.raises(grpc.RpcError) as e, svc.connect() as ch:
        worker_of(ch)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Traceback" not in "".join(svc.seen)


def test_the_inference_service_refuses_more_than_one_process():
    proc = subprocess.run([sys.executable, "-m", "tokenway_inference", "--processes", "2"], cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENWAY_MODEL=str(MODEL_DIR)),
                          capture_output=True, text=True, timeout=BOUND)
    assert proc.returncode == 2
    assert "TOKENWAY_INFERENCE_PROCESSES (--processes): must be 1 here: one engine and model per process" in proc.stderr


def test_make_run_gives_the_cpu_tier_processes_by_the_cores():
    rule = suite_tool().cpu_tier_processes
    assert rule(1) == rule(2) == rule(4) == {"orchestrator": 1, "tokenizer": 1}
    assert rule(16) == {"orchestrator": 4, "tokenizer": 2}
    assert rule(256) == {"orchestrator": 8, "tokenizer": 8}
