"""InferenceService over a real in-process grpc.aio server on port 0, with real stubs."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc
from tokenway_common import errors
from tokenway_common.modeldir import tokenizer_fingerprint
from tokenway_common.server import start_server
from tokenway_inference.app import SERVICE_NAME, InferenceApp
from tokenway_inference.engines import create_engine
from tokenway_inference.engines.errors import EngineUnavailable

from conftest import LONG, MODEL_DIR, settings

PROMPT = [0, 17, 230, 999, 42, 7, 3000, 12]


@pytest.fixture(scope="module")
async def server(engine):
    running = await start_server(settings(), InferenceApp(settings(), engine=engine))
    yield running
    await running.server.stop(None)  # the session fixture closes the shared engine


@pytest.fixture(scope="module")
async def stub(server):
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield pb_grpc.InferenceServiceStub(channel)


def gen_request(rid: str, max_tokens: int = 16, **kw) -> pb.GenerateRequest:
    return pb.GenerateRequest(request_id=rid, prompt_token_ids=kw.pop("prompt", PROMPT),
                              sampling=kw.pop("sampling", pb.SamplingParams(temperature=0.0)),
                              stopping=pb.StoppingParams(max_tokens=max_tokens, ignore_eos=True), **kw)


async def read_rest(call) -> list[pb.GenerateResponse]:
    out = []
    while (m := await call.read()) is not grpc.aio.EOF:
        out.append(m)
    return out


async def wait_idle(stub, engine) -> pb.GetLoadResponse:
    """Waits (on the engine's step notifications, off the loop) until nothing runs or waits, then
    returns what GetLoad reports: the engine is idle, so the RPC sees the same state."""
    assert await asyncio.to_thread(engine.wait_until, lambda load: load.running == 0 and load.waiting == 0, 30), \
        engine.load()
    return await stub.GetLoad(pb.GetLoadRequest(), timeout=5)


async def test_generate_streams_with_prompt_info_and_cumulative_counts(stub):
    msgs = [m async for m in stub.Generate(gen_request("s1", max_tokens=12, logprobs=2), timeout=60)]
    assert msgs[0].HasField("prompt_info") and msgs[0].prompt_info.prompt_tokens == len(PROMPT)
    assert all(not m.HasField("prompt_info") for m in msgs[1:])
    total = 0
    for m in msgs:
        total += len(m.token_ids)
        assert m.completion_tokens == total and len(m.logprobs) == len(m.token_ids)
        assert all(len(lp.top) == 2 for lp in m.logprobs)
    assert total == 12
    assert [m.finish_reason for m in msgs[:-1]] == [pb.FINISH_REASON_UNSPECIFIED] * (len(msgs) - 1)
    assert msgs[-1].finish_reason == pb.FINISH_REASON_LENGTH and not msgs[-1].HasField("stop_token_id")


async def test_slow_reader_gets_several_tokens_per_message(stub, engine):
    """A reader that does not keep up receives the tokens produced meanwhile in one message."""
    max_tokens = 64
    call = stub.Generate(gen_request("slow", max_tokens=max_tokens), timeout=60)
    first = await call.read()
    # From here until read_rest() this coroutine holds the event loop, and with it the handler (same
    # loop): nothing more is sent. Messages already sent or in flight hold only tokens produced before
    # `held_at`; every later token is queued for the handler while it cannot run, and must come in
    # the one message it sends next, the last.
    held_at = engine.generated_tokens("slow")
    if held_at is None:  # it already finished: every token was produced before the hold
        held_at = max_tokens
    assert engine.wait_until(lambda load: engine.generated_tokens("slow") is None, timeout=60)  # finished, queued
    msgs = [first, *await read_rest(call)]
    assert sum(len(m.token_ids) for m in msgs[:-1]) <= held_at, ([len(m.token_ids) for m in msgs], held_at)
    assert len(msgs[-1].token_ids) >= max_tokens - held_at
    assert msgs[-1].completion_tokens == max_tokens and msgs[-1].finish_reason == pb.FINISH_REASON_LENGTH


async def test_stop_token_is_reported(stub):
    req = pb.GenerateRequest(request_id="eos", prompt_token_ids=PROMPT,
                             sampling=pb.SamplingParams(temperature=0.0, logit_bias={4: 100.0}),
                             stopping=pb.StoppingParams(max_tokens=8))
    msgs = [m async for m in stub.Generate(req, timeout=60)]
    assert [t for m in msgs for t in m.token_ids] == [4]
    assert msgs[-1].finish_reason == pb.FINISH_REASON_STOP and msgs[-1].stop_token_id == 4


async def test_cancelling_the_call_frees_the_batch(stub, engine):
    call = stub.Generate(gen_request("cancel-me", max_tokens=LONG), timeout=60)
    await call.read()
    assert (await stub.GetLoad(pb.GetLoadRequest())).running == 1
    call.cancel()
    load = await wait_idle(stub, engine)
    assert load.running == 0 and load.kv_cache_usage == 0.0 and load.max_batch_size == 8
    assert engine.generated_tokens("cancel-me") is None


async def test_abort_ends_the_stream_with_abort(stub, engine):
    call = stub.Generate(gen_request("abort-me", max_tokens=LONG), timeout=60)
    await call.read()
    resp = await stub.Abort(pb.AbortRequest(request_ids=["abort-me", "unknown"]), timeout=5)
    assert list(resp.aborted_request_ids) == ["abort-me"]
    rest = await read_rest(call)
    assert rest[-1].finish_reason == pb.FINISH_REASON_ABORT and rest[-1].completion_tokens < LONG
    assert await call.code() == grpc.StatusCode.OK
    assert (await wait_idle(stub, engine)).running == 0


@pytest.mark.parametrize("req, reason", [
    (gen_request("bad1", prompt=[]), "EMPTY_PROMPT"),
    (gen_request("bad2", prompt=[5] * 5000), "CONTEXT_LENGTH_EXCEEDED"),
    (gen_request("bad3", prompt=[5, 100_000]), "TOKEN_ID_OUT_OF_RANGE"),
    (gen_request("bad4", sampling=pb.SamplingParams(min_p=2.0)), "INVALID_PARAMETER"),
])
async def test_invalid_argument_statuses(stub, req, reason):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        [m async for m in stub.Generate(req, timeout=30)]
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.error_info(e.value).reason == reason


@pytest.mark.parametrize("resumed", [len(PROMPT), len(PROMPT) + 5])
async def test_resumed_tokens_must_leave_a_real_prompt_token(stub, resumed):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        [m async for m in stub.Generate(gen_request("resume-bad", resumed_tokens=resumed), timeout=30)]
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.error_info(e.value).reason == "INVALID_PARAMETER"
    assert [f for f, _ in errors.from_rpc_error(e.value, "inference").field_violations] == ["resumed_tokens"]
    msgs = [m async for m in stub.Generate(gen_request("resume-ok", max_tokens=3, resumed_tokens=len(PROMPT) - 1),
                                           timeout=30)]
    assert msgs[0].prompt_info.prompt_tokens == len(PROMPT) and msgs[-1].completion_tokens == 3


async def test_duplicate_request_id_status(stub, engine):
    call = stub.Generate(gen_request("twice", max_tokens=LONG), timeout=60)
    await call.read()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        [m async for m in stub.Generate(gen_request("twice"), timeout=30)]
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.error_info(e.value).reason == "DUPLICATE_REQUEST_ID"
    call.cancel()
    assert (await wait_idle(stub, engine)).running == 0


async def test_full_queue_is_resource_exhausted_with_retry_info(stub, engine, monkeypatch):
    monkeypatch.setattr(engine, "max_batch_size", 1)
    monkeypatch.setattr(engine, "max_waiting", 0)
    call = stub.Generate(gen_request("hog", max_tokens=LONG), timeout=60)
    await call.read()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        [m async for m in stub.Generate(gen_request("turned-away"), timeout=30)]
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = errors.from_rpc_error(e.value, "inference")
    assert err.reason == "QUEUE_FULL" and err.retry_after == pytest.approx(1.0)
    call.cancel()
    assert (await wait_idle(stub, engine)).running == 0


async def test_model_info(stub):
    info = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    assert info.model_name == "tokenway-tiny" and info.engine == "transformers"
    assert list(info.eos_token_ids) == [1, 4] and info.bos_token_id == 0 and info.pad_token_id == 2
    assert info.max_context_length == 2048 and info.vocab_size == 3645 and info.default_max_tokens == 256
    d = info.default_sampling
    assert (d.temperature, d.top_p, d.top_k) == pytest.approx((0.8, 0.95, 50))
    assert info.tokenizer_fingerprint == tokenizer_fingerprint(MODEL_DIR)


async def test_not_serving_until_started(engine):
    app = InferenceApp(settings(), engine=engine)
    running = await start_server(settings(), app, wait_ready=False)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            assert (await health.Check(check, timeout=5)).status == health_pb2.HealthCheckResponse.NOT_SERVING
            await app.start()
            await running.set_ready(True)
            assert (await health.Check(check, timeout=5)).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.server.stop(None)


def test_selecting_vllm_without_it_installed_fails_clearly():
    with pytest.raises(EngineUnavailable, match="vllm is not installed"):
        create_engine(settings(engine="vllm"))
    with pytest.raises(EngineUnavailable, match="TOKENWAY_INFERENCE_ENGINE=transformers"):
        InferenceApp(settings(engine="vllm"))
