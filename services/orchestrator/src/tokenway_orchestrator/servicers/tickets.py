"""A request's Ticket (policy.gate) around a servicer call: opened for the authenticated caller, closed
exactly once however the call ends, its outcome the request's usage record."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from tokenway_common import errors, tracing
from tokenway_common.channels import remaining

from ..policy.auth import CALLER
from ..policy.gate import PRIORITY_HEADER, Ticket


SESSION_HEADER = "x-session-id"  # requests of one session prefer one inference replica


def metadata(context: grpc.aio.ServicerContext, name: str) -> str | None:
    return next((v for k, v in context.invocation_metadata() or () if k == name), None)


@contextlib.asynccontextmanager
async def ticket(app, context: grpc.aio.ServicerContext, model: str, request_id: str, units: int) -> AsyncIterator[Ticket]:
    """`model`: the served model's name, which the caller was authorized for (`app.route`). Traced: the request's
    id and model on the call's span, the wait for admission (limits, the queue) as a `queue` span."""
    tracing.current().update({"tokenway.completion_id": request_id, "tokenway.model": model})
    with tracing.span("queue", {"tokenway.units": units}) as span:
        t = await app.gate.open(CALLER.get(), model, request_id, priority=metadata(context, PRIORITY_HEADER),
                                units=units, timeout=remaining(context, app.settings.request_timeout_seconds),
                                authorized=True)
        span.update({"tokenway.priority": t.priority, "tokenway.queue_ms": t.queue_ms})
    try:
        yield t
    except (asyncio.CancelledError, GeneratorExit):  # the caller is gone: nobody waits for the record
        await t.close("cancelled", "cancelled", wait=False)
        raise
    except errors.TokenwayError as exc:
        await t.close("rejected" if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED and not t.ttft_ms else "failed",
                      exc.reason.lower())
        raise
    except Exception:
        await t.close("failed", "error")
        raise
    if not t.closed:  # the call returned without settling (a servicer bug): still one record
        await t.close("failed", "error")


async def send_headers(context: grpc.aio.ServicerContext, t: Ticket) -> None:
    """The key's x-ratelimit-* as response headers, sent with the first message (never earlier: an error
    before it must stay a trailers-only response, which the REST edge turns into an HTTP error)."""
    if t.headers:
        await context.send_initial_metadata(t.headers)
