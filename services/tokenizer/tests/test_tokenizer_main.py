"""The service as a real process: it becomes SERVING, and SIGTERM stops it with exit code 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenway_tokenizer.config import SERVICE_NAME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_process_serves_then_exits_cleanly_on_sigterm(model_dir):
    port = free_port()
    env = {**os.environ, "TOKENWAY_TOKENIZER_MODEL": model_dir, "TOKENWAY_TOKENIZER_GRACE_SECONDS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tokenway_tokenizer", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            # Watch streams every status change; wait_for_ready covers the time before the port is bound.
            for reply in health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=60,
                                      wait_for_ready=True):
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"tokenizer SERVING on 127.0.0.1:{port}" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_bad_setting_exits_2_with_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tokenway_tokenizer", "--model", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "TOKENWAY_TOKENIZER_MODEL" in proc.stderr
