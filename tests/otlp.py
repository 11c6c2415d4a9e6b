"""An OTLP/gRPC trace receiver in the test process: the collector's TraceService (opentelemetry-proto's stubs) on a free
loopback port, keeping every span it is sent with its service.name, and telling waiters when spans arrive."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
INTERNAL = trace_pb2.Span.SPAN_KIND_INTERNAL


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclasses.dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict
    events: tuple[str, ...]
    status_code: int

    @classmethod
    def of(cls, service: str, s: trace_pb2.Span) -> Span:
        return cls(service, s.name, s.kind, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                   {a.key: _value(a.value) for a in s.attributes}, tuple(e.name for e in s.events), s.status.code)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._changed = threading.Condition()
        self._server: grpc.Server | None = None
        self.port = 0

    def Export(self, request, context):
        with self._changed:
            for rs in request.resource_spans:
                service = next((_value(a.value) for a in rs.resource.attributes if a.key == "service.name"), "")
                for scope in rs.scope_spans:
                    self.spans.extend(Span.of(service, s) for s in scope.spans)
            self._changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float) -> bool:
        """True once `predicate(spans so far)` holds (checked at each export), False when `timeout` passes first."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self.spans)), timeout)

    def start(self) -> Collector:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"
