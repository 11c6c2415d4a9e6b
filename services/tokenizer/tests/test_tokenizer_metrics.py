"""The tokenizer's metrics over real HTTP, after real calls to a real in-process server: calls by RPC and final
code (a bidirectional stream counted once, when it ends), and their latency."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from tokenway.tokenizer.v1 import tokenizer_pb2 as pb
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc as pb_grpc

from tokenway_common.config import load
from tokenway_common.metrics import MetricsEndpoint
from tokenway_common.server import start_server
from tokenway_tokenizer.app import TokenizerApp
from tokenway_tokenizer.config import ENV_PREFIX, TokenizerSettings

if str(Path(__file__).resolve().parents[3]) not in sys.path:  # the repo root, whose tests/ package has:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.metrics import ascrape  # noqa: E402

SERVICE = "tokenway.tokenizer.v1.TokenizerService"


@pytest.fixture(scope="module")
async def served(model_dir):
    settings = TokenizerSettings(port=0, model=model_dir, metrics_port=0)
    app = TokenizerApp(settings)
    running = await start_server(settings, app)
    endpoint = MetricsEndpoint(app.metrics, "127.0.0.1", 0)
    await endpoint.start()
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield pb_grpc.TokenizerServiceStub(channel), endpoint.port
    await endpoint.close()
    await running.stop(0)


def test_the_metrics_port_defaults_to_9092(model_dir):
    assert load(TokenizerSettings, ENV_PREFIX, [], env={f"{ENV_PREFIX}_MODEL": model_dir}).metrics_port == 9092


async def test_calls_are_counted_by_rpc_and_code_and_timed(served):
    stub, port = served
    before = await ascrape(port)
    for text in ("Hello there", "General Kenobi"):
        assert (await stub.Tokenize(pb.TokenizeRequest(texts=[text]), timeout=30)).encodings
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Tokenize(pb.TokenizeRequest(texts=[]), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    requests = [pb.DetokenizeStreamRequest(start=pb.DetokenizeStreamStart()),
                pb.DetokenizeStreamRequest(chunk=pb.DetokenizeStreamChunk(token_ids=[300, 301])),
                pb.DetokenizeStreamRequest(chunk=pb.DetokenizeStreamChunk(token_ids=[302], last=True))]
    assert len([r async for r in stub.DetokenizeStream(iter(requests), timeout=30)]) == 2
    after = await ascrape(port)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)
    total, seconds = "tokenway_tokenizer_requests_total", "tokenway_tokenizer_request_duration_seconds_count"
    assert delta(total, rpc=f"{SERVICE}/Tokenize", code="OK") == 2
    assert delta(total, rpc=f"{SERVICE}/Tokenize", code="INVALID_ARGUMENT") == 1
    assert delta(total, rpc=f"{SERVICE}/DetokenizeStream", code="OK") == 1  # once, not per message
    assert delta(seconds, rpc=f"{SERVICE}/Tokenize") == 3
    assert delta(seconds, rpc=f"{SERVICE}/DetokenizeStream") == 1
    assert delta(total) == 4  # nothing else was counted
