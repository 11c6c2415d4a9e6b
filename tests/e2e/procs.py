"""Processes the end-to-end tests start beside the session's suite: orchestrators on its peers, Envoys in
front of them, keys made with the `tokenway` CLI as a user makes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT, free_port


def spawn(cmd: list[str], env: dict) -> subprocess.Popen:
    """Starts a process whose output goes to its own log in the suite's run directory (kept for failures)."""
    log = Path(env["TOKENWAY_RUN_DIR"]) / f"{Path(cmd[-1] if cmd[1] != '-m' else cmd[2]).stem}-{free_port()}.log"
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(check, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, "process exited during startup"
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.1)  # readiness poll


def _envoy_ready(admin: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start_envoy(env: dict, orchestrator_port: int, **extra: str) -> tuple[subprocess.Popen, int]:
    rest, admin = free_port(), free_port()
    envoy_env = dict(env, TOKENWAY_ENVOY_PORT=str(rest), TOKENWAY_ENVOY_ADMIN_PORT=str(admin),
                     TOKENWAY_ORCHESTRATOR_PORT=str(orchestrator_port), **extra)
    proc = spawn([sys.executable, "tools/envoy.py", "run", "--out", os.path.join(env["TOKENWAY_RUN_DIR"], f"envoy-{rest}.yaml")],
                  envoy_env)
    wait_ready(lambda: _envoy_ready(admin), proc)
    return proc, rest


TOKENWAY = str(Path(sys.executable).parent / "tokenway")  # the CLI, installed with the orchestrator


def tokenway(env: dict, *args: str):
    """`tokenway ARGS --format json` (the CLI, on the store env names), parsed."""
    out = subprocess.run([TOKENWAY, *args, "--format", "json"], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def create_key(env: dict, name: str, *options: str) -> str:
    """A key made the way a user makes one: `tokenway keys create NAME ... --format json`."""
    return tokenway(env, "keys", "create", name, *options)["key"]


def start_orchestrator(suite, env: dict, port: int, *args: str) -> subprocess.Popen:
    """An orchestrator on the suite's tokenizer and inference, SERVING (its health Watch says) on return."""
    proc = spawn([sys.executable, "-m", "tokenway_orchestrator", "--port", str(port), "--tokenizer-address",
                  f"127.0.0.1:{suite.tokenizer}", "--inference-addresses", f"127.0.0.1:{suite.inference}", *args], env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            for resp in health_pb2_grpc.HealthStub(ch).Watch(
                    health_pb2.HealthCheckRequest(service="tokenway.v1.ChatService"), wait_for_ready=True, timeout=90):
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    break
    except BaseException:
        proc.kill()
        raise
    return proc


def watch_health(port: int, service: str, want: int, seconds: float = 120) -> None:
    """Returns once the health of `service` on 127.0.0.1:`port` says `want` (a health Watch: each change is
    pushed, nothing is polled); fails naming the service and its last status when `seconds` pass first."""
    last = "no answer"
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            for resp in health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=service),
                                                             wait_for_ready=True, timeout=seconds):
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
                if resp.status == want:
                    return
    except grpc.RpcError as e:
        last = f"{last}, then {e.code().name}"
    raise AssertionError(f"{service} on port {port} not {health_pb2.HealthCheckResponse.ServingStatus.Name(want)} "
                         f"within {seconds:.0f}s ({last})")


def stop(procs: list[subprocess.Popen]) -> None:
    """Ends every process still running: SIGTERM to all, then each waited for (SIGKILL after 30 s)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=30)
