"""Server-Sent Events for the REST edge.

Envoy's transcoder can only frame each gRPC message as JSON; a REST stream that fails after its first
chunk would then just end (the status sits in HTTP/2 trailers no REST client sees), and it could not
end with `data: [DONE]`. So REST streams use RPCs that return `google.api.HttpBody`, whose bytes the
transcoder passes through: the server writes each SSE frame itself, a last `{"error": {...}}` event
when the stream fails after it started (the openai SDK raises it), and `data: [DONE]` at the end of
every stream, as OpenAI and vLLM send it. Errors before the first chunk stay gRPC statuses, which the
edge turns into OpenAI error JSON with the matching HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from google.api import httpbody_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from tokenway_common import errors

log = logging.getLogger("tokenway.orchestrator.edge")
CONTENT_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def frame(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def chunk_json(message: Message) -> dict:
    """A chunk as the transcoder would print it: proto field names, scalars always printed."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def error_event(exc: BaseException) -> dict:
    if isinstance(exc, errors.TokenwayError):
        err = {"message": exc.message, "type": errors.openai_type(exc.code), "param": exc.metadata.get("param"),
               "code": exc.reason}
    else:
        err = {"message": "internal error; see the server log", "type": "server_error", "param": None,
               "code": "INTERNAL"}
    return {"error": err}


async def events(stream: AsyncIterator[Message]) -> AsyncIterator[httpbody_pb2.HttpBody]:
    """`stream`'s chunks as SSE frames; ends with [DONE], after an error event if it failed mid-way."""
    started = False
    try:
        async for message in stream:
            started = True
            yield httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=frame(chunk_json(message)))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - after the first chunk an event is the only way to tell a REST client
        if not started:
            raise
        if not isinstance(exc, errors.TokenwayError):
            log.error("stream raised an unexpected error after its first chunk", exc_info=exc)
        yield httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=frame(error_event(exc)) + DONE)
        return
    yield httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=DONE)
