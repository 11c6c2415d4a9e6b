"""API keys, per-key limits, admission and usage records, on an orchestrator with auth on over real
in-process services and a real SQLite store."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.v1 import chat_pb2, chat_pb2_grpc, common_pb2, model_pb2, model_pb2_grpc

from tokenway_common.errors import error_info, status_details
from tokenway_common.server import start_server
from tokenway_orchestrator.app import OrchestratorApp
from tokenway_orchestrator.store import Limits

MODEL = "tokenway-tiny"


def chat_req(cls=chat_pb2.CreateChatCompletionRequest, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", [chat_pb2.ChatRequestMessage(role="user",
                                                           content=struct_pb2.Value(string_value="Hello there"))])
    return cls(**kw)


@pytest.fixture(scope="module")
async def guarded(stack, tmp_path_factory):
    """An orchestrator with auth on and its own store; (app, address)."""
    s = stack.settings(auth=True, store=str(tmp_path_factory.mktemp("policy") / "tokenway.db"))
    app = OrchestratorApp(s)
    server = await start_server(s, app)
    yield app, server.address
    await server.stop()


def key(app, name, **kw):
    limits = Limits(**{k: kw.pop(k) for k in list(kw) if k in Limits.__dataclass_fields__})
    return app.store.create_key(name, limits=limits, **kw)[1]


def md(secret, **extra):
    return (("authorization", f"Bearer {secret}"), *extra.items())


def reason(err: grpc.RpcError) -> str:
    return error_info(err).reason


def retry_delay(err: grpc.RpcError) -> float:
    for any_ in status_details(err).details:
        if any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            ri = error_details_pb2.RetryInfo()
            any_.Unpack(ri)
            return ri.retry_delay.ToNanoseconds() / 1e9
    raise AssertionError("no RetryInfo")


async def records(app, name):
    return await asyncio.to_thread(app.store.usage_records, key=name)


async def test_every_auth_outcome(guarded):
    app, address = guarded
    good = key(app, "auth-good")
    revoked = key(app, "auth-revoked")
    app.store.revoke_key("auth-revoked")
    scoped = key(app, "auth-scoped", models=("another-model",))
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        for metadata, code, why in [((), grpc.StatusCode.UNAUTHENTICATED, "MISSING_API_KEY"),
                                    (md("tw-0-nope"), grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY"),
                                    (md("tw-" + "x" * 8000), grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY"),
                                    (md(good + "x"), grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY"),
                                    (md(revoked), grpc.StatusCode.UNAUTHENTICATED, "REVOKED_API_KEY"),
                                    (md(scoped), grpc.StatusCode.PERMISSION_DENIED, "MODEL_NOT_ALLOWED")]:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await chat.CreateChatCompletion(chat_req(max_tokens=2), metadata=metadata, timeout=30)
            assert (e.value.code(), reason(e.value)) == (code, why), metadata[:1]
            with pytest.raises(grpc.aio.AioRpcError) as e:  # streams are refused the same way
                async for _ in chat.StreamChatCompletion(chat_req(cls=chat_pb2.StreamChatCompletionRequest),
                                                         metadata=metadata, timeout=30):
                    pass
            assert e.value.code() == code
        resp = await chat.CreateChatCompletion(chat_req(max_tokens=2), metadata=md(good), timeout=60)
        assert resp.usage.completion_tokens == 2
        models = model_pb2_grpc.ModelServiceStub(ch)
        assert [m.id for m in (await models.ListModels(model_pb2.ListModelsRequest(), metadata=md(good))).data] == [MODEL]
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await models.ListModels(model_pb2.ListModelsRequest())
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="tokenway.v1.ChatService"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # health needs no key
    # refusals before the model check cost no record; only the admitted request (and none of the others) has one
    assert [r.key_name for r in await records(app, None) if r.key_name.startswith("auth-")] == ["auth-good"]


async def test_usage_records_match_what_the_client_was_told(guarded):
    app, address = guarded
    secret = key(app, "usage")
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        unary = await chat.CreateChatCompletion(chat_req(max_tokens=5, ignore_eos=True), metadata=md(secret), timeout=60)
        usage = None
        stream = chat.StreamChatCompletion(chat_req(cls=chat_pb2.StreamChatCompletionRequest, max_tokens=7, ignore_eos=True,
                                                    stream_options=common_pb2.StreamOptions(include_usage=True)),
                                           metadata=md(secret), timeout=60)
        async for c in stream:
            if c.HasField("usage"):
                usage = c.usage
        shown = 0
        call = chat.StreamChatCompletion(chat_req(cls=chat_pb2.StreamChatCompletionRequest, max_tokens=2000,
                                                  ignore_eos=True, logprobs=True), metadata=md(secret), timeout=120)
        async for c in call:
            shown += sum(len(ch_.logprobs.content) for ch_ in c.choices)
            if shown >= 5:
                break
        call.cancel()
    by_id = {r.request_id: r for r in await _eventually(app, "usage", 3)}
    assert (by_id[unary.id].prompt_tokens, by_id[unary.id].completion_tokens) == (unary.usage.prompt_tokens, 5)
    assert by_id[unary.id].status == "ok" and by_id[unary.id].finish_reason == "length"
    streamed = [r for r in by_id.values() if r.completion_tokens == 7]
    assert len(streamed) == 1 and streamed[0].prompt_tokens == usage.prompt_tokens and usage.completion_tokens == 7
    (cancelled,) = [r for r in by_id.values() if r.status == "cancelled"]
    assert cancelled.finish_reason == "cancelled" and shown <= cancelled.completion_tokens < 2000
    assert all(r.total_ms > 0 and r.queue_ms is not None for r in by_id.values())


async def _eventually(app, name, n, seconds=30.0):
    """The key's records once there are n (a cancelled request's record is written without waiting)."""
    async def poll():
        while len(rs := await records(app, name)) < n:
            await asyncio.sleep(0.05)  # readiness poll, bounded by wait_for
        return rs
    return await asyncio.wait_for(poll(), seconds)


async def test_request_rate_limit_refuses_with_retry_info_and_a_record(guarded):
    app, address = guarded
    secret = key(app, "rpm", requests_per_minute=6)  # one request per 10 s
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        call = chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(secret), timeout=60)
        await call
        headers = dict(await call.initial_metadata())
        assert headers["x-ratelimit-limit-requests"] == "6" and headers["x-ratelimit-remaining-requests"] == "5"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(secret), timeout=60)
    err = e.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and reason(err) == "REQUEST_RATE_LIMITED"
    assert error_info(err).metadata["limit"] == "requests_per_minute"
    assert 5 < retry_delay(err) <= 10
    trailers = dict(err.trailing_metadata())
    assert 5 < int(trailers["retry-after"]) <= 10 and trailers["x-ratelimit-remaining-requests"] == "5"
    rs = await records(app, "rpm")
    assert [r.status for r in rs] == ["ok", "rejected"] and rs[1].prompt_tokens == rs[1].completion_tokens == 0


async def test_concurrency_limit_holds_while_a_request_runs(guarded):
    app, address = guarded
    secret = key(app, "conc", concurrent_requests=1)
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        long = chat.StreamChatCompletion(chat_req(cls=chat_pb2.StreamChatCompletionRequest, max_tokens=2000,
                                                  ignore_eos=True), metadata=md(secret), timeout=120)
        await long.read()  # running
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(secret), timeout=60)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and reason(e.value) == "CONCURRENCY_LIMITED"
        long.cancel()
        kid = app.store.get_key("conc").id

        async def released():
            while await asyncio.to_thread(app.store.leases, kid):
                await asyncio.sleep(0.05)  # readiness poll, bounded by wait_for
        await asyncio.wait_for(released(), 30)
        assert (await chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(secret), timeout=60)).choices


async def test_token_limits_reserve_max_tokens_and_refuse_after_tokenizing(guarded):
    app, address = guarded
    tpm = key(app, "tpm", tokens_per_minute=600)
    quota = key(app, "quota", token_quota=100, quota_period="day")
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        first = await chat.CreateChatCompletion(chat_req(max_tokens=300), metadata=md(tpm), timeout=60)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(tpm), timeout=60)
        assert reason(e.value) == "TOKEN_RATE_LIMITED"
        # what it did not use was given back: the meter empties after (prompt + completion) / 10 per second
        assert retry_delay(e.value) <= (first.usage.total_tokens) * 60 / 600 + 1
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=200), metadata=md(quota), timeout=60)
        assert reason(e.value) == "TOKEN_QUOTA_EXCEEDED" and "100 tokens per day" in e.value.details()
        assert (await chat.CreateChatCompletion(chat_req(max_tokens=5), metadata=md(quota), timeout=60)).choices
    assert [r.status for r in await records(app, "quota")] == ["rejected", "ok"]


async def test_a_key_may_lower_its_priority_but_not_raise_it(guarded):
    app, address = guarded
    batch = key(app, "batch-key", priority="batch")
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=1), timeout=60,
                                            metadata=md(batch, **{"x-tokenway-priority": "interactive"}))
        assert reason(e.value) == "PRIORITY_NOT_ALLOWED"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=1), timeout=60,
                                            metadata=md(batch, **{"x-tokenway-priority": "urgent"}))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await chat.CreateChatCompletion(chat_req(max_tokens=1), timeout=60,
                                                metadata=md(batch, **{"x-tokenway-priority": "batch"}))).choices


@pytest.fixture(scope="module")
async def crowded(stack, tmp_path_factory):
    """An orchestrator that runs 2 sequences at once and lets 1 request wait."""
    s = stack.settings(auth=True, store=str(tmp_path_factory.mktemp("crowded") / "tokenway.db"),
                       max_running_sequences=2, max_queued_requests=1, max_queue_seconds=60,
                       max_interactive_queue_seconds=60, batch_share=1.0)
    app = OrchestratorApp(s)
    server = await start_server(s, app)
    yield app, server.address
    await server.stop()


async def _until(predicate, seconds: float = 30.0) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)  # readiness poll, bounded by wait_for
    await asyncio.wait_for(poll(), seconds)


async def test_overload_sheds_batch_for_interactive_and_refuses_beyond_the_queue(crowded):
    app, address = crowded
    inter, batch = key(app, "inter"), key(app, "bulk", priority="batch")
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        running = [chat.StreamChatCompletion(chat_req(cls=chat_pb2.StreamChatCompletionRequest, max_tokens=2000,
                                                      ignore_eos=True), metadata=md(inter), timeout=120)
                   for _ in range(2)]
        for call in running:
            await call.read()
        assert app.admission.running == 2
        queued_batch = asyncio.ensure_future(chat.CreateChatCompletion(chat_req(max_tokens=2), metadata=md(batch),
                                                                       timeout=60))
        await _until(lambda: app.admission.waiting == 1)
        queued_inter = asyncio.ensure_future(chat.CreateChatCompletion(chat_req(max_tokens=2), metadata=md(inter),
                                                                       timeout=60))
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await queued_batch
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and reason(e.value) == "SHED"
        assert retry_delay(e.value) > 0 and app.admission.waiting == 1
        with pytest.raises(grpc.aio.AioRpcError) as e:  # the queue holds an interactive request: refused at once
            await chat.CreateChatCompletion(chat_req(max_tokens=2), metadata=md(inter), timeout=60)
        assert reason(e.value) == "OVERLOADED" and not queued_inter.done()
        running[0].cancel()
        assert (await queued_inter).usage.completion_tokens == 2  # admitted once a slot was free
        running[1].cancel()
    await _until(lambda: app.admission.running == 0)
    statuses = sorted(r.status for r in await records(app, "bulk"))
    assert statuses == ["rejected"]
    assert sorted(r.status for r in await _eventually(app, "inter", 4)) == ["cancelled", "cancelled", "ok", "rejected"]


async def test_a_request_cancelled_while_it_waits_is_recorded_and_frees_its_slot(crowded):
    app, address = crowded
    inter, waiter = key(app, "inter-2"), key(app, "waiter", concurrent_requests=5)
    kid = app.store.get_key("waiter").id
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        running = [chat.StreamChatCompletion(chat_req(cls=chat_pb2.StreamChatCompletionRequest, max_tokens=2000,
                                                      ignore_eos=True), metadata=md(inter), timeout=120)
                   for _ in range(2)]
        for call in running:
            await call.read()
        waiting = chat.CreateChatCompletion(chat_req(max_tokens=2), metadata=md(waiter), timeout=60)
        await _until(lambda: app.admission.waiting == 1)
        assert await asyncio.to_thread(app.store.leases, kid) == 1
        waiting.cancel()
        (rec,) = await _eventually(app, "waiter", 1)
        assert (rec.status, rec.finish_reason, rec.completion_tokens) == ("cancelled", "cancelled", 0)
        assert await asyncio.to_thread(app.store.leases, kid) == 0 and app.admission.waiting == 0
        for call in running:
            call.cancel()
    await _until(lambda: app.admission.running == 0)


async def test_an_oversized_key_is_refused_the_same_way_every_time(guarded):
    """gRPC's default refuses metadata between 8 and 16 KiB at random; the server's limit is one line: up to
    16 KiB the key is read (and refused as invalid), beyond it the call is refused before any handler runs."""
    app, address = guarded
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        for size, code in ((12_000, grpc.StatusCode.UNAUTHENTICATED), (17_000, grpc.StatusCode.RESOURCE_EXHAUSTED)):
            got = set()
            for _ in range(20):
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await chat.CreateChatCompletion(chat_req(max_tokens=2), metadata=md("tw-" + "x" * size), timeout=30)
                got.add(e.value.code())
            assert got == {code}, size
