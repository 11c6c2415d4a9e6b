"""Traces (OpenTelemetry), off unless the standard `OTEL_*` environment variables configure an exporter.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER`
names `otlp` or `console`; off when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`, and otherwise.
OTLP goes over gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL` unset or `grpc`), through a batch span processor, and the
SDK reads the rest of the standard variables itself: `OTEL_SERVICE_NAME` (default `tokenway-<service>`),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG` (default: parent-based, always on), `OTEL_PROPAGATORS`
(default W3C `traceparent`/`tracestate` and baggage), `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*` (headers, timeout,
certificates, compression).

What is traced:
- every RPC a server serves (`server_span`, from the ErrorInterceptor), a SERVER span named after the full
  method and parented on the caller's `traceparent`, except health checks and reflection, and the methods an App
  lists as `background_methods` (polls and startup reads of peers), which are traced only when the caller sent
  trace context;
- every call to a peer made while serving a traced request (`peer_call`): a CLIENT span whose context goes to the
  peer in the call's metadata. Calls made outside a request (background polls, health Watch, startup) carry
  neither a span nor trace context;
- the stages a service marks with `span` (made current: what runs inside is its child) or `start` (not current:
  a stream read elsewhere).

Every peer call carries the request id being served (`x-request-id`, logs.request_id), traced or not.

Off costs nothing: OpenTelemetry is not even imported, `span`/`start` hand back a shared no-op, and a peer call's
metadata is its request id alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import logs

log = logging.getLogger("tokenway.tracing")

REQUEST_ID_KEY = "x-request-id"
REQUEST_ID_ATTRIBUTE = "tokenway.request_id"
#: Never traced: asked every few hundred milliseconds by load balancers, Envoy and the orchestrator's followers.
UNTRACED_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                               "grpc.reflection.v1.ServerReflection"})
EXPORTERS = ("otlp", "console")
#: gRPC codes that make a SERVER span an error (OpenTelemetry's gRPC conventions); every non-OK code but
#: CANCELLED (the caller's own doing, e.g. a stop string matched) makes a CLIENT span one.
SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})
Metadata = tuple[tuple[str, str], ...]


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for something this build cannot do."""


def configured(env: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters the environment asks for (`otlp`, `console`); [] when tracing is off. Raises
    TracingConfigError for an exporter or an OTLP protocol that is not installed."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if "none" in names:
        return []
    if not names:  # the spec's default is otlp; here only once an endpoint says where to
        if not (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
            return []
        names = ["otlp"]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} not supported (use otlp, console or none)")
    if "otlp" in names:
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc")
        if protocol.strip().lower() != "grpc":
            raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} not supported; tokenway exports "
                                     "OTLP over gRPC (set grpc, or leave it unset)")
    return list(dict.fromkeys(names))


# Bound by install(): OpenTelemetry's modules and our tracer. None while tracing is off.
_tracer: Any = None
_trace: Any = None
_context: Any = None
_propagate: Any = None
_fields: frozenset[str] = frozenset()


def enabled() -> bool:
    return _tracer is not None


def _ids() -> tuple[str, str] | None:
    ctx = _trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def install(provider: Any) -> None:
    """Traces with `provider` (an opentelemetry.sdk TracerProvider) from now on; log lines carry trace ids."""
    global _tracer, _trace, _context, _propagate, _fields
    from opentelemetry import context, propagate, trace

    _trace, _context, _propagate = trace, context, propagate
    _fields = frozenset(propagate.get_global_textmap().fields)
    _tracer = provider.get_tracer("tokenway")
    logs.trace_ids = _ids


def uninstall() -> None:
    """Tracing off again (tests)."""
    global _tracer
    _tracer = None
    logs.trace_ids = None


