"""The one place where exceptions become gRPC statuses, for every handler kind."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from . import errors, logs

log = logging.getLogger("tokenway.rpc")
REQUEST_ID_KEY = "x-request-id"


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and value:
            return value[:128]
    return uuid.uuid4().hex[:16]


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: BaseException, started: float) -> None:
    if isinstance(exc, errors.TokenwayError):
        err = exc
        log.info("%s failed", method, extra={"fields": {"code": err.code.name, "reason": err.reason,
                                                         "ms": round((time.monotonic() - started) * 1e3, 1),
                                                         "error": err.message}})
    else:
        log.error("%s raised an unexpected error", method, exc_info=exc)
        err = errors.Internal("internal error; see the server log", reason="INTERNAL",
                              metadata={"request_id": logs.request_id.get()})
    await context.abort(err.code, err.message, trailing_metadata=errors.trailing_metadata(err))


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id for logs and maps every exception to a rich status."""

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method, rid = details.method, _request_id(details)
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, method, rid))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, method, rid))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._stream(handler.stream_stream, method, rid))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, method, rid))
        return handler

    @staticmethod
    def _unary(behavior, method: str, rid: str):
        async def wrapper(request, context):
            logs.request_id.set(rid)
            started = time.monotonic()
            try:
                return await behavior(request, context)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:  # noqa: BLE001 - this is the one mapping point
                await _abort(context, method, exc, started)
        return wrapper

    @staticmethod
    def _stream(behavior, method: str, rid: str):
        async def wrapper(request, context):
            logs.request_id.set(rid)
            started = time.monotonic()
            try:
                result = behavior(request, context)
                if hasattr(result, "__aiter__"):
                    async for message in result:
                        yield message
                else:
                    await result
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:  # noqa: BLE001 - this is the one mapping point
                await _abort(context, method, exc, started)
        return wrapper
