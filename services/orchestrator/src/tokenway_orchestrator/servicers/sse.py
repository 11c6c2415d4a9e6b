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
from google.protobuf.internal.type_checkers import ToShortestFloat as _float
from google.protobuf.message import Message
from tokenway.v1 import chat_pb2, common_pb2, completion_pb2

from tokenway_common import errors

log = logging.getLogger("tokenway.orchestrator.edge")
CONTENT_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def frame(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def message_json(message: Message) -> dict:
    """Any message as the transcoder would print it: proto field names, scalars always printed."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def chunk_json(message: Message) -> dict:
    """A stream chunk exactly as `message_json` prints it, without its reflection walk per chunk (a chunk
    goes out per token or so, and the generic printer costs more than everything else the chunk needs)."""
    kind = type(message)
    if kind is chat_pb2.StreamChatCompletionResponse:
        choices = [_chat_choice(c) for c in message.choices]
    elif kind is completion_pb2.StreamCompletionResponse:
        choices = [_completion_choice(c) for c in message.choices]
    else:
        return message_json(message)
    out = {"id": message.id, "object": message.object, "created": message.created, "model": message.model,
           "choices": choices}
    if message.HasField("usage"):
        u = message.usage
        out["usage"] = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                        "total_tokens": u.total_tokens}
    if message.HasField("system_fingerprint"):
        out["system_fingerprint"] = message.system_fingerprint
    return out


def _tail(c, out: dict, logprobs) -> dict:
    """The fields both choice kinds share after their text."""
    if c.HasField("finish_reason"):
        out["finish_reason"] = c.finish_reason
    if c.HasField("logprobs"):
        out["logprobs"] = logprobs(c.logprobs)
    if c.HasField("stop_reason"):
        out["stop_reason"] = c.stop_reason
    return out


def _chat_choice(c: chat_pb2.ChatChunkChoice) -> dict:
    out: dict = {"index": c.index}
    if c.HasField("delta"):
        d = c.delta
        delta = out["delta"] = {}
        if d.HasField("role"):
            delta["role"] = d.role
        if d.HasField("content"):
            delta["content"] = d.content
    return _tail(c, out, _chat_logprobs)


def _completion_choice(c: completion_pb2.CompletionChunkChoice) -> dict:
    return _tail(c, {"index": c.index, "text": c.text}, message_json)


def _chat_logprobs(lp: common_pb2.ChatLogprobs) -> dict:
    return {"content": [{"token": t.token, "logprob": _float(t.logprob), "bytes": list(t.bytes), "top_logprobs": [
        {"token": a.token, "logprob": _float(a.logprob), "bytes": list(a.bytes)} for a in t.top_logprobs]}
        for t in lp.content]}


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
