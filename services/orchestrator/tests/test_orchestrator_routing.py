"""Prefix-cache-aware routing: the index on its own, and the router's choices over two real replicas."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import struct_pb2
from tokenway.inference.v1 import inference_pb2, inference_pb2_grpc
from tokenway.v1 import chat_pb2

from tokenway_common.server import start_server
from tokenway_inference.app import InferenceApp
from tokenway_inference.config import InferenceSettings
from tokenway_orchestrator.app import OrchestratorApp
from tokenway_orchestrator.clients.routing import BLOCK, PrefixIndex, balanced, block_hashes


def test_block_hashes_name_whole_prefixes():
    a = list(range(100))
    b = a[:40] + [999] * 60  # the same first two blocks, then different
    ha, hb = block_hashes(a), block_hashes(b)
    assert len(ha) == 100 // BLOCK and ha[:2] == hb[:2] and ha[2] != hb[2]
    assert block_hashes(a[:BLOCK - 1]) == []  # only full blocks
    index = PrefixIndex(max_blocks=4)
    index.record("r1", ha)
    assert index.matched("r1", hb) == 0  # the LRU kept only the last 4 of a's 6 blocks: the chain start is gone
    index.record("r1", ha[:3])
    assert index.matched("r1", hb) == 2 and index.matched("r1", ha) == 3 and index.matched("r2", ha) == 0
    index.forget("r1")
    assert index.matched("r1", ha) == 0
    assert balanced(3, 1) and not balanced(5, 1)


class SharedEngineApp(InferenceApp):
    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _req(text: str, **kw):
    return chat_pb2.StreamChatCompletionRequest(model="tokenway-tiny", messages=[chat_pb2.ChatRequestMessage(
        role="user", content=struct_pb2.Value(string_value=text))], **kw)


async def _routes(stack, policy: str) -> tuple[int, ...]:
    """Replica indexes of four long streams, each started while the ones before run: on prefix A, on prefix
    B, on an unrelated prompt, and one more sharing A's long prefix."""
    s = InferenceSettings(port=0, model=stack.model_dir)
    replicas = [await start_server(s, SharedEngineApp(s, stack.engine)) for _ in range(2)]
    osettings = stack.settings(inference_addresses=tuple(r.address for r in replicas), routing=policy)
    app = OrchestratorApp(osettings)
    orch = await start_server(osettings, app)
    shared = "A shared system prompt about routing, long enough to fill several blocks of tokens. " * 3
    try:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            chat = stack.chat(ch)
            served = []

            async def start(text):
                before = [r.calls for r in app.router.replicas]
                call = chat.StreamChatCompletion(_req(text, max_tokens=1500, ignore_eos=True), timeout=120)
                await call.read()
                served.append(next(i for i, r in enumerate(app.router.replicas) if r.calls > before[i]))
                return call
            calls = [await start(shared + "First question?"),
                     await start("Something else entirely, with no prefix in common with the first one. " * 3),
                     await start("A third conversation, unrelated to both of the others, about the weather. " * 3),
                     await start(shared + "Second question?")]
            for call in calls:
                call.cancel()
            return tuple(served)
    finally:
        await orch.stop()
        for r in replicas:
            await r.server.stop(0)


async def test_a_shared_prefix_goes_where_its_cache_is_and_least_load_ignores_it(stack):
    # ties go to the first replica; the third, unrelated, finds both equally busy: prefix routing sends a new
    # prefix where fewer blocks were sent (replica 1's prompt is the shorter), least-load to the first; the
    # fourth shares the first's prefix: prefix routing follows it (2 in flight there against 1 is within the
    # balance guard), least-load takes the less busy one
    assert await _routes(stack, "prefix") == (0, 1, 1, 0)
    assert await _routes(stack, "least_load") == (0, 1, 0, 1)


async def test_the_balance_guard_stops_one_hot_prefix_from_piling_up(stack):
    s = InferenceSettings(port=0, model=stack.model_dir)
    replicas = [await start_server(s, SharedEngineApp(s, stack.engine)) for _ in range(2)]
    osettings = stack.settings(inference_addresses=tuple(r.address for r in replicas), routing="prefix")
    app = OrchestratorApp(osettings)
    orch = await start_server(osettings, app)
    hot = "The one hot system prompt that every request of this test begins with, repeated to fill blocks. " * 3
    try:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            chat = stack.chat(ch)
            calls = []
            for i in range(6):
                call = chat.StreamChatCompletion(_req(hot + f"Question {i}?", max_tokens=1500, ignore_eos=True),
                                                 timeout=120)
                await call.read()
                calls.append(call)
            counts = [r.calls for r in app.router.replicas]
            # all six share a prefix: the first three follow it to replica 0; the fourth would make 4 in flight
            # against 0 (the guard allows least x 1.5 + 2) and goes to replica 1, which then holds the prefix
            # too, so the last two go to the less busy of two equal matches
            assert counts == [3, 3], counts
            for call in calls:
                call.cancel()
    finally:
        await orch.stop()
        for r in replicas:
            await r.server.stop(0)


