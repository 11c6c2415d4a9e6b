"""Traces end to end: the suite as `make run` starts it (tools/suite.py: tokenizer, inference, orchestrator and Envoy as
processes) with only the standard OTEL_* variables set, exporting to an OTLP/gRPC receiver in this process
(tests/otlp.py). One chat request through Envoy with the openai SDK, carrying the caller's traceparent and x-request-id,
must come back as one trace: Envoy's span under the caller's, the orchestrator's under Envoy's, and the tokenizer's
and the inference service's under the orchestrator's calls to them, each service's work in its own spans."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.conftest import MODEL_DIR, ROOT, free_port
from tests.otlp import CLIENT, INTERNAL, SERVER, Collector, Span

pytestmark = pytest.mark.e2e
MODEL = "tokenway-tiny"
SERVICES = ("tokenway-envoy", "tokenway-orchestrator", "tokenway-tokenizer", "tokenway-inference")
GENERATE = "tokenway.inference.v1.InferenceService/Generate"
RENDER_CHAT = "tokenway.tokenizer.v1.TokenizerService/RenderChat"


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A suite of its own whose every process exports its spans to `collector` (100 ms batches)."""
    collector = Collector().start()
    run, state = tmp_path_factory.mktemp("traced-run"), tmp_path_factory.mktemp("traced-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(TOKENWAY_RUN_DIR=str(run), TOKENWAY_MODEL=str(MODEL_DIR), TOKENWAY_ORCHESTRATOR_AUTH="off",
               TOKENWAY_ORCHESTRATOR_STORE=str(state / "tokenway.db"),
               TOKENWAY_ORCHESTRATOR_PORT=str(free_port()), TOKENWAY_TOKENIZER_PORT=str(free_port()),
               TOKENWAY_INFERENCE_PORT=str(free_port()), TOKENWAY_ENVOY_PORT=str(free_port()),
               TOKENWAY_ENVOY_ADMIN_PORT=str(free_port()), TOKENWAY_ORCHESTRATOR_METRICS_PORT="0",
               TOKENWAY_TOKENIZER_METRICS_PORT="0", TOKENWAY_INFERENCE_METRICS_PORT="0",
               OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    up = subprocess.run([sys.executable, "tools/suite.py", "up", "--timeout", "240"], cwd=ROOT, env=env,
                        capture_output=True, text=True)
    try:
        if up.returncode != 0:
            logs = "\n".join(f.read_text()[-3000:] for f in run.glob("*.log"))
            pytest.fail(f"the traced suite did not come up:\n{up.stdout}\n{up.stderr}\n{logs}")
        yield env, collector, run
    finally:
        subprocess.run([sys.executable, "tools/suite.py", "down"], cwd=ROOT, env=env, capture_output=True, text=True)
        collector.stop()


def _summary(spans: list[Span]) -> str:
    return "\n".join(f"  {s.service:<22} {s.kind} {s.name:<55} {s.trace_id[:8]} {s.span_id} <- {s.parent_id or '-'}"
                     for s in spans)


def test_one_chat_request_through_envoy_is_one_trace_across_every_service(traced):
    env, collector, run = traced
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    request_id = f"trace-test-{secrets.token_hex(4)}"
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{env['TOKENWAY_ENVOY_PORT']}/v1", api_key="unused",
                           max_retries=0, timeout=120)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        extra_headers={"traceparent": f"00-{trace_id}-{caller_span}-01", "x-request-id": request_id}))
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 6

    def ours(spans: list[Span]) -> list[Span]:
        return [s for s in spans if s.trace_id == trace_id]

    def complete(spans: list[Span]) -> bool:  # every span the request makes has arrived
        got = {(s.service, s.name, s.kind) for s in ours(spans)}
        return {s.service for s in ours(spans)} >= set(SERVICES) and {
            ("tokenway-orchestrator", GENERATE, CLIENT), ("tokenway-inference", GENERATE, SERVER),
            ("tokenway-inference", "engine", INTERNAL), ("tokenway-tokenizer", RENDER_CHAT, SERVER),
            ("tokenway-orchestrator", "stream", INTERNAL)} <= got and any(
            s.service == "tokenway-orchestrator" and s.kind == SERVER for s in ours(spans))

    arrived = collector.wait_for(complete, timeout=90)
    spans = ours(collector.spans)
    assert arrived, f"the request's spans did not all arrive within 90 s; of its trace:\n{_summary(spans)}"

    def one(service: str, name: str | None = None, kind: int | None = None) -> Span:
        found = [s for s in spans if s.service == service and (name is None or s.name == name)
                 and (kind is None or s.kind == kind)]
        assert len(found) == 1, f"{service} {name} {kind}: {len(found)} spans\n{_summary(spans)}"
        return found[0]

    edge = one("tokenway-envoy")
    server = one("tokenway-orchestrator", kind=SERVER)
    queue, prepare, stream = (one("tokenway-orchestrator", n, INTERNAL) for n in ("queue", "prepare", "stream"))
    render = one("tokenway-orchestrator", RENDER_CHAT, CLIENT)
    generate = one("tokenway-orchestrator", GENERATE, CLIENT)
    tokenizer = one("tokenway-tokenizer", RENDER_CHAT, SERVER)
    inference = one("tokenway-inference", GENERATE, SERVER)
    engine = one("tokenway-inference", "engine", INTERNAL)

    # the caller -> Envoy -> orchestrator -> (its stages and calls) -> tokenizer / inference -> engine
    assert edge.kind == SERVER and edge.parent_id == caller_span
    assert server.name.startswith("tokenway.v1.ChatService/") and server.parent_id == edge.span_id
    assert queue.parent_id == prepare.parent_id == stream.parent_id == server.span_id
    assert render.parent_id == prepare.span_id and tokenizer.parent_id == render.span_id
    assert generate.parent_id == stream.span_id and inference.parent_id == generate.span_id
    assert engine.parent_id == inference.span_id

    # the caller's request id on each service's spans
    for span in (server, tokenizer, inference):
        assert span.attributes["tokenway.request_id"] == request_id, span
    assert server.attributes["rpc.system"] == "grpc" and server.attributes["rpc.grpc.status_code"] == 0
    assert stream.attributes["tokenway.model"] == MODEL
    assert stream.attributes["tokenway.completion_tokens"] == 6 and stream.attributes["tokenway.finish_reason"] == "length"
    assert stream.attributes["tokenway.prompt_tokens"] == usage.prompt_tokens
    assert stream.attributes["tokenway.replica"] == f"127.0.0.1:{env['TOKENWAY_INFERENCE_PORT']}"
    assert "first_token" in stream.events and "first_token" in generate.events and "first_token" in engine.events
    assert engine.attributes["tokenway.completion_tokens"] == 6

    # ...and in the orchestrator's log line of the request, beside the trace id
    log = (Path(run) / "orchestrator.log").read_text()
    assert any(request_id in line and f"trace_id={trace_id}" in line for line in log.splitlines()), log[-2000:]

    # health checks (Envoy's of the orchestrator every 250 ms, the orchestrator's Watch of its peers, the suite's
    # GET /health) and the load polls start no trace of their own
    noise = [s for s in collector.spans if "Health" in s.name or s.name.endswith("/GetLoad") or "/health" in s.name]
    assert not noise, _summary(noise)


