"""Proto <-> domain conversion shared by the chat and completion servicers."""

from __future__ import annotations

from google.protobuf import struct_pb2
from tokenway.v1 import common_pb2

from tokenway_common import errors

from ..core.params import GenerationParams, Message, Violations
from ..core.pipeline import ChoiceEvent, Usage

_PROMPT_SHAPES = "a string, a list of strings, a list of token ids, or a list of lists of token ids"


def _opt(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


# OpenAI request fields tokenway does not implement: declared in the protos so that they are refused,
# never silently ignored (null is the same as absent).
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "response_format", "audio", "modalities",
               "prediction", "web_search_options", "parallel_tool_calls", "reasoning_effort", "store", "metadata",
               "service_tier", "best_of", "suffix")


def _refuse_unsupported(req) -> None:
    fields = req.DESCRIPTOR.fields_by_name
    v = Violations()
    for name in UNSUPPORTED:
        if name not in fields or not req.HasField(name):
            continue
        value = getattr(req, name)
        kind = value.WhichOneof("kind")
        if kind in (None, "null_value") or (name == "best_of" and kind == "number_value" and value.number_value == 1):
            continue
        v.add(name, "is not supported by this server")
    if v.items:
        v.raise_if_any("UNSUPPORTED_PARAMETER")


def generation_params(req, *, streaming: bool, max_tokens: int | None, logprobs: int | None) -> GenerationParams:
    """Reads the knobs common to every generation request; unset stays None."""
    _refuse_unsupported(req)
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


