"""Tracing in the shared bootstrap: which OTEL_* settings turn it on, and what a real grpc.aio server from
start_server records (an in-memory exporter): SERVER spans continuing the caller's traceparent, CLIENT spans of peer
calls whose context the peer continues, the request id on both sides, health checks and background polls left out,
log lines with trace ids; and with tracing off, OpenTelemetry not even imported."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.inference.v1 import inference_pb2, inference_pb2_grpc
from tokenway.tokenizer.v1 import tokenizer_pb2, tokenizer_pb2_grpc

from tokenway_common import config, errors, logs, tracing
from tokenway_common.server import start_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TOKENIZER = "tokenway.tokenizer.v1.TokenizerService"
INFERENCE = "tokenway.inference.v1.InferenceService"


@pytest.mark.parametrize("env, exporters", [
    ({}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_TRACES_EXPORTER": "none"}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "true"}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "false"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),  # the exporter's default endpoint
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ["otlp"]),
], ids=["unset", "endpoint", "traces-endpoint", "exporter-none", "sdk-disabled", "sdk-enabled", "console",
        "two-exporters", "grpc-protocol"])
def test_tracing_is_on_only_when_the_otel_variables_configure_an_exporter(env, exporters):
    assert tracing.configured(env) == exporters


@pytest.mark.parametrize("env, names", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_settings_it_cannot_honour_fail_the_start(env, names):
    with pytest.raises(tracing.TracingConfigError, match=names):
        tracing.configured(env)


def test_with_tracing_off_no_exporter_exists_and_opentelemetry_is_never_imported():
    """A fresh process, as a service starts: setup() is None, calls are served and peer calls carry the request id
    alone, and not one OpenTelemetry module was loaded."""
    code = textwrap.dedent("""
        import asyncio, sys
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        from tokenway_common import config, logs, tracing
        from tokenway_common.server import start_server

        class App:
            service_names = ()
            def register(self, server): pass
            async def start(self): pass
            async def close(self): pass

        async def main():
            assert tracing.setup("test", {"OTEL_SERVICE_NAME": "x", "OTEL_BSP_SCHEDULE_DELAY": "1"}) is None
            running = await start_server(config.ServerSettings(port=0), App())
            async with grpc.aio.insecure_channel(running.address) as ch:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10,
                                                           metadata=(("traceparent", "00-%s-%s-01" % ("1" * 32, "2" * 16)),))
            await running.stop()
            logs.request_id.set("rid-1")
            span, md = tracing.peer_call("p.S/M", "127.0.0.1:1")
            assert span is tracing.NOOP and md == (("x-request-id", "rid-1"),), md
            assert tracing.start("x") is tracing.NOOP and not tracing.enabled()
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
            assert not loaded, loaded

        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


# --- tracing on, in process ----------------------------------------------------------------------------------------


class Tokenizer(tokenizer_pb2_grpc.TokenizerServiceServicer):
    def __init__(self, inference_address: str = "") -> None:
        self.inference_address = inference_address

    async def Tokenize(self, request, context):
        logging.getLogger("tokenway.test").info("tokenizing")
        if request.texts and request.texts[0] == "fail":
            raise errors.Unavailable("not now", reason="NOT_READY")
        if request.texts and request.texts[0] == "bad":
            raise errors.InvalidArgument("bad text", reason="BAD_TEXT")
        if self.inference_address:  # call a peer, as the orchestrator does
            async with grpc.aio.insecure_channel(self.inference_address) as ch:
                span, md = tracing.peer_call(f"{INFERENCE}/Generate", self.inference_address)
                with span:
                    async for _ in inference_pb2_grpc.InferenceServiceStub(ch).Generate(
                            inference_pb2.GenerateRequest(request_id="seq-1"), timeout=10, metadata=md):
                        pass
        return tokenizer_pb2.TokenizeResponse()


class Inference(inference_pb2_grpc.InferenceServiceServicer):
    async def Generate(self, request, context):
        with tracing.span("engine", {"tokenway.sequence_id": request.request_id}) as span:
            span.event("first_token")
            yield inference_pb2.GenerateResponse(token_ids=[1])
            yield inference_pb2.GenerateResponse(token_ids=[2])

    async def GetLoad(self, request, context):
        return inference_pb2.GetLoadResponse()


