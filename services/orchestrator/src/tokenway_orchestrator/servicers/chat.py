"""tokenway.v1.ChatService."""

from __future__ import annotations

import dataclasses

from tokenway.v1 import chat_pb2, chat_pb2_grpc

from tokenway_common import tracing
from tokenway_common.channels import remaining

from ..core.service import new_request_id
from . import convert, sse
from .tickets import SESSION_HEADER, metadata, send_headers, ticket


def _units(request) -> int:
    """Sequences the request runs (its n), bounded: what it takes of the admission queue."""
    return min(max(request.n if request.HasField("n") else 1, 1), 128)


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    async def _prepare(self, entry, request, context, streaming: bool, t):
        orch = entry.core
        orch.check_prompt_bytes(sum(m.content.ByteSize() for m in request.messages), "messages")
        messages, params, field = convert.chat_params(request, streaming=streaming)
        params = dataclasses.replace(params, session=metadata(context, SESSION_HEADER))
        timeout = remaining(context, self.app.settings.request_timeout_seconds)
        with tracing.span("prepare") as span:  # validation, RenderChat, the token reservation
            prepared = await orch.prepare_chat(entry.name, messages, params, max_tokens_field=field, timeout=timeout,
                                               request_id=t.request_id)
            await t.reserve(*orch.most_tokens(prepared))
            if span:
                span.set("tokenway.prompt_tokens", sum(len(p) for p in prepared.job.prompts))
        return orch, params, prepared, timeout

    async def CreateChatCompletion(self, request, context):
        entry = self.app.route(request.model)
        async with ticket(self.app, context, entry.name, new_request_id("chat"), _units(request)) as t:
            orch, _, prepared, timeout = await self._prepare(entry, request, context, False, t)
            result = await orch.collect(prepared, timeout)
            await t.close("ok", completion_tokens=result.usage.completion_tokens,
                          prompt_tokens=result.usage.prompt_tokens,
                          finish_reason=",".join(sorted({c.finish_reason or "" for c in result.choices})))
            await send_headers(context, t)
        resp = chat_pb2.CreateChatCompletionResponse(
            id=prepared.job.request_id, object="chat.completion", created=prepared.created, model=orch.model.name,
            usage=convert.usage(result.usage), system_fingerprint=entry.system_fingerprint)
        for c in result.choices:
            choice = resp.choices.add(index=c.index, message=chat_pb2.ChatMessage(role="assistant", content=c.text),
                                      finish_reason=c.finish_reason)
            if c.stop_reason is not None:
                choice.stop_reason = c.stop_reason
            if c.logprobs is not None:
                choice.logprobs.CopyFrom(convert.chat_logprobs(c.logprobs))
        return resp

    def StreamChatCompletion(self, request, context):
        return self._stream_chat(request, context)

    def StreamChatCompletionEvents(self, request, context):
        return sse.events(self._stream_chat(request.request, context))

    async def _stream_chat(self, request, context):
        entry = self.app.route(request.model)
        async with ticket(self.app, context, entry.name, new_request_id("chat"), _units(request)) as t:
            async for out in self._chat_chunks(entry, request, context, t):
                yield out

    async def _chat_chunks(self, entry, request, context, t):
        orch, params, prepared, timeout = await self._prepare(entry, request, context, True, t)
        chunk = convert.chunk_factory(chat_pb2.StreamChatCompletionResponse, "chat.completion.chunk", prepared,
                                      orch.model.name, entry.system_fingerprint)
        first = True

        async def settle(usage, held):
            if held is not None:
                t.shown(held.index, held.tokens, held.finish_reason)
            await t.close("ok", completion_tokens=usage.completion_tokens, prompt_tokens=usage.prompt_tokens)

        async for ev, out in convert.chunked(orch.stream(prepared, timeout), chunk, params.include_usage, settle,
                                             len(prepared.job.prompts) * prepared.job.n):
            if first:
                await send_headers(context, t)
                first = False
            if ev is None:
                yield out
                continue
            t.shown(ev.index, ev.tokens, ev.finish_reason)
            choice = out.choices.add(index=ev.index)
            if ev.first:
                choice.delta.role = "assistant"
            if ev.text or ev.first:
                choice.delta.content = ev.text
            if ev.finish_reason is not None:
                choice.finish_reason = ev.finish_reason
            if ev.stop_reason is not None:
                choice.stop_reason = ev.stop_reason
            if ev.logprobs:
                choice.logprobs.CopyFrom(convert.chat_logprobs(ev.logprobs))
            yield out