class Tracing:
    """What `setup` started: flushed and stopped by `close` when the service stops."""

    def __init__(self, provider: Any, processors: Sequence[Any], description: str) -> None:
        self.provider, self.processors, self.description = provider, list(processors), description

    def close(self, timeout: float = 5.0) -> None:
        """Exports what is buffered, for at most `timeout` seconds: a collector that is down (the exporter retries
        for up to OTEL_EXPORTER_OTLP_TIMEOUT) never holds a stop up; what is left then is dropped (a daemon thread)."""
        uninstall()

        def shutdown() -> None:
            for p in self.processors:
                try:
                    p.shutdown()
                except Exception as exc:  # noqa: BLE001 - the last spans are lost, the stop goes on
                    log.warning("tracing: flushing spans failed: %s", exc)

        worker = threading.Thread(target=shutdown, name="tracing-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            log.warning("tracing: spans not exported within %.0fs of the stop were dropped", timeout)


def setup(service: str, env: Mapping[str, str] = os.environ) -> Tracing | None:
    """Starts tracing for this process when the environment configures it (module doc); None when it is off.
    `service`: "orchestrator", "tokenizer", "inference" (the default service.name is tokenway-<service>).
    Raises TracingConfigError for settings it cannot honour."""
    exporters = configured(env)
    if not exporters:
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    ours = {}
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        ours[SERVICE_NAME] = f"tokenway-{service}"
    if SERVICE_INSTANCE_ID not in resource.attributes:  # one per process (a supervisor's workers share a name)
        ours[SERVICE_INSTANCE_ID] = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    resource = resource.merge(Resource(ours))
    # shutdown_on_exit=False: Tracing.close flushes, within a bound; an atexit hook could wait 30 s on a dead collector
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    processors, where = [], []
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # the exporter reads the other OTEL_EXPORTER_OTLP_* variables (headers, TLS, timeout) itself
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
        processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        where.append(f"OTLP/gRPC to {endpoint or 'localhost:4317'}")
    if "console" in exporters:
        processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
        where.append("the console")
    for p in processors:
        provider.add_span_processor(p)
    trace.set_tracer_provider(provider)  # for libraries that trace through the global provider
    install(provider)
    return Tracing(provider, processors, f"traces as {resource.attributes[SERVICE_NAME]} to {' and '.join(where)}")


# --- spans -----------------------------------------------------------------------------------------------------


class Span:
    """A span of ours, or the shared no-op (`NOOP`) when tracing is off or nothing is traced here. Also a context
    manager that ends it (an exception on the way out is its outcome)."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def __bool__(self) -> bool:
        return self.span is not None

    def __enter__(self) -> Span:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.end(exc)

    def set(self, key: str, value: Any) -> None:
        if self.span is not None and value is not None:
            self.span.set_attribute(key, value)

    def update(self, attributes: Mapping[str, Any]) -> None:
        if self.span is not None:
            self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        if self.span is not None:
            self.span.add_event(name, attributes)

    def end(self, exc: BaseException | None = None) -> None:
        """Ends it (once; later calls do nothing), with `exc` as its outcome: a peer's gRPC error (an error unless
        CANCELLED), a tokenway error (its reason; an error when its code is a server's fault), a cancellation (no
        error), any other exception (an error)."""
        span = self.span
        if span is None:
            return
        self.span = None
        if exc is not None:
            _outcome(span, exc)
        span.end()


NOOP = Span(None)


def _outcome(span: Any, exc: BaseException) -> None:
    code, name, error = getattr(exc, "code", None), None, True
    if callable(code):  # grpc.aio.AioRpcError: a CLIENT span fails with any code but CANCELLED
        try:
            value = code()
            name = value.name
            span.set_attribute("rpc.grpc.status_code", value.value[0])
        except Exception:  # noqa: BLE001 - not a gRPC error after all
            name = None
    elif hasattr(code, "name") and hasattr(code, "value"):  # a TokenwayError (its grpc.StatusCode)
        name = code.name
        error = name in SERVER_ERRORS  # the caller's mistake (a bad argument, a limit) is no failure of ours
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        span.set_attribute("tokenway.error.reason", reason)
    if name == "CANCELLED" or isinstance(exc, GeneratorExit) or type(exc).__name__ == "CancelledError":
        span.set_attribute("tokenway.cancelled", True)
        return
    if error:
        message = getattr(exc, "message", None) or str(exc)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{name or type(exc).__name__}: {message}"[:300]))


def current() -> Span:
    """The span current here, when it records; else NOOP. Ending it stays its owner's business."""
    if _tracer is None:
        return NOOP
    span = _trace.get_current_span()
    return Span(span) if span.is_recording() else NOOP


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """An INTERNAL span, current while the block runs (spans and peer calls inside are its children), ended when
    it leaves (an exception: its outcome). Only inside a recording span; else NOOP."""
    if _tracer is None or not _trace.get_current_span().is_recording():
        yield NOOP
        return
    raw = _tracer.start_span(name, attributes=attributes, record_exception=False, set_status_on_exception=False)
    own = Span(raw)
    token = _context.attach(_trace.set_span_in_context(raw))
    try:
        yield own
    except BaseException as exc:
        own.end(exc)
        raise
    finally:
        _context.detach(token)
        own.end()


