"""Proto <-> domain conversion shared by the chat and completion servicers."""

from __future__ import annotations

from google.protobuf import struct_pb2
from tokenway.v1 import common_pb2

from tokenway_common import errors

from ..core.params import GenerationParams, Message
from ..core.pipeline import ChoiceEvent, Usage


def _opt(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


def generation_params(req, *, streaming: bool, max_tokens: int | None, logprobs: int | None) -> GenerationParams:
    """Reads the knobs common to every generation request; unset stays None."""
    if req.HasField("stream") and req.stream and not streaming:
        raise errors.InvalidArgument(
            "stream=true must use the streaming RPC (REST clients: the gateway routes it)", reason="INVALID_REQUEST",
            field_violations=[("stream", "must be false or unset on the unary RPC")], metadata={"param": "stream"})
    if req.HasField("stream_options") and not streaming:
        raise errors.InvalidArgument("stream_options is only allowed when streaming", reason="INVALID_REQUEST",
                                     field_violations=[("stream_options", "only allowed with stream=true")],
                                     metadata={"param": "stream_options"})
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=_opt(req, "temperature"), top_p=_opt(req, "top_p"), top_k=_opt(req, "top_k"),
        min_p=_opt(req, "min_p"), n=_opt(req, "n"), seed=_opt(req, "seed"), stop=tuple(req.stop),
        presence_penalty=_opt(req, "presence_penalty"), frequency_penalty=_opt(req, "frequency_penalty"),
        repetition_penalty=_opt(req, "repetition_penalty"), logit_bias=dict(req.logit_bias), logprobs=logprobs,
        ignore_eos=req.ignore_eos, min_tokens=_opt(req, "min_tokens"),
        include_usage=streaming and req.stream_options.include_usage,
        include_stop_str_in_output=req.include_stop_str_in_output, stop_token_ids=tuple(req.stop_token_ids),
        skip_special_tokens=req.skip_special_tokens if req.HasField("skip_special_tokens") else True,
        user=_opt(req, "user"))


def chat_params(req, *, streaming: bool) -> tuple[list[Message], GenerationParams, str]:
    messages = [Message(m.role, m.content, m.name if m.HasField("name") else None) for m in req.messages]
    if req.HasField("max_completion_tokens"):
        max_tokens, field = req.max_completion_tokens, "max_completion_tokens"
    else:
        max_tokens, field = _opt(req, "max_tokens"), "max_tokens"
    logprobs = None
    if req.logprobs:
        logprobs = req.top_logprobs if req.HasField("top_logprobs") else 0
    elif req.HasField("top_logprobs"):
        raise errors.InvalidArgument("top_logprobs requires logprobs=true", reason="INVALID_REQUEST",
                                     field_violations=[("top_logprobs", "requires logprobs=true")],
                                     metadata={"param": "top_logprobs"})
    return messages, generation_params(req, streaming=streaming, max_tokens=max_tokens, logprobs=logprobs), field


def completion_params(req, *, streaming: bool) -> GenerationParams:
    return generation_params(req, streaming=streaming, max_tokens=_opt(req, "max_tokens"), logprobs=_opt(req, "logprobs"))


def chunk_factory(cls, obj: str, prepared, model: str, fingerprint: str):
    """Makes empty stream chunks carrying the fields every chunk of one request repeats."""
    def make():
        return cls(id=prepared.job.request_id, object=obj, created=prepared.created, model=model,
                   system_fingerprint=fingerprint)
    return make


async def chunked(events, make_chunk, include_usage: bool):
    """Pairs each choice event with a fresh chunk to fill, and turns the final Usage into a usage
    chunk (choices empty) when the caller asked for it: (event, chunk), or (None, usage chunk)."""
    async for ev in events:
        if isinstance(ev, ChoiceEvent):
            yield ev, make_chunk()
        elif include_usage:
            out = make_chunk()
            out.usage.CopyFrom(usage(ev))
            yield None, out


def usage(u: Usage) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                            total_tokens=u.total_tokens)


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", errors="surrogatepass"))


def chat_logprobs(entries) -> common_pb2.ChatLogprobs:
    return common_pb2.ChatLogprobs(content=[
        common_pb2.TokenLogprob(token=e.token, logprob=e.logprob, bytes=_bytes(e.token),
                                top_logprobs=[common_pb2.TopLogprob(token=t, logprob=lp, bytes=_bytes(t)) for t, lp in e.top])
        for e in entries])


def completion_logprobs(entries, offset: int) -> common_pb2.CompletionLogprobs:
    out = common_pb2.CompletionLogprobs()
    for e in entries:
        out.tokens.append(e.token)
        out.token_logprobs.append(e.logprob)
        top = struct_pb2.Struct()
        for t, lp in e.top:
            top[t] = lp
        out.top_logprobs.append(top)
        out.text_offset.append(offset)
        offset += len(e.token)
    return out
