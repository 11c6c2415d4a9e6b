"""tokenway.v1.CompletionService."""

from __future__ import annotations

from tokenway.v1 import completion_pb2, completion_pb2_grpc

from tokenway_common.channels import remaining

from . import convert, sse


class CompletionServicer(completion_pb2_grpc.CompletionServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    async def _prepare(self, request, context, streaming: bool):
        self.app.admit(context, request.model)
        orch = self.app.orchestrator()
        orch.check_prompt_bytes(convert.largest_text_prompt_bytes(request), "prompt")
        params = convert.completion_params(request, streaming=streaming)
        timeout = remaining(context, self.app.settings.request_timeout_seconds)
        echo = request.echo if request.HasField("echo") else False
        texts, id_lists = convert.completion_prompts(request, orch.model.context_length)
        prepared = await orch.prepare_completion(request.model, texts, id_lists, params, echo=echo, timeout=timeout)
        return orch, params, prepared, timeout, echo

    async def CreateCompletion(self, request, context):
        orch, params, prepared, timeout, echo = await self._prepare(request, context, False)
        result = await orch.collect(prepared, timeout)
        resp = completion_pb2.CreateCompletionResponse(
            id=prepared.job.request_id, object="text_completion", created=prepared.created, model=orch.model.name,
            usage=convert.usage(result.usage), system_fingerprint=self.app.system_fingerprint)
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
        orch, params, prepared, timeout, echo = await self._prepare(request, context, True)
        n = prepared.job.n
        offsets: dict[int, int] = {}

        chunk = convert.chunk_factory(completion_pb2.StreamCompletionResponse, "text_completion", prepared,
                                      orch.model.name, self.app.system_fingerprint)
        async for ev, out in convert.chunked(orch.stream(prepared, timeout), chunk, params.include_usage):
            if ev is None:
                yield out
                continue
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
