"""Health, reflection and lifecycle of the separately started services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.conftest import MODEL_DIR, ROOT, free_port

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
EXPECTED = {
    "orchestrator": {"tokenway.v1.ChatService", "tokenway.v1.CompletionService", "tokenway.v1.ModelService"},
    "tokenizer": {"tokenway.tokenizer.v1.TokenizerService"},
    "inference": {"tokenway.inference.v1.InferenceService"},
}
COMMON = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_service_is_live_ready_and_reflects_its_services(suite, name):
    with suite.channel(getattr(suite, name)) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", *EXPECTED[name]):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == SERVING
        listed = set(ProtoReflectionDescriptorDatabase(ch).get_services())
        assert listed >= EXPECTED[name] | COMMON


def _spawn(module: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENWAY_MODEL=str(MODEL_DIR))
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_orchestrator_stays_not_ready_without_its_peers_then_drains_on_sigterm():
    port, nowhere = free_port(), free_port()
    proc = _spawn("tokenway_orchestrator", "--port", str(port), "--tokenizer-address", f"127.0.0.1:{nowhere}",
                  "--inference-addresses", f"127.0.0.1:{nowhere}", "--drain-seconds", "0.5")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True, timeout=60)
            assert next(watch).status == SERVING  # alive...
            ready = health.Check(health_pb2.HealthCheckRequest(service="tokenway.v1.ChatService"), timeout=5)
            assert ready.status == NOT_SERVING  # ...but not ready: no peers
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING  # flips before it drains
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_a_standalone_tokenizer_reports_serving_then_shuts_down_cleanly():
    port = free_port()
    proc = _spawn("tokenway_tokenizer", "--port", str(port), "--drain-seconds", "0.5")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service="tokenway.tokenizer.v1.TokenizerService"), wait_for_ready=True,
                timeout=60)
            statuses = []
            for resp in watch:
                statuses.append(resp.status)
                if resp.status == SERVING:
                    break
            assert statuses[-1] == SERVING
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_bad_configuration_fails_fast_with_a_clear_message():
    proc = _spawn("tokenway_orchestrator", "--port", "-4", "--max-n", "many")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "TOKENWAY_ORCHESTRATOR_PORT" in out and "TOKENWAY_ORCHESTRATOR_MAX_N" in out
