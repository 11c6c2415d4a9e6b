"""tokenway.v1.CompletionService."""

from __future__ import annotations

import dataclasses

from tokenway.v1 import completion_pb2, completion_pb2_grpc

from tokenway_common import tracing
from tokenway_common.channels import remaining

from ..core.service import new_request_id
from . import convert, sse
from .tickets import SESSION_HEADER, metadata, send_headers, ticket


def _units(request) -> int:
    """Sequences the request runs (prompts x n), bounded: what it takes of the admission queue."""
    values = request.prompt.list_value.values if request.HasField("prompt") and \
        request.prompt.WhichOneof("kind") == "list_value" else ()
    # a list of strings or of id lists is several prompts; a list of numbers is one
    prompts = len(values) if values and values[0].WhichOneof("kind") != "number_value" else 1
    return min(max(prompts, 1) * max(request.n if request.HasField("n") else 1, 1), 1024)


class CompletionServicer(completion_pb2_grpc.CompletionServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    async def _prepare(self, entry, request, context, streaming: bool, t):
        orch = entry.core
        orch.check_prompt_bytes(convert.largest_text_prompt_bytes(request), "prompt")
        params = convert.completion_params(request, streaming=streaming)
        params = dataclasses.replace(params, session=metadata(context, SESSION_HEADER))
        timeout = remaining(context, self.app.settings.request_timeout_seconds)
        echo = request.echo if request.HasField("echo") else False
        texts, id_lists = convert.completion_prompts(request, orch.model.context_length)
        with tracing.span("prepare") as span:  # validation, Tokenize, the token reservation
            prepared = await orch.prepare_completion(entry.name, texts, id_lists, params, echo=echo, timeout=timeout,
                                                     request_id=t.request_id)
            await t.reserve(*orch.most_tokens(prepared))
            if span:
                span.set("tokenway.prompt_tokens", sum(len(p) for p in prepared.job.prompts))
        return orch, params, prepared, timeout, echo

    async def CreateCompletion(self, request, context):
        entry = self.app.route(request.model)
        async with ticket(self.app, context, entry.name, new_request_id("completion"), _units(request)) as t:
            orch, _, prepared, timeout, echo = await self._prepare(entry, request, context, False, t)
            result = await orch.collect(prepared, timeout)
            await t.close("ok", completion_tokens=result.usage.completion_tokens,
                          prompt_tokens=result.usage.prompt_tokens,
                          finish_reason=",".join(sorted({c.finish_reason or "" for c in result.choices})))
            await send_headers(context, t)
        resp = completion_pb2.CreateCompletionResponse(
            id=prepared.job.request_id, object="text_completion", created=prepared.created, model=orch.model.name,
            usage=convert.usage(result.usage), system_fingerprint=entry.system_fingerprint)
        n = prepared.job.n
        for c in result.choices:
            prefix = prepared.prompt_texts[c.index // n] if echo else ""
            choice = resp.choices.add(index=c.index, text=prefix + c.text, finish_reason=c.finish_reason)
            if c.stop_reason is not None:
                choice.stop_reason = c.stop_reason
            if c.logprobs is not None:
                choice.logprobs.CopyFrom(convert.completion_logprobs(c.logprobs, len(prefix)))
        return resp

    def StreamCompletion(self, request, context):
        return self._stream_completion(request, context)

    def StreamCompletionEvents(self, request, context):
        return sse.events(self._stream_completion(request.request, context))

    async def _stream_completion(self, request, context):
        entry = self.app.route(request.model)
        async with ticket(self.app, context, entry.name, new_request_id("completion"), _units(request)) as t:
            async for out in self._completion_chunks(entry, request, context, t):
                yield out

    async def _completion_chunks(self, entry, request, context, t):
        orch, params, prepared, timeout, echo = await self._prepare(entry, request, context, True, t)
        n = prepared.job.n
        offsets: dict[int, int] = {}
        first = True

        async def settle(usage, held):
            if held is not None:
                t.shown(held.index, held.tokens, held.finish_reason)
            await t.close("ok", completion_tokens=usage.completion_tokens, prompt_tokens=usage.prompt_tokens)

        chunk = convert.chunk_factory(completion_pb2.StreamCompletionResponse, "text_completion", prepared,
                                      orch.model.name, entry.system_fingerprint)
        async for ev, out in convert.chunked(orch.stream(prepared, timeout), chunk, params.include_usage, settle,
                                             len(prepared.job.prompts) * prepared.job.n):
            if first:
                await send_headers(context, t)
                first = False
            if ev is None:
                yield out
                continue
            t.shown(ev.index, ev.tokens, ev.finish_reason)
            text = ev.text
            if ev.first and echo:
                text = prepared.prompt_texts[ev.index // n] + text
            choice = out.choices.add(index=ev.index, text=text)
            if ev.finish_reason is not None:
                choice.finish_reason = ev.finish_reason
            if ev.stop_reason is not None:
                choice.stop_reason = ev.stop_reason
            if ev.logprobs:
                start = offsets.get(ev.index, len(text) - len(ev.text))
                lp = convert.completion_logprobs(ev.logprobs, start)
                choice.logprobs.CopyFrom(lp)
                offsets[ev.index] = start + sum(len(e.token) for e in ev.logprobs)
            yield out