def _content(value: struct_pb2.Value, field: str, v: Violations) -> str:
    """A message's content as OpenAI sends it: a string, or a list of text parts (joined by newlines, as vLLM
    does). Other part types (images, audio, files) are not supported: a clear error, never ignored."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind != "list_value":
        v.add(field, "must be a string or a list of content parts")
        return ""
    texts = []
    for j, part in enumerate(value.list_value.values):
        fields = part.struct_value.fields if part.WhichOneof("kind") == "struct_value" else None
        if fields is None:
            v.add(f"{field}[{j}]", 'must be a content part object, e.g. {"type": "text", "text": "..."}')
            continue
        ptype = fields["type"].string_value if "type" in fields else ""
        if ptype != "text":
            v.add(f"{field}[{j}].type", f"content parts of type {errors.clip(ptype, 40)!r} are not supported; only 'text'")
        elif "text" not in fields or fields["text"].WhichOneof("kind") != "string_value":
            v.add(f"{field}[{j}].text", "must be a string")
        else:
            texts.append(fields["text"].string_value)
    return "\n".join(texts)


def chat_messages(req) -> list[Message]:
    v = Violations()
    messages = []
    for i, m in enumerate(req.messages):
        if not m.HasField("content"):
            v.add(f"messages[{i}].content", "is required")
            text = ""
        else:
            text = _content(m.content, f"messages[{i}].content", v)
        messages.append(Message(m.role, text, m.name if m.HasField("name") else None))
    v.raise_if_any()
    return messages


def _token_ids(values, field: str, max_len: int, v: Violations) -> list[int]:
    if len(values) > max_len:  # cannot fit: refuse before converting a huge list
        raise errors.InvalidArgument(
            f"This model's maximum context length is {max_len} tokens, but the prompt has {len(values)} tokens",
            reason="CONTEXT_LENGTH_EXCEEDED", field_violations=[(field, f"{len(values)} tokens do not fit in {max_len}")],
            metadata={"param": "prompt", "prompt_tokens": str(len(values)), "context_length": str(max_len)})
    ids = []
    for x in values:
        n = x.number_value if x.WhichOneof("kind") == "number_value" else -1.0
        if not (n.is_integer() and 0 <= n < 2**31):
            v.add(field, "must hold only token ids (non-negative integers)")
            return []
        ids.append(int(n))
    return ids


def largest_text_prompt_bytes(req) -> int:
    """The serialized size of the largest text prompt (0 for token ids): a bound known before decoding."""
    value = req.prompt
    if value.WhichOneof("kind") == "string_value":
        return value.ByteSize()
    return max((x.ByteSize() for x in value.list_value.values if x.WhichOneof("kind") == "string_value"), default=0)


def completion_prompts(req, context_length: int) -> tuple[list[str], list[list[int]]]:
    """The prompts of a completion request: texts, or token-id lists (OpenAI's four shapes, plus
    tokenway's typed prompt_token_ids for gRPC callers)."""
    v = Violations()
    texts: list[str] = []
    id_lists: list[list[int]] = []
    if req.HasField("prompt"):
        value = req.prompt
        kind = value.WhichOneof("kind")
        items = value.list_value.values if kind == "list_value" else ()
        kinds = {x.WhichOneof("kind") for x in items}
        if kind == "string_value":
            texts = [value.string_value]
        elif kind == "list_value" and not items:
            v.add("prompt", "must not be an empty list")
        elif kinds == {"string_value"}:
            texts = [x.string_value for x in items]
        elif kinds == {"number_value"}:
            id_lists = [_token_ids(items, "prompt", context_length, v)]
        elif kinds == {"list_value"}:
            id_lists = [_token_ids(x.list_value.values, f"prompt[{i}]", context_length, v) for i, x in enumerate(items)]
        else:
            v.add("prompt", f"must be {_PROMPT_SHAPES}")
    if req.prompt_token_ids:
        if req.HasField("prompt"):
            v.add("prompt_token_ids", "must not be set together with prompt")
        id_lists = [list(req.prompt_token_ids)]
    if not req.HasField("prompt") and not req.prompt_token_ids:
        v.add("prompt", f"is required: {_PROMPT_SHAPES}")
    v.raise_if_any()
    return texts, id_lists


def chat_params(req, *, streaming: bool) -> tuple[list[Message], GenerationParams, str]:
    messages = chat_messages(req)
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


async def chunked(events, make_chunk, include_usage: bool, on_usage=None, choices: int = 0):
    """Pairs each choice event with a fresh chunk to fill, and turns the final Usage into a usage
    chunk (choices empty) when the caller asked for it: (event, chunk), or (None, usage chunk).
    `on_usage(usage, held)` is awaited before the stream goes on past the Usage: with `choices` (how many
    the request has) the event that finishes the last of them (`held`) is held back until then, so that the
    request's record is durable before the client sees its answer end."""
    finished, held = 0, None
    async for ev in events:
        if isinstance(ev, ChoiceEvent):
            finished += ev.finish_reason is not None
            if on_usage is not None and choices and finished == choices:
                held = ev
            else:
                yield ev, make_chunk()
            continue
        if on_usage is not None:
            await on_usage(ev, held)
        if held is not None:
            yield held, make_chunk()
            held = None
        if include_usage:
            out = make_chunk()
            out.usage.CopyFrom(usage(ev))
            yield None, out


def usage(u: Usage) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                            total_tokens=u.total_tokens,
                            prompt_tokens_details=common_pb2.PromptTokensDetails(cached_tokens=u.cached_tokens))


def chat_logprobs(entries) -> common_pb2.ChatLogprobs:
    return common_pb2.ChatLogprobs(content=[
        common_pb2.TokenLogprob(token=e.token, logprob=e.logprob, bytes=list(e.bytes),
                                top_logprobs=[common_pb2.TopLogprob(token=t, logprob=lp, bytes=list(b)) for t, lp, b in e.top])
        for e in entries])


def completion_logprobs(entries, offset: int) -> common_pb2.CompletionLogprobs:
    out = common_pb2.CompletionLogprobs()
    for e in entries:
        out.tokens.append(e.token)
        out.token_logprobs.append(e.logprob)
        top = struct_pb2.Struct()
        for t, lp, _ in e.top:
            top[t] = lp
        out.top_logprobs.append(top)
        out.text_offset.append(offset)
        offset += len(e.token)
    return out
