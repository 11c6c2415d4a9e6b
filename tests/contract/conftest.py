"""The engine contract: one inference service process per engine, driven through its gRPC API only.

`--engine NAME` (repeatable) picks the engines; default `transformers`. `make test-vllm` adds
`--engine vllm`: the service then runs from the vLLM venv (`make setup-vllm`), exactly as
`make up ENGINE=vllm` starts it. Tests of engines not picked are deselected, not skipped (the option
and the deselection live in tests/conftest.py: pytest reads options from the top conftest only).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import MODEL_DIR, ROOT, free_port
from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc

ENGINES = ("transformers", "vllm")
SERVICE = "tokenway.inference.v1.InferenceService"
#: Small on purpose: two running and one waiting sequence fill the service, so overload is reachable.
MAX_BATCH, MAX_WAITING = 2, 1


class Server:
    """One inference service process and what a test needs to talk to it."""

    def __init__(self, engine: str, log: Path) -> None:
        self.engine, self.log, self.port, self.metrics_port = engine, log, free_port(), free_port()
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENWAY_MODEL=str(MODEL_DIR),
                   TOKENWAY_INFERENCE_ENGINE=engine, TOKENWAY_INFERENCE_DTYPE="float32",
                   TOKENWAY_INFERENCE_THREADS=os.environ.get("TOKENWAY_INFERENCE_THREADS", "1"),  # 0 on GPUs
                   TOKENWAY_INFERENCE_MAX_BATCH_SIZE=str(MAX_BATCH),
                   TOKENWAY_INFERENCE_MAX_WAITING=str(MAX_WAITING), TOKENWAY_INFERENCE_DRAIN_SECONDS="0",
                   TOKENWAY_INFERENCE_METRICS_PORT=str(self.metrics_port),  # a free one (test_engine_metrics)
                   VLLM_CACHE_ROOT=str(ROOT / ".tokenway" / "vllm-cache"))
        from tools.suite import inference_python  # the interpreter `make up ENGINE=...` uses
        self.proc = subprocess.Popen([inference_python(env), "-m", "tokenway_inference", "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=env, stdout=log.open("wb"),
                                     stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.InferenceServiceStub(self.channel)
        self.statuses: list[int] = []  # every status the health Watch reported, in order
        self._changed = threading.Condition()
        self._watch = health_pb2_grpc.HealthStub(self.channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), wait_for_ready=True)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for resp in self._watch:
                with self._changed:
                    self.statuses.append(resp.status)
                    self._changed.notify_all()
        except grpc.RpcError:
            pass
        with self._changed:
            self.statuses.append(-1)  # the stream ended: the server is gone
            self._changed.notify_all()

    def wait_status(self, status: int, timeout: float) -> bool:
        """Waits for the health Watch to report `status` (or the process to exit)."""
        with self._changed:
            return self._changed.wait_for(lambda: status in self.statuses or -1 in self.statuses
                                          or self.proc.poll() is not None, timeout) and status in self.statuses

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self._watch.cancel()
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    s = Server(request.param, tmp_path_factory.mktemp(request.param) / "inference.log")
    try:
        if not s.wait_status(health_pb2.HealthCheckResponse.SERVING, 300):
            pytest.fail(f"the {request.param} inference service did not become SERVING:\n{s.tail()}")
        yield s
    finally:
        s.close()


def pytest_generate_tests(metafunc):
    if "server" in metafunc.fixturenames:
        metafunc.parametrize("server", ENGINES, indirect=True, scope="module")


def wait_load(stub, predicate, timeout: float = 60.0) -> pb.GetLoadResponse:
    """Polls GetLoad, as a router would, until `predicate` holds (the state is reported after each engine step)."""
    deadline = time.monotonic() + timeout
    while True:
        load = stub.GetLoad(pb.GetLoadRequest(), timeout=10)
        if predicate(load):
            return load
        if time.monotonic() > deadline:
            raise AssertionError(f"GetLoad never satisfied the condition; last: {load}")
        time.sleep(0.02)  # poll interval, not synchronisation: the loop exits on the observed state
