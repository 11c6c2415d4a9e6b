"""The orchestrator over real in-process grpc.aio servers: statuses, ErrorInfo reasons, deadlines,
cancellation and replica loss."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from tokenway.inference.v1 import inference_pb2
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2, common_pb2

from tokenway_common.errors import error_info
from tokenway_common.server import start_server
from tokenway_inference.app import InferenceApp
from tokenway_inference.config import InferenceSettings
from tokenway_orchestrator.app import OrchestratorApp

MODEL = "tokenway-tiny"


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


class SharedEngineApp(InferenceApp):
    """An inference server around an engine it does not own (several servers, one model load)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def req(cls=chat_pb2.CreateChatCompletionRequest, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", [chat_pb2.ChatRequestMessage(role="user", content=text_value("Tell me about deadlines."))])
    return cls(**kw)


async def idle(inference, seconds: float = 30.0) -> bool:
    """Polls GetLoad until nothing runs or waits, within a deadline."""
    async def poll():
        while True:
            load = await inference.GetLoad(inference_pb2.GetLoadRequest())
            if load.running == 0 and load.waiting == 0:
                return True
            await asyncio.sleep(0.02)  # polling interval, bounded by wait_for
    return await asyncio.wait_for(poll(), seconds)


@pytest.mark.parametrize("kw, code, reason", [
    ({"model": "missing"}, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
    ({"model": ""}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    ({"top_p": 0.0}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    ({"logit_bias": {999999: 1.0}}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    ({"top_logprobs": 2}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    ({"stream_options": {"include_usage": True}}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
])
async def test_invalid_requests_are_rejected_with_reasons(chat, kw, code, reason):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await chat.CreateChatCompletion(req(**kw), timeout=30)
    assert e.value.code() == code and error_info(e.value).reason == reason
    assert error_info(e.value).domain == "tokenway.io"


async def test_the_callers_deadline_reaches_the_engine(chat, inference):
    call = chat.StreamChatCompletion(req(chat_pb2.StreamChatCompletionRequest, max_tokens=1800, ignore_eos=True),
                                     timeout=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in call:
            pass
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await idle(inference)


async def test_cancelling_a_unary_call_aborts_the_engine_request(chat, inference, stack):
    call = chat.CreateChatCompletion(req(max_tokens=1800, ignore_eos=True, n=2), timeout=60)
    assert await asyncio.to_thread(stack.engine.wait_until, lambda load: load.running == 2, 30)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await idle(inference)


async def test_requests_fail_over_to_a_ready_replica_and_are_unavailable_without_one(stack):
    """Two replicas over one engine: losing one moves new requests to the other; losing both is UNAVAILABLE."""
    s = InferenceSettings(port=0, model=stack.model_dir)
    replicas = [await start_server(s, SharedEngineApp(s, stack.engine)) for _ in range(2)]
    osettings = stack.settings(inference_addresses=tuple(r.address for r in replicas))
    app = OrchestratorApp(osettings)
    orch = await start_server(osettings, app)
    try:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            chat = stack.chat(ch)
            ok = await chat.CreateChatCompletion(req(max_tokens=2), timeout=30)
            assert ok.choices[0].finish_reason == "length"
            await replicas[0].stop(grace=0)
            await asyncio.wait_for(_lost(app.router.replicas[0]), 10)
            assert (await chat.CreateChatCompletion(req(max_tokens=2), timeout=30)).choices
            await replicas[1].stop(grace=0)
            await asyncio.wait_for(_lost(app.router.replicas[1]), 10)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await chat.CreateChatCompletion(req(max_tokens=2), timeout=30)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(e.value).reason == "MODEL_UNAVAILABLE"
    finally:
        await orch.stop()
        for r in replicas:
            await r.server.stop(0)


@pytest.mark.parametrize("sampling", [
    {"temperature": 0},
    {"temperature": 0, "frequency_penalty": 1.0, "presence_penalty": 0.5},
    {"temperature": 0.9, "top_p": 0.95, "seed": 7},
], ids=["greedy", "greedy-penalties", "seeded"])
async def test_a_stream_moves_to_another_replica_when_its_replica_is_lost(stack, sampling):
    """Mid-stream migration: the replica serving a stream stops; the stream continues on the other from the
    prompt plus the tokens already streamed (as resumed tokens: penalties count them, a seeded sampler
    draws on past them), and the caller gets the unbroken run's text and usage."""
    s = InferenceSettings(port=0, model=stack.model_dir)
    replicas = [await start_server(s, SharedEngineApp(s, stack.engine)) for _ in range(2)]
    osettings = stack.settings(inference_addresses=tuple(r.address for r in replicas))
    app = OrchestratorApp(osettings)
    orch = await start_server(osettings, app)
    request = req(cls=chat_pb2.StreamChatCompletionRequest, max_tokens=300, ignore_eos=True, **sampling,
                  stream_options=common_pb2.StreamOptions(include_usage=True))

    async def rest(call, text=""):
        usage = None
        while (c := await call.read()) is not grpc.aio.EOF:
            text += "".join(ch.delta.content for ch in c.choices)
            usage = c.usage if c.HasField("usage") else usage
        return text, usage
    try:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            chat = stack.chat(ch)
            whole, whole_usage = await rest(chat.StreamChatCompletion(request, timeout=120))
            call = chat.StreamChatCompletion(request, timeout=120)
            text = ""
            for _ in range(5):  # a few tokens in
                text += "".join(c.delta.content for c in (await call.read()).choices)
            (serving,) = [i for i, r in enumerate(app.router.replicas) if r.in_flight]
            await replicas[serving].stop(grace=0)
            text, usage = await rest(call, text)
        assert text == whole and usage.completion_tokens == whole_usage.completion_tokens == 300
        assert usage.prompt_tokens == whole_usage.prompt_tokens
    finally:
        await orch.stop()
        for r in replicas:
            await r.server.stop(0)


async def _lost(replica) -> None:
    """Returns once the orchestrator's health watch has seen the replica go (an event, not a poll)."""
    while replica.ready:
        replica.ready_changed.clear()
        await replica.ready_changed.wait()
