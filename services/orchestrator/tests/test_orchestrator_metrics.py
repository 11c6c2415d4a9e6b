"""The orchestrator's metrics over real HTTP, after real requests through real in-process services: calls by RPC
and code, tokens and streaming latencies per model, requests running and queued, refusals by kind and reason,
Generate calls per replica, model readiness; and the committed Grafana dashboard, whose every query names only
metrics the services serve."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2, chat_pb2_grpc, common_pb2

from tokenway_common.config import load
from tokenway_common.errors import error_info
from tokenway_common.metrics import MetricsEndpoint
from tokenway_common.server import start_server
from tokenway_orchestrator.app import OrchestratorApp
from tokenway_orchestrator.config import PREFIX, OrchestratorSettings
from tokenway_orchestrator.store import Limits

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # the repo root, whose tests/ package has:
    sys.path.insert(0, str(ROOT))
from tests.metrics import Scrape, ascrape  # noqa: E402

MODEL = "tokenway-tiny"
CHAT = "tokenway.v1.ChatService"
DASHBOARD = ROOT / "observability" / "grafana" / "tokenway.json"


def chat_req(cls=chat_pb2.CreateChatCompletionRequest, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", [chat_pb2.ChatRequestMessage(role="user",
                                                           content=struct_pb2.Value(string_value="Hello there"))])
    return cls(**kw)


def md(secret: str):
    return (("authorization", f"Bearer {secret}"),)


def key(app, name: str, **limits) -> str:
    return app.store.create_key(name, limits=Limits(**limits))[1]


@pytest.fixture(scope="module")
async def observed(stack, tmp_path_factory):
    """An orchestrator of its own (auth on, one sequence at a time, no queue) and its metrics endpoint:
    (app, address, metrics port)."""
    s = stack.settings(auth=True, store=str(tmp_path_factory.mktemp("metrics") / "tokenway.db"),
                       max_running_sequences=1, max_queued_requests=0, metrics_port=0)
    app = OrchestratorApp(s)
    server = await start_server(s, app)
    endpoint = MetricsEndpoint(app.metrics, "127.0.0.1", 0)
    await endpoint.start()
    yield app, server.address, endpoint.port
    await endpoint.close()
    await server.stop()


class Delta:
    def __init__(self, before: Scrape, after: Scrape) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return self.after.value(name, **labels) - self.before.value(name, **labels)


async def _until(port: int, predicate, seconds: float = 60.0) -> Scrape:
    async def poll() -> Scrape:
        while not predicate(m := await ascrape(port)):
            await asyncio.sleep(0.02)  # the server settles a cancelled stream on its own time; bounded by wait_for
        return m
    return await asyncio.wait_for(poll(), seconds)


def test_the_metrics_port_defaults_to_9091():
    assert load(OrchestratorSettings, PREFIX, [], env={}).metrics_port == 9091


async def test_requests_tokens_latencies_refusals_and_routing_move_by_what_was_sent(stack, observed):
    app, address, port = observed
    secret = key(app, "observed")
    before = await ascrape(port)
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        unary = await chat.CreateChatCompletion(chat_req(max_tokens=5, ignore_eos=True), metadata=md(secret),
                                                timeout=60)
        assert unary.usage.completion_tokens == 5
        chunks = [c async for c in chat.StreamChatCompletion(chat_req(
            cls=chat_pb2.StreamChatCompletionRequest, max_tokens=5, ignore_eos=True,
            stream_options=common_pb2.StreamOptions(include_usage=True)), metadata=md(secret), timeout=60)]
        streamed = chunks[-1].usage
        assert streamed.completion_tokens == 5
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(model="no-such-model", max_tokens=5), metadata=md(secret),
                                            timeout=60)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=5), metadata=md("tw-not-a-key"), timeout=60)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(e.value).reason == "INVALID_API_KEY"
    after = await ascrape(port)
    d = Delta(before, after)
    n = "tokenway_orchestrator_"
    assert d(n + "requests_total", rpc=f"{CHAT}/CreateChatCompletion", code="OK") == 1
    assert d(n + "requests_total", rpc=f"{CHAT}/StreamChatCompletion", code="OK") == 1
    assert d(n + "requests_total", rpc=f"{CHAT}/CreateChatCompletion", code="NOT_FOUND") == 1
    assert d(n + "requests_total", rpc=f"{CHAT}/CreateChatCompletion", code="UNAUTHENTICATED") == 1
    assert d(n + "requests_total") == 4
    assert d(n + "completion_tokens_total", model=MODEL) == 10
    assert d(n + "prompt_tokens_total", model=MODEL) == unary.usage.prompt_tokens + streamed.prompt_tokens
    assert d(n + "ttft_seconds_count", model=MODEL) == 1  # the stream's; a unary answer has no first token to see
    assert 0 <= d(n + "inter_token_latency_seconds_count", model=MODEL) <= 4  # at most one per token after the first
    assert d(n + "rejections_total", kind="auth", reason="INVALID_API_KEY") == 1
    assert d(n + "rejections_total") == 1  # NOT_FOUND is no refusal
    assert d(n + "replica_requests_total", model=MODEL, replica=stack.inference.address) == 2
    assert after.value(n + "running_requests") == after.value(n + "queued_requests") == 0
    assert after.value(n + "running_sequences") == 0
    assert after.value(n + "model_ready", model=MODEL) == 1


async def test_running_requests_overload_and_limit_refusals(observed):
    app, address, port = observed
    secret, limited = key(app, "busy"), key(app, "limited", requests_per_minute=1)
    before = await ascrape(port)
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        long = chat.StreamChatCompletion(chat_req(cls=chat_pb2.StreamChatCompletionRequest, max_tokens=2000,
                                                  ignore_eos=True), metadata=md(secret), timeout=120)
        await long.read()  # running: it holds the one slot
        during = await ascrape(port)
        assert during.value("tokenway_orchestrator_running_requests") == 1
        assert during.value("tokenway_orchestrator_running_sequences") == 1
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(secret), timeout=60)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_info(e.value).reason == "OVERLOADED"
        long.cancel()
        await _until(port, lambda m: m.value("tokenway_orchestrator_running_requests") == 0)
        assert (await chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(limited), timeout=60)).choices
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await chat.CreateChatCompletion(chat_req(max_tokens=1), metadata=md(limited), timeout=60)
        assert error_info(e.value).reason == "REQUEST_RATE_LIMITED"
    after = await _until(port, lambda m: m.value("tokenway_orchestrator_requests_total",
                                                 rpc=f"{CHAT}/StreamChatCompletion", code="CANCELLED") >
                         before.value("tokenway_orchestrator_requests_total", rpc=f"{CHAT}/StreamChatCompletion",
                                      code="CANCELLED"))
    d = Delta(before, after)
    n = "tokenway_orchestrator_rejections_total"
    assert d(n, kind="overload", reason="OVERLOADED") == 1
    assert d(n, kind="limit", reason="REQUEST_RATE_LIMITED") == 1
    assert d(n) == 2
    assert d("tokenway_orchestrator_requests_total", rpc=f"{CHAT}/StreamChatCompletion", code="CANCELLED") == 1
    assert after.value("tokenway_orchestrator_running_requests") == 0


def _queries(node) -> list[str]:
    """Every PromQL query of a dashboard: panels' `expr`, templating variables' `query`."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                out.append(v)
            elif k == "query" and isinstance(v, str) and "(" in v:
                out.append(v)
            else:
                out.extend(_queries(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_queries(v))
    return out


#: Names a query may use: tokenway's, and what the endpoint serves beside them (vLLM's, process, Python).
METRIC = re.compile(r"\b(?:tokenway_[a-z0-9_]+|vllm:[a-z0-9_:]+|process_[a-z0-9_]+|python_[a-z0-9_]+)")


async def test_the_dashboard_names_only_metrics_the_services_serve(stack, observed):
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) > 20 and all("tokenway_" in q for q in queries)
    served: set[str] = set()
    for app in (stack.tokenizer.app, stack.inference.app, observed[0]):
        endpoint = MetricsEndpoint(app.metrics, "127.0.0.1", 0)
        await endpoint.start()
        try:
            served |= (await ascrape(endpoint.port)).names()
        finally:
            await endpoint.close()
    used = {name for q in queries for name in METRIC.findall(q)}
    assert not used - served, f"the dashboard queries metrics no service serves: {sorted(used - served)}"
    for service in ("orchestrator", "inference", "tokenizer"):
        assert any(name.startswith(f"tokenway_{service}_") for name in used), service
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "tokenway"