async def test_a_session_sticks_to_one_replica_and_round_robin_takes_turns(stack):
    s = InferenceSettings(port=0, model=stack.model_dir)
    replicas = [await start_server(s, SharedEngineApp(s, stack.engine)) for _ in range(2)]
    servers = []
    try:
        for policy in ("prefix", "round_robin"):
            osettings = stack.settings(inference_addresses=tuple(r.address for r in replicas), routing=policy)
            app = OrchestratorApp(osettings)
            servers.append(orch := await start_server(osettings, app))
            async with grpc.aio.insecure_channel(orch.address) as ch:
                chat = stack.chat(ch)
                order = []
                for i in range(4):
                    before = [r.calls for r in app.router.replicas]
                    request = chat_pb2.CreateChatCompletionRequest(model="tokenway-tiny", max_tokens=1, messages=[
                        chat_pb2.ChatRequestMessage(role="user", content=struct_pb2.Value(string_value=f"Turn {i}"))])
                    if policy == "prefix":  # a session header, then the OpenAI user field: the same replica
                        metadata = (("x-session-id", "conversation-7"),) if i % 2 else ()
                        if not i % 2:
                            request.user = "conversation-7"
                        await chat.CreateChatCompletion(request, metadata=metadata, timeout=60)
                    else:
                        await chat.CreateChatCompletion(request, timeout=60)
                    order.append(next(k for k, r in enumerate(app.router.replicas) if r.calls > before[k]))
                if policy == "prefix":
                    assert len(set(order)) == 1, order
                else:
                    assert order in ([1, 0, 1, 0], [0, 1, 0, 1]), order
    finally:
        for orch in servers:
            await orch.stop()
        for r in replicas:
            await r.server.stop(0)


async def test_an_opening_every_prompt_shares_does_not_starve_a_replica(stack):
    """Prompts that share only a short opening (under MIN_GAIN_BLOCKS blocks) are routed by load: the
    second goes to the idle replica although the first replica was sent the same opening."""
    s = InferenceSettings(port=0, model=stack.model_dir)
    replicas = [await start_server(s, SharedEngineApp(s, stack.engine)) for _ in range(2)]
    osettings = stack.settings(inference_addresses=tuple(r.address for r in replicas), routing="prefix")
    app = OrchestratorApp(osettings)
    orch = await start_server(osettings, app)
    opening = "Hello, I have one more question for you today, if that is fine. "  # a block or two in common
    try:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            chat = stack.chat(ch)
            calls = []
            for tail in ("A first long and unrelated question about the weather in spring. " * 3,
                         "Something else entirely: a second long question about trains and timetables. " * 3):
                call = chat.StreamChatCompletion(_req(opening + tail, max_tokens=1500, ignore_eos=True), timeout=120)
                await call.read()
                calls.append(call)
            assert [r.calls for r in app.router.replicas] == [1, 1]
            for call in calls:
                call.cancel()
    finally:
        await orch.stop()
        for r in replicas:
            await r.server.stop(0)


async def test_routing_sees_the_load_other_orchestrators_put_on_a_replica(stack):
    """Two replicas with engines of their own; work sent to the first by someone else (here: straight to its
    engine) shows in its polled GetLoad, and this orchestrator sends its next request to the other one."""
    s = InferenceSettings(port=0, model=stack.model_dir, max_batch_size=4)
    apps = [InferenceApp(s), InferenceApp(s)]
    replicas = [await start_server(s, a) for a in apps]
    osettings = stack.settings(inference_addresses=tuple(r.address for r in replicas), load_poll_seconds=0.1)
    app = OrchestratorApp(osettings)
    orch = await start_server(osettings, app)
    try:
        async with grpc.aio.insecure_channel(replicas[0].address) as busy_ch, \
                grpc.aio.insecure_channel(orch.address) as ch:
            others = [inference_pb2_grpc.InferenceServiceStub(busy_ch).Generate(inference_pb2.GenerateRequest(
                request_id=f"elsewhere-{i}", prompt_token_ids=list(range(5, 40)),
                stopping=inference_pb2.StoppingParams(max_tokens=1500, ignore_eos=True)), timeout=120)
                for i in range(2)]
            for call in others:
                await call.read()

            async def seen():
                while app.router.replicas[0].engine_load < 2:
                    await asyncio.sleep(0.02)  # readiness poll, bounded by wait_for
            await asyncio.wait_for(seen(), 30)
            call = stack.chat(ch).StreamChatCompletion(_req("Where does this go?", max_tokens=4), timeout=60)
            async for _ in call:
                pass
            assert [r.calls for r in app.router.replicas] == [0, 1]  # (a tie would have gone to the first)
            for c in others:
                c.cancel()
    finally:
        await orch.stop()
        for r in replicas:
            await r.stop()