def start(name: str, attributes: Mapping[str, Any] | None = None) -> Span:
    """An INTERNAL span that is not made current (a stream read elsewhere, with yields in between): the caller
    ends it. Only inside a recording span; else NOOP."""
    if _tracer is None or not _trace.get_current_span().is_recording():
        return NOOP
    return Span(_tracer.start_span(name, attributes=attributes, record_exception=False, set_status_on_exception=False))


def request_metadata() -> Metadata:
    """Metadata for a peer call: the request id being served (none outside a request)."""
    rid = logs.request_id.get()
    return ((REQUEST_ID_KEY, rid),) if rid != "-" else ()


def peer_call(method: str, peer: str = "", attributes: Mapping[str, Any] | None = None) -> tuple[Span, Metadata]:
    """The CLIENT span of a call to a peer (`method`: "package.Service/Method", `peer`: host:port) and the metadata
    the call must carry: the request id, and the trace context the peer continues. The span is not made current
    (a stream is read between other work); end it when the call ends, with its error. Outside a traced request:
    NOOP and the request id alone; inside one that is not sampled: NOOP and its (unsampled) trace context."""
    md = request_metadata()
    if _tracer is None:
        return NOOP, md
    parent = _trace.get_current_span()
    if not parent.get_span_context().is_valid:
        return NOOP, md
    carrier: dict[str, str] = {}
    if not parent.is_recording():
        _propagate.inject(carrier)
        return NOOP, md + tuple(carrier.items())
    service, _, rpc = method.partition("/")
    attrs = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}
    if peer:
        host, _, port = peer.rpartition(":")
        attrs["server.address"] = host or peer
        if port.isdigit():
            attrs["server.port"] = int(port)
    if attributes:
        attrs.update({k: v for k, v in attributes.items() if v is not None})
    raw = _tracer.start_span(method, kind=_trace.SpanKind.CLIENT, attributes=attrs, record_exception=False,
                             set_status_on_exception=False)
    _propagate.inject(carrier, context=_trace.set_span_in_context(raw))
    return Span(raw), md + tuple(carrier.items())


def server_span(method: str, metadata: Sequence[tuple[str, Any]] | None, request_id: str,
                background: frozenset[str] = frozenset()) -> Span:
    """The SERVER span of a call being served (`method`: "/package.Service/Method"), made current in the calling
    task (each RPC runs in a task of its own, whose context ends with it: nothing to restore). NOOP when tracing is
    off, for health and reflection, and for a `background` method whose caller sent no trace context."""
    if _tracer is None:
        return NOOP
    name = method[1:] if method.startswith("/") else method
    service, _, rpc = name.partition("/")
    if service in UNTRACED_SERVICES:
        return NOOP
    carrier = {k: v for k, v in metadata or () if k in _fields and isinstance(v, str)}
    if not carrier and name in background:
        return NOOP
    parent = _propagate.extract(carrier)  # an empty Context without trace context: a root span
    raw = _tracer.start_span(name, context=parent, kind=_trace.SpanKind.SERVER, record_exception=False,
                             set_status_on_exception=False,
                             attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc,
                                         REQUEST_ID_ATTRIBUTE: request_id})
    _context.attach(_trace.set_span_in_context(raw, parent))
    return Span(raw)


def end_server_span(span: Span, code: Any, reason: str = "", message: str = "") -> None:
    """Ends a server span with the call's final status (`code`: a grpc.StatusCode)."""
    raw = span.span
    if raw is None:
        return
    span.span = None
    raw.set_attribute("rpc.grpc.status_code", code.value[0])
    if reason:
        raw.set_attribute("tokenway.error.reason", reason)
    if code.name == "CANCELLED":
        raw.set_attribute("tokenway.cancelled", True)
    elif code.name in SERVER_ERRORS:
        raw.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{code.name}: {message}"[:300] if message else code.name))
    raw.end()
