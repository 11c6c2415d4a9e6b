"""In-band errors for the REST edge.

Behind Envoy, a failure after a stream's first chunk would only be in HTTP/2 trailers that a REST
client never sees: its stream would just end, silently truncated. The edge asks for an in-band
error instead (request header x-tokenway-inband-errors: 1), and gets one last chunk carrying an
OpenAI-shaped `error`, which the openai SDK raises. gRPC callers that did not ask keep the plain
status in the trailers. Errors before the first chunk are statuses for everyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from tokenway.v1 import common_pb2

from tokenway_common import errors

log = logging.getLogger("tokenway.orchestrator.edge")
INBAND_KEY = "x-tokenway-inband-errors"
T = TypeVar("T")


def wants_inband(context: grpc.aio.ServicerContext) -> bool:
    return any(k == INBAND_KEY and v == "1" for k, v in context.invocation_metadata() or ())


async def with_inband_errors(context: grpc.aio.ServicerContext, stream: AsyncIterator[T],
                             make_chunk: Callable[[], T]) -> AsyncIterator[T]:
    if not wants_inband(context):
        async for message in stream:
            yield message
        return
    started = False
    try:
        async for message in stream:
            started = True
            yield message
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception as exc:  # noqa: BLE001 - after the first chunk this is the only way to tell a REST client
        if not started:
            raise
        if isinstance(exc, errors.TokenwayError):
            log.warning("stream failed after its first chunk: %r", exc)
            err = common_pb2.Error(message=exc.message, type=errors.openai_type(exc.code), code=exc.reason)
            if param := exc.metadata.get("param"):
                err.param = param
        else:
            log.error("stream raised an unexpected error after its first chunk", exc_info=exc)
            err = common_pb2.Error(message="internal error; see the server log", type="server_error", code="INTERNAL")
        chunk = make_chunk()
        chunk.error.CopyFrom(err)
        yield chunk
