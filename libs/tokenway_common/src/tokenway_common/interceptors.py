"""The one place where exceptions become gRPC statuses, for every handler kind.

Requests that do not decode (malformed protobuf, invalid UTF-8 in a string field) never reach a
servicer: the wrapped deserializer turns the failure into a marker and the call ends with
INVALID_ARGUMENT, reason MALFORMED_REQUEST, logged at most once per MALFORMED_LOG_SECONDS with a
count (a flood of garbage must not flood the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc

from . import errors, logs, tracing

log = logging.getLogger("tokenway.rpc")
REQUEST_ID_KEY = "x-request-id"
MALFORMED_REASON = "MALFORMED_REQUEST"
MALFORMED_LOG_SECONDS = 10.0


class _Malformed:
    """What the wrapped deserializer returns for bytes that are not a valid request message."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class MalformedRequest(errors.InvalidArgument):
    default_reason = MALFORMED_REASON


class _RateLimitedLog:
    """One warning per `interval` seconds at most, counting what it did not print."""

    def __init__(self, interval: float) -> None:
        self.interval, self.count, self.last = interval, 0, float("-inf")

    def hit(self, method: str, error: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.interval:
            log.warning("%d malformed request(s) refused in the last %.0fs; latest: %s: %s", self.count,
                        self.interval, method, f"{type(error).__name__}: {error}"[:200])
            self.count, self.last = 0, now


_malformed_log = _RateLimitedLog(MALFORMED_LOG_SECONDS)


def _safe(deserializer: Callable[[bytes], object] | None) -> Callable[[bytes], object] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> object:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any failure to decode is the caller's malformed input
            return _Malformed(exc)
    return deserialize


def _malformed(method: str, marker: _Malformed) -> MalformedRequest:
    _malformed_log.hit(method, marker.error)
    return MalformedRequest("the request is not a valid protobuf message of the method's request type "
                            "(bad encoding, or invalid UTF-8 in a string field)", metadata={"method": method})


async def _checked(requests, method: str):
    """A client stream whose malformed message raises MalformedRequest in the servicer's loop."""
    async for request in requests:
        if isinstance(request, _Malformed):
            raise _malformed(method, request)
        yield request


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and value:
            return value[:128]
    return uuid.uuid4().hex[:16]


def _error(method: str, exc: BaseException, started: float) -> errors.TokenwayError:
    """The error a caller is told for `exc` (logged here: a domain error briefly, a bug with its traceback)."""
    if isinstance(exc, MalformedRequest):
        return exc  # already counted by the rate-limited log
    if isinstance(exc, errors.TokenwayError):
        log.info("%s failed", method, extra={"fields": {"code": exc.code.name, "reason": exc.reason,
                                                         "ms": round((time.monotonic() - started) * 1e3, 1),
                                                         "error": exc.message}})
        return exc
    log.error("%s raised an unexpected error", method, exc_info=exc)
    return errors.Internal("internal error; see the server log", reason="INTERNAL",
                           metadata={"request_id": logs.request_id.get()})


class CallObserver(Protocol):
    """Told once about every call when it ends (metrics.ServiceMetrics)."""

    def ended(self, method: str, code: grpc.StatusCode, reason: str, seconds: float) -> None: ...


class _Outcome:
    """How a call ended: its status code and ErrorInfo reason. A call that never got to say (its task was
    cancelled, its stream closed by gRPC) was cancelled, or ran out of time when its deadline has passed."""

    __slots__ = ("code", "reason", "message")

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.reason = self.message = ""

    def settle(self, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
        if self.code is None:
            left = context.time_remaining()
            self.code = grpc.StatusCode.DEADLINE_EXCEEDED if left is not None and left <= 0 else \
                grpc.StatusCode.CANCELLED
        return self.code


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id for logs and maps every exception to a rich status; tells `observer` (metrics)
    how each call ended, once, when it ends: a stream when its last message went or it failed. With tracing on,
    each call is a SERVER span (tracing.server_span: the caller's trace context continued, current while the
    handler runs, ended with the call's final code); `background`: full method names ("pkg.Service/Method")
    traced only when the caller sent trace context (peers' polls)."""

    def __init__(self, observer: CallObserver | None = None, background: frozenset[str] = frozenset()) -> None:
        self.observer = observer
        self.background = frozenset(background)

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method, rid = details.method, _request_id(details)
        # the caller's metadata, for its trace context (only looked at with tracing on)
        md = details.invocation_metadata if tracing.enabled() else None
        handler = handler._replace(request_deserializer=_safe(handler.request_deserializer))
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, method, rid, md))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, method, rid, md))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._stream(handler.stream_stream, method, rid, md,
                                                               client_stream=True))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, method, rid, md, client_stream=True))
        return handler

    def _span(self, method: str, md, rid: str) -> tracing.Span:
        return tracing.server_span(method, md, rid, self.background) if md is not None else tracing.NOOP

    def _unary(self, behavior, method: str, rid: str, md, client_stream: bool = False):
        observer = self.observer

        async def wrapper(request, context):
            logs.request_id.set(rid)
            span = self._span(method, md, rid)
            started = time.monotonic()
            out = _Outcome()
            try:
                if client_stream:
                    request = _checked(request, method)
                elif isinstance(request, _Malformed):
                    raise _malformed(method, request)
                response = await behavior(request, context)
                out.code = context.code() or grpc.StatusCode.OK
                return response
            except asyncio.CancelledError:
                raise
            except grpc.aio.AbortError:
                out.code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as exc:  # noqa: BLE001 - this is the one mapping point
                err = _error(method, exc, started)
                out.code, out.reason, out.message = err.code, err.reason, err.message
                await context.abort(err.code, err.message, trailing_metadata=errors.trailing_metadata(err))
            finally:
                code = out.settle(context)
                if observer is not None:
                    observer.ended(method, code, out.reason, time.monotonic() - started)
                if span:
                    tracing.end_server_span(span, code, out.reason, out.message)
        return wrapper

    def _stream(self, behavior, method: str, rid: str, md, client_stream: bool = False):
        observer = self.observer

        async def wrapper(request, context):
            logs.request_id.set(rid)
            span = self._span(method, md, rid)
            started = time.monotonic()
            out = _Outcome()
            try:
                if client_stream:
                    request = _checked(request, method)
                elif isinstance(request, _Malformed):
                    raise _malformed(method, request)
                result = behavior(request, context)
                if hasattr(result, "__aiter__"):
                    async for message in result:
                        yield message
                else:
                    await result
                out.code = context.code() or grpc.StatusCode.OK
            except asyncio.CancelledError:
                raise
            except grpc.aio.AbortError:
                out.code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as exc:  # noqa: BLE001 - this is the one mapping point
                err = _error(method, exc, started)
                out.code, out.reason, out.message = err.code, err.reason, err.message
                await context.abort(err.code, err.message, trailing_metadata=errors.trailing_metadata(err))
            finally:  # also when the stream is closed unfinished (GeneratorExit): cancelled
                code = out.settle(context)
                if observer is not None:
                    observer.ended(method, code, out.reason, time.monotonic() - started)
                if span:
                    tracing.end_server_span(span, code, out.reason, out.message)
        return wrapper