class TestApp:
    __test__ = False

    def __init__(self, tokenizer: Tokenizer | None = None, inference: bool = False) -> None:
        self.tokenizer, self.inference = tokenizer, inference
        self.service_names = ((TOKENIZER,) if tokenizer else ()) + ((INFERENCE,) if inference else ())
        self.background_methods = frozenset({f"{INFERENCE}/GetLoad"})

    def register(self, server):
        if self.tokenizer:
            tokenizer_pb2_grpc.add_TokenizerServiceServicer_to_server(self.tokenizer, server)
        if self.inference:
            inference_pb2_grpc.add_InferenceServiceServicer_to_server(Inference(), server)

    async def start(self):
        pass

    async def close(self):
        pass


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()


@pytest.fixture
async def servers(spans):
    """An "inference" server and a "tokenizer" server that calls it from Tokenize (a peer call)."""
    inference = await start_server(config.ServerSettings(port=0), TestApp(inference=True))
    tokenizer = await start_server(config.ServerSettings(port=0), TestApp(Tokenizer(inference.address)))
    try:
        yield tokenizer, inference
    finally:
        await tokenizer.stop()
        await inference.stop()


def _by_name(exporter: InMemorySpanExporter) -> dict:
    return {s.name: s for s in exporter.get_finished_spans()}


async def test_a_call_continues_the_callers_trace_and_its_peer_call_continues_it_on_the_peer(servers, spans):
    tokenizer, inference = servers
    async with grpc.aio.insecure_channel(tokenizer.address) as ch:
        await tokenizer_pb2_grpc.TokenizerServiceStub(ch).Tokenize(
            tokenizer_pb2.TokenizeRequest(texts=["hello"]), timeout=10,
            metadata=(("traceparent", TRACEPARENT), ("x-request-id", "req-42")))
    got = _by_name(spans)
    server = got[f"{TOKENIZER}/Tokenize"]
    client = next(s for s in spans.get_finished_spans() if s.name == f"{INFERENCE}/Generate" and s.kind == SpanKind.CLIENT)
    peer = next(s for s in spans.get_finished_spans() if s.name == f"{INFERENCE}/Generate" and s.kind == SpanKind.SERVER)
    engine = got["engine"]
    assert {format(s.context.trace_id, "032x") for s in (server, client, peer, engine)} == {TRACE_ID}
    assert server.kind == SpanKind.SERVER and format(server.parent.span_id, "016x") == PARENT_ID
    assert server.parent.is_remote
    assert client.parent.span_id == server.context.span_id
    assert peer.parent.span_id == client.context.span_id and peer.parent.is_remote
    assert engine.parent.span_id == peer.context.span_id
    assert [e.name for e in engine.events] == ["first_token"]
    assert server.attributes["rpc.system"] == "grpc"
    assert server.attributes["rpc.service"] == TOKENIZER and server.attributes["rpc.method"] == "Tokenize"
    assert server.attributes["rpc.grpc.status_code"] == 0 and server.status.status_code == StatusCode.UNSET
    assert client.attributes["server.port"] == inference.port
    # the request id the caller sent travels to the peer with the trace context
    assert server.attributes[tracing.REQUEST_ID_ATTRIBUTE] == "req-42"
    assert peer.attributes[tracing.REQUEST_ID_ATTRIBUTE] == "req-42"


async def test_a_call_without_trace_context_starts_a_trace(servers, spans):
    tokenizer, _ = servers
    async with grpc.aio.insecure_channel(tokenizer.address) as ch:
        await tokenizer_pb2_grpc.TokenizerServiceStub(ch).Tokenize(tokenizer_pb2.TokenizeRequest(), timeout=10)
    server = _by_name(spans)[f"{TOKENIZER}/Tokenize"]
    assert server.parent is None
    assert server.attributes[tracing.REQUEST_ID_ATTRIBUTE]  # generated here, and sent on to the peer
    peer = next(s for s in spans.get_finished_spans() if s.name == f"{INFERENCE}/Generate" and s.kind == SpanKind.SERVER)
    assert peer.attributes[tracing.REQUEST_ID_ATTRIBUTE] == server.attributes[tracing.REQUEST_ID_ATTRIBUTE]