def test_without_otel_settings_nothing_is_traced_and_the_callers_request_id_still_reaches_the_logs(suite):
    """The session's suite runs without OTEL_*: no service traces (each says so once), the edge has no tracer, and
    the caller's x-request-id is what the orchestrator logs its request under."""
    run = Path(suite.env["TOKENWAY_RUN_DIR"])
    for name in ("orchestrator", "tokenizer", "inference"):
        assert "tracing: off" in (run / f"{name}.log").read_text(), name
    assert "envoy.tracers.opentelemetry" not in (run / "envoy.yaml").read_text()
    request_id = f"untraced-{secrets.token_hex(4)}"
    client = openai.OpenAI(base_url=suite.base_url, api_key=suite.api_key, max_retries=0, timeout=120)
    resp = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                          extra_headers={"x-request-id": request_id})
    assert resp.usage.completion_tokens >= 1
    lines = [line for line in (run / "orchestrator.log").read_text().splitlines() if f"[{request_id}]" in line]
    assert any(resp.id in line for line in lines), lines
    assert not any("trace_id=" in line for line in lines)


def _render(tmp_path, command: str, **otel: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | otel
    return subprocess.run([sys.executable, "tools/envoy.py", command, "--out", str(tmp_path / "envoy.yaml")], cwd=ROOT,
                          env=env, capture_output=True, text=True)


def test_the_edge_traces_only_when_otel_configures_an_endpoint_and_refuses_what_it_cannot_export(tmp_path):
    on = _render(tmp_path, "validate", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
                 OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.25")
    assert on.returncode == 0, on.stdout + on.stderr  # envoy --mode validate accepts the tracer, sampler and cluster
    config = (tmp_path / "envoy.yaml").read_text()
    assert "envoy.tracers.opentelemetry" in config and "numerator: 250000" in config
    for off in ({"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true"}):
        assert _render(tmp_path, "render", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317", **off).returncode == 0
        config = (tmp_path / "envoy.yaml").read_text()
        assert "envoy.tracers.opentelemetry" not in config and "preserve_external_request_id: true" in config
    bad = _render(tmp_path, "render", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
                  OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    assert bad.returncode == 2 and "OTEL_EXPORTER_OTLP_PROTOCOL" in bad.stderr
