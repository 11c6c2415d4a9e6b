"""Domain errors and their ONE mapping to a rich gRPC status.

Cores raise these exceptions (they import no gRPC); the server interceptor turns them into
`google.rpc.Status` with `ErrorInfo{reason, domain, metadata}`, `BadRequest` field violations and
`RetryInfo`, for unary and streaming handlers alike. `from_rpc_error` does the reverse for a
downstream call's failure, so a peer's reason survives the hop to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "tokenway.io"
_DETAILS_KEY = "grpc-status-details-bin"
# Bounds on what one error carries, whatever the request held: a few field violations (then "and N
# more"), short texts. A status travels in HTTP/2 trailers, whose size is limited (8 KiB by default).
MAX_FIELD_VIOLATIONS = 5
MAX_MESSAGE_CHARS = 1024
MAX_FIELD_CHARS = 200


def clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`text`, shortened to `limit` characters with an ellipsis (for echoing caller input)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _bounded_violations(violations: list[tuple[str, str]]) -> list[tuple[str, str]]:
    items = [(clip(f), clip(d)) for f, d in violations[:MAX_FIELD_VIOLATIONS]]
    if len(violations) > MAX_FIELD_VIOLATIONS:
        items.append(("", f"and {len(violations) - MAX_FIELD_VIOLATIONS} more"))
    return items


class TokenwayError(Exception):
    """An error the caller should see, with a stable machine-readable reason."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None,
                 field_violations: Iterable[tuple[str, str]] = (), retry_after: float | None = None,
                 code: grpc.StatusCode | None = None, headers: Iterable[tuple[str, str]] = ()) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = {k: clip(str(v)) for k, v in (metadata or {}).items()}
        self.field_violations = _bounded_violations(list(field_violations))
        self.retry_after = retry_after
        # plain response headers for an HTTP edge (OpenAI's x-ratelimit-*): lower-case ASCII names and values
        self.headers = tuple((k.lower(), str(v)) for k, v in headers)
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.reason}, {self.message!r})"


class InvalidArgument(TokenwayError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class NotFound(TokenwayError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class Unauthenticated(TokenwayError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(TokenwayError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(TokenwayError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class FailedPrecondition(TokenwayError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Unavailable(TokenwayError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(TokenwayError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Cancelled(TokenwayError):
    code = grpc.StatusCode.CANCELLED
    default_reason = "CANCELLED"


class Internal(TokenwayError):
    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"


def to_status_proto(err: TokenwayError) -> status_pb2.Status:
    status = status_pb2.Status(code=err.code.value[0], message=err.message)
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata)
    status.details.add().Pack(info)
    if err.field_violations:
        br = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                              for f, d in err.field_violations])
        status.details.add().Pack(br)
    if err.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(err.retry_after * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def trailing_metadata(err: TokenwayError) -> tuple[tuple[str, str | bytes], ...]:
    """The rich status, plus the reason and the faulty parameter as plain ASCII entries so that an
    HTTP edge (Envoy's Lua) can shape an OpenAI error without decoding protobuf."""
    md: list[tuple[str, str | bytes]] = [(_DETAILS_KEY, to_status_proto(err).SerializeToString()),
                                         ("tokenway-error-reason", err.reason)]
    if param := err.metadata.get("param"):
        md.append(("tokenway-error-param", param.encode("ascii", "replace").decode()))
    if err.retry_after is not None:  # HTTP's Retry-After (whole seconds, rounded up) and OpenAI's retry-after-ms
        md.append(("retry-after", str(max(1, math.ceil(err.retry_after)))))
        md.append(("retry-after-ms", str(max(1, math.ceil(err.retry_after * 1000)))))
    md.extend(err.headers)
    return tuple(md)


# gRPC code -> (HTTP status, OpenAI error type): the REST edge's mapping, for in-band errors.
OPENAI_TYPES = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_request_error", grpc.StatusCode.FAILED_PRECONDITION: "invalid_request_error",
    grpc.StatusCode.OUT_OF_RANGE: "invalid_request_error", grpc.StatusCode.NOT_FOUND: "not_found_error",
    grpc.StatusCode.UNAUTHENTICATED: "authentication_error", grpc.StatusCode.PERMISSION_DENIED: "permission_error",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limit_error", grpc.StatusCode.UNAVAILABLE: "service_unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout", grpc.StatusCode.CANCELLED: "cancelled",
}


def openai_type(code: grpc.StatusCode) -> str:
    return OPENAI_TYPES.get(code, "server_error")


_BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, Unauthenticated, PermissionDenied,
                                      ResourceExhausted, FailedPrecondition, Unavailable, DeadlineExceeded,
                                      Cancelled, Internal)}


def status_details(err: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a failed call carried, if any."""
    md = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in md or ():
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    status = status_details(err)
    for any_ in status.details if status else ():
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
            return info
    return None


def from_rpc_error(err: grpc.RpcError, peer: str) -> TokenwayError:
    """Translates a downstream call's failure into a domain error, keeping its reason and details."""
    code = err.code()
    message = err.details() or code.name
    cls = _BY_CODE.get(code, Internal)
    status = status_details(err)
    reason, metadata, violations, retry = None, {}, [], None
    for any_ in status.details if status else ():
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            any_.Unpack(br)
            violations = [(v.field, v.description) for v in br.field_violations]
        elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            ri = error_details_pb2.RetryInfo()
            any_.Unpack(ri)
            retry = ri.retry_delay.ToNanoseconds() / 1e9
    if code == grpc.StatusCode.UNAVAILABLE and reason is None:
        reason, message = "PEER_UNAVAILABLE", f"{peer} is unavailable: {message}"
    if code == grpc.StatusCode.INTERNAL:
        message = f"{peer} failed: {message}"
    metadata.setdefault("peer", peer)
    return cls(message, reason=reason, metadata=metadata, field_violations=violations, retry_after=retry, code=code)


assert code_pb2.OK == 0  # google.rpc codes match grpc.StatusCode values
