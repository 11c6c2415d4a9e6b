"""InferenceService: proto messages in, engine calls, proto messages out. No logic of its own."""

from __future__ import annotations

import grpc

from tokenway_common import tracing
from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc

from ..engines.base import (Chunk, Engine, FinishReason, GenerateRequest, SamplingOptions, StoppingOptions)
from .metrics import InferenceMetrics

_FINISH = {None: pb.FINISH_REASON_UNSPECIFIED, FinishReason.STOP: pb.FINISH_REASON_STOP,
           FinishReason.LENGTH: pb.FINISH_REASON_LENGTH, FinishReason.ABORT: pb.FINISH_REASON_ABORT}


def _opt(msg, field: str):
    return getattr(msg, field) if msg.HasField(field) else None


def to_request(req: pb.GenerateRequest) -> GenerateRequest:
    s = req.sampling
    sampling = SamplingOptions(
        temperature=_opt(s, "temperature"), top_p=_opt(s, "top_p"), top_k=_opt(s, "top_k"), min_p=_opt(s, "min_p"),
        seed=_opt(s, "seed"), presence_penalty=_opt(s, "presence_penalty"),
        frequency_penalty=_opt(s, "frequency_penalty"), repetition_penalty=_opt(s, "repetition_penalty"),
        logit_bias=dict(s.logit_bias))
    st = req.stopping
    stopping = StoppingOptions(max_tokens=st.max_tokens, min_tokens=st.min_tokens, ignore_eos=st.ignore_eos,
                               stop_token_ids=tuple(st.stop_token_ids))
    return GenerateRequest(request_id=req.request_id, prompt_token_ids=tuple(req.prompt_token_ids),
                           sampling=sampling, stopping=stopping,
                           logprobs=req.logprobs if req.HasField("logprobs") else None,
                           resumed_tokens=req.resumed_tokens)


def to_response(chunk: Chunk) -> pb.GenerateResponse:
    out = pb.GenerateResponse(token_ids=chunk.token_ids, completion_tokens=chunk.completion_tokens,
                              finish_reason=_FINISH[chunk.finish_reason])
    if chunk.logprobs:
        for lp in chunk.logprobs:
            out.logprobs.add(logprob=lp.logprob, top=[pb.TopToken(token_id=t, logprob=v) for t, v in lp.top])
    if chunk.prompt_tokens is not None:
        out.prompt_info.prompt_tokens = chunk.prompt_tokens
        out.prompt_info.cached_tokens = chunk.cached_tokens
    if chunk.stop_token_id is not None:
        out.stop_token_id = chunk.stop_token_id
    return out


def _sampling_pb(s: SamplingOptions) -> pb.SamplingParams:
    out = pb.SamplingParams()
    for field in ("temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty",
                  "repetition_penalty"):
        value = getattr(s, field)
        if value is not None:
            setattr(out, field, value)
    return out


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, engine: Engine, metrics: InferenceMetrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        # Leaving this generator early (the call was cancelled) closes the engine's iterator,
        # which aborts the sequence and frees its KV rows at the next step.
        stream = self.engine.generate(to_request(request))
        clock = self.metrics.stream() if self.metrics is not None else None
        # traced: the engine request from its submission (queued) through its first token to its end
        span = tracing.start("engine", {"tokenway.sequence_id": request.request_id,
                                        "tokenway.prompt_tokens": len(request.prompt_token_ids),
                                        "tokenway.resumed_tokens": request.resumed_tokens or None})
        first, last, failure = bool(span), None, None
        try:
            async for chunk in stream:
                if clock is not None:
                    clock.chunk(chunk)
                if first:
                    first = False
                    span.event("first_token", {"tokenway.cached_tokens": chunk.cached_tokens or 0})
                last = chunk
                yield to_response(chunk)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            await stream.aclose()
            if span:
                if last is not None:
                    span.update({"tokenway.completion_tokens": last.completion_tokens,
                                 "tokenway.finish_reason": last.finish_reason.value if last.finish_reason else None})
                span.end(failure)

    async def Abort(self, request: pb.AbortRequest, context: grpc.aio.ServicerContext) -> pb.AbortResponse:
        return pb.AbortResponse(aborted_request_ids=await self.engine.abort(list(request.request_ids)))

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.GetModelInfoResponse:
        info = self.engine.model_info()
        out = pb.GetModelInfoResponse(
            model_name=info.model_name, eos_token_ids=info.eos_token_ids, max_context_length=info.max_context_length,
            default_sampling=_sampling_pb(info.default_sampling), tokenizer_fingerprint=info.tokenizer_fingerprint,
            engine=info.engine, vocab_size=info.vocab_size, default_max_tokens=info.default_max_tokens)
        if info.bos_token_id is not None:
            out.bos_token_id = info.bos_token_id
        if info.pad_token_id is not None:
            out.pad_token_id = info.pad_token_id
        return out

    async def GetLoad(self, request: pb.GetLoadRequest, context) -> pb.GetLoadResponse:
        load = self.engine.load()
        return pb.GetLoadResponse(running=load.running, waiting=load.waiting, kv_cache_usage=load.kv_cache_usage,
                                  max_batch_size=load.max_batch_size)