async def test_errors_set_the_code_and_only_a_servers_fault_is_an_error(servers, spans):
    tokenizer, _ = servers
    async with grpc.aio.insecure_channel(tokenizer.address) as ch:
        stub = tokenizer_pb2_grpc.TokenizerServiceStub(ch)
        for text in ("fail", "bad"):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Tokenize(tokenizer_pb2.TokenizeRequest(texts=[text]), timeout=10)
    failed, refused = [s for s in spans.get_finished_spans() if s.name == f"{TOKENIZER}/Tokenize"]
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["tokenway.error.reason"] == "NOT_READY"
    assert refused.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert refused.status.status_code == StatusCode.UNSET  # the caller's mistake
    assert refused.attributes["tokenway.error.reason"] == "BAD_TEXT"


async def test_health_checks_and_background_polls_start_no_trace(servers, spans):
    _, inference = servers
    async with grpc.aio.insecure_channel(inference.address) as ch:
        await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10,
                                                   metadata=(("traceparent", TRACEPARENT),))
        stub = inference_pb2_grpc.InferenceServiceStub(ch)
        await stub.GetLoad(inference_pb2.GetLoadRequest(), timeout=10)  # a poll: no trace of its own
        assert spans.get_finished_spans() == ()
        await stub.GetLoad(inference_pb2.GetLoadRequest(), timeout=10, metadata=(("traceparent", TRACEPARENT),))
    (load,) = spans.get_finished_spans()  # asked within a trace: part of it
    assert load.name == f"{INFERENCE}/GetLoad" and format(load.parent.span_id, "016x") == PARENT_ID


async def test_an_unsampled_trace_records_nothing_and_stays_unsampled_at_the_peer(servers, spans):
    tokenizer, _ = servers
    async with grpc.aio.insecure_channel(tokenizer.address) as ch:
        await tokenizer_pb2_grpc.TokenizerServiceStub(ch).Tokenize(
            tokenizer_pb2.TokenizeRequest(texts=["x"]), timeout=10,
            metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-00"),))
    assert spans.get_finished_spans() == ()


async def test_peer_calls_outside_a_request_carry_no_trace_context(spans):
    assert tracing.peer_call(f"{INFERENCE}/GetLoad", "127.0.0.1:1") == (tracing.NOOP, ())
    assert tracing.current() is tracing.NOOP and tracing.start("x") is tracing.NOOP


def test_log_lines_carry_the_trace_and_span_ids_of_the_current_span(spans):
    provider = TracerProvider(shutdown_on_exit=False)
    tracing.install(provider)
    record_filter = logs._RequestIdFilter()
    outside = logging.LogRecord("t", logging.INFO, __file__, 1, "outside", (), None)
    record_filter.filter(outside)
    assert not hasattr(outside, "trace_id")
    with provider.get_tracer("t").start_as_current_span("work") as work:
        inside = logging.LogRecord("t", logging.INFO, __file__, 1, "inside", (), None)
        record_filter.filter(inside)
    ids = work.get_span_context()
    assert (inside.trace_id, inside.span_id) == (format(ids.trace_id, "032x"), format(ids.span_id, "016x"))
    assert f'"trace_id": "{inside.trace_id}"' in logs._JsonFormatter().format(inside)
    assert f"trace_id={inside.trace_id} span_id={inside.span_id}" in logs._TextFormatter("%(message)s").format(inside)


def test_setup_names_the_service_and_a_dead_collector_never_holds_the_stop_up():
    """A fresh process (setup installs the global provider once): service.name is tokenway-<service> unless
    OTEL_SERVICE_NAME says otherwise, and close() returns within its bound while the collector refuses connections."""
    code = textwrap.dedent("""
        import os, time
        from tokenway_common import tracing
        t = tracing.setup("tokenizer", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
        assert t.provider.resource.attributes["service.name"] == "tokenway-tokenizer", t.provider.resource.attributes
        assert tracing.enabled() and "127.0.0.1:9" in t.description
        with tracing._tracer.start_as_current_span("x"):
            pass
        started = time.monotonic()
        t.close(timeout=0.5)
        assert time.monotonic() - started < 5 and not tracing.enabled()
        os.environ["OTEL_SERVICE_NAME"] = "edge-tokenizer"
        t = tracing.setup("tokenizer", {"OTEL_TRACES_EXPORTER": "console"})
        assert t.provider.resource.attributes["service.name"] == "edge-tokenizer"
        t.close(timeout=0.5)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
