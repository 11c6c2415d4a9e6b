"""The per-replica circuit breaker and the retry budget, on an explicit clock; and a replica that answers
SERVING but fails every call is ejected by the orchestrator."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2

from tokenway_common import errors
from tokenway_common.server import start_server
from tokenway_inference.app import InferenceApp
from tokenway_inference.config import InferenceSettings
from tokenway_orchestrator.app import OrchestratorApp
from tokenway_orchestrator.clients.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_open_it_thirty_seconds_half_open_it_three_successes_close_it():
    clock = Clock()
    b = Breaker(clock=clock)
    for _ in range(4):
        b.failed()
    b.succeeded()  # consecutive: a success starts the count again
    for _ in range(4):
        b.failed()
    assert b.state == CLOSED and b.allows()
    b.failed()
    assert b.state == OPEN and not b.allows()
    clock.now = 29.9
    assert not b.allows()
    clock.now = 30.0
    assert b.state == HALF_OPEN and b.allows()
    b.started()
    assert not b.allows()  # one trial at a time
    b.succeeded()
    b.started()
    b.failed()  # a failed trial opens it again, for another 30 s
    assert b.state == OPEN and b.opened == 2
    clock.now = 60.0
    for _ in range(3):
        assert b.allows()
        b.started()
        b.succeeded()
    assert b.state == CLOSED
    b.started()
    b.released()  # a caller that left is neither
    assert b.state == CLOSED


def test_the_retry_budget_is_a_share_of_the_calls():
    budget = RetryBudget(ratio=0.2, burst=2, min_retries=1)
    assert budget.take()  # the one always allowed
    assert budget.take() and budget.take()  # the burst
    assert not budget.take() and budget.refused == 1
    for _ in range(5):
        budget.called()  # 5 calls earn one retry
    assert budget.take()


class _BrokenEngine:
    """The shared engine for everything but generation, which fails: a replica that stays SERVING but whose
    every call fails (an engine error, a GPU out of memory)."""

    def __init__(self, real) -> None:
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    async def generate(self, request):
        raise errors.Internal("the engine failed", reason="ENGINE_FAILED")
        yield  # an async generator, like the real one


class FailingApp(InferenceApp):
    def __init__(self, settings, engine) -> None:
        super().__init__(settings, _BrokenEngine(engine))

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_replica_that_fails_every_call_is_ejected(stack):
    s = InferenceSettings(port=0, model=stack.model_dir)
    bad = await start_server(s, FailingApp(s, stack.engine))
    osettings = stack.settings(inference_addresses=(bad.address, stack.inference.address), breaker_failures=2,
                               breaker_open_seconds=3600, routing="round_robin")
    app = OrchestratorApp(osettings)
    orch = await start_server(osettings, app)
    req = chat_pb2.CreateChatCompletionRequest(model="tokenway-tiny", max_tokens=2, messages=[
        chat_pb2.ChatRequestMessage(role="user", content=struct_pb2.Value(string_value="Hi"))])
    try:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            chat = stack.chat(ch)
            bad_replica, good_replica = app.router.replicas
            failures = 0
            for _ in range(4):  # in turn: bad, good, bad, good
                try:
                    await chat.CreateChatCompletion(req, timeout=30)
                except grpc.aio.AioRpcError as e:
                    assert e.code() == grpc.StatusCode.INTERNAL
                    failures += 1
            assert failures == 2 and bad_replica.breaker.state == OPEN and bad_replica.calls == 2
            for _ in range(5):  # ejected: every call goes to the other one
                assert (await chat.CreateChatCompletion(req, timeout=30)).choices
            assert bad_replica.calls == 2 and good_replica.calls == 7
    finally:
        await orch.stop()
        await bad.stop()

