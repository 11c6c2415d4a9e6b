"""The inference service's metrics over real HTTP, after real Generate calls to a real in-process server on the
embedded engine: tokens in and out, time to first token and inter-token latency per stream, calls by code, and
the engine's load (what an autoscaler reads) as GetLoad reports it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc

from tokenway_common.config import load
from tokenway_common.metrics import MetricsEndpoint
from tokenway_common.server import start_server
from tokenway_inference.app import InferenceApp
from tokenway_inference.config import PREFIX, InferenceSettings

from conftest import LONG, MODEL_DIR, settings

if str(Path(__file__).resolve().parents[3]) not in sys.path:  # the repo root, whose tests/ package has:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.metrics import ascrape  # noqa: E402

PROMPT = [0, 17, 230, 999, 42, 7, 3000, 12]
GENERATE = "tokenway.inference.v1.InferenceService/Generate"


@pytest.fixture(scope="module")
async def served(engine):
    app = InferenceApp(settings(metrics_port=0), engine=engine)
    running = await start_server(settings(), app)
    endpoint = MetricsEndpoint(app.metrics, "127.0.0.1", 0)
    await endpoint.start()
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield pb_grpc.InferenceServiceStub(channel), endpoint.port
    await endpoint.close()
    await running.server.stop(None)  # the session fixture closes the shared engine


def request(rid: str, max_tokens: int, prompt=PROMPT) -> pb.GenerateRequest:
    return pb.GenerateRequest(request_id=rid, prompt_token_ids=prompt, sampling=pb.SamplingParams(temperature=0.0),
                              stopping=pb.StoppingParams(max_tokens=max_tokens, ignore_eos=True))


async def idle(engine) -> None:
    assert await asyncio.to_thread(engine.wait_until, lambda load: load.running == 0 and load.waiting == 0, 60), \
        engine.load()


def test_the_metrics_port_defaults_to_9093():
    assert load(InferenceSettings, PREFIX, [], env={f"{PREFIX}_MODEL": MODEL_DIR}).metrics_port == 9093


async def test_generate_counts_its_tokens_its_first_token_and_the_gaps_after_it(served, engine):
    stub, port = served
    await idle(engine)
    before = await ascrape(port)
    messages = [m async for m in stub.Generate(request("metrics-1", 5), timeout=60)]
    assert sum(len(m.token_ids) for m in messages) == 5
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in stub.Generate(request("metrics-2", 5, prompt=[]), timeout=60):
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await ascrape(port)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)
    n = "tokenway_inference_"
    assert delta(n + "prompt_tokens_total") == len(PROMPT)
    assert delta(n + "generation_tokens_total") == 5
    assert delta(n + "ttft_seconds_count") == 1
    # one observation per message with tokens after the first, whatever the engine put in each
    assert delta(n + "inter_token_latency_seconds_count") == sum(1 for m in messages if m.token_ids) - 1
    assert delta(n + "requests_total", rpc=GENERATE, code="OK") == 1
    assert delta(n + "requests_total", rpc=GENERATE, code="INVALID_ARGUMENT") == 1
    assert delta(n + "rejections_total") == 0  # a bad request is no refusal of work


async def test_the_engine_load_is_read_at_scrape_time_as_getload_reads_it(served, engine):
    stub, port = served
    await idle(engine)
    m = await ascrape(port)
    assert (m.value("tokenway_inference_running_requests"), m.value("tokenway_inference_waiting_requests")) == (0, 0)
    assert m.value("tokenway_inference_max_batch_size") == engine.load().max_batch_size
    call = stub.Generate(request("metrics-long", LONG), timeout=120)
    await call.read()  # running
    m = await ascrape(port)
    load = await stub.GetLoad(pb.GetLoadRequest(), timeout=30)
    assert (m.value("tokenway_inference_running_requests"), m.value("tokenway_inference_waiting_requests")) == \
        (load.running, load.waiting) == (1, 0)
    assert 0 < m.value("tokenway_inference_kv_cache_usage_ratio") <= 1
    cancelled = m.value("tokenway_inference_requests_total", rpc=GENERATE, code="CANCELLED")
    call.cancel()
    await idle(engine)

    async def counted():  # the server's side of the cancellation ends the call on its own time
        while (m := await ascrape(port)).value("tokenway_inference_requests_total", rpc=GENERATE,
                                               code="CANCELLED") != cancelled + 1:
            await asyncio.sleep(0.02)  # a poll, bounded by wait_for
        return m
    m = await asyncio.wait_for(counted(), 60)
    assert m.value("tokenway_inference_running_requests") == 0
