"""Mid-stream migration with real processes: the inference replica serving a greedy stream is killed with
SIGKILL; the orchestrator continues the sequence on another replica from the prompt plus the tokens already
streamed, and the client (the openai SDK through Envoy) sees one unbroken stream with the unbroken run's
text and usage, and one usage record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.inference.v1 import inference_pb2, inference_pb2_grpc

from tests.conftest import MODEL_DIR, ROOT, free_port
from tests.e2e.procs import create_key, start_envoy, start_orchestrator, tokenway

pytestmark = pytest.mark.integration
MODEL = "tokenway-tiny"
SERVICE = "tokenway.inference.v1.InferenceService"


def _inference(env: dict, port: int) -> subprocess.Popen:
    """One more inference replica (the embedded engine), SERVING on return."""
    log = open(os.path.join(env["TOKENWAY_RUN_DIR"], f"inference-{port}.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tokenway_inference", "--port", str(port), "--model", str(MODEL_DIR)],
                            cwd=ROOT, env=dict(env, TOKENWAY_INFERENCE_THREADS="1"), stdout=log,
                            stderr=subprocess.STDOUT)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        for resp in health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE),
                                                        wait_for_ready=True, timeout=180):
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                break
    return proc


def _running(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return inference_pb2_grpc.InferenceServiceStub(ch).GetLoad(inference_pb2.GetLoadRequest(), timeout=10).running


@pytest.fixture
def two_replicas(suite, tmp_path):
    """Two inference processes of their own, an orchestrator routing over both, and Envoy in front."""
    env = dict(suite.env, TOKENWAY_ORCHESTRATOR_STORE=str(tmp_path / "tokenway.db"))
    procs: list[subprocess.Popen] = []
    try:
        ports = [free_port(), free_port()]
        procs += [_inference(env, p) for p in ports]
        orch_port = free_port()
        procs.append(start_orchestrator(suite, env, orch_port, "--inference-addresses",
                                        ",".join(f"127.0.0.1:{p}" for p in ports)))
        envoy, rest = start_envoy(env, orch_port)
        procs.append(envoy)
        yield {"env": env, "replicas": dict(zip(ports, procs[:2])), "url": f"http://127.0.0.1:{rest}/v1"}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_a_stream_survives_the_sigkill_of_its_replica(two_replicas):
    env = two_replicas["env"]
    client = openai.OpenAI(base_url=two_replicas["url"], api_key=create_key(env, "migrating"), max_retries=0,
                           timeout=120)
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 200,
           "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
           "extra_body": {"ignore_eos": True}}

    def read(stream, text=""):
        usage, ids = None, set()
        for chunk in stream:
            ids.add(chunk.id)
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        return text, usage, ids

    whole, whole_usage, _ = read(client.chat.completions.create(**ask))
    stream = iter(client.chat.completions.create(**ask))
    text = ""
    for _ in range(8):  # some tokens in
        text += "".join(c.delta.content or "" for c in next(stream).choices)
    (serving,) = [port for port in two_replicas["replicas"] if _running(port)]
    victim = two_replicas["replicas"][serving]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    text, usage, ids = read(stream, text)
    assert text == whole  # no visible break, the same greedy text
    assert (usage.prompt_tokens, usage.completion_tokens) == (whole_usage.prompt_tokens, whole_usage.completion_tokens)
    records = [r for r in tokenway(env, "usage", "--key", "migrating")]
    assert [(r["status"], r["completion_tokens"]) for r in records] == [("ok", 200), ("ok", 200)]
    assert {r["request_id"] for r in records} >= ids
