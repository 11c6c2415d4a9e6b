"""The tokenizer service, behind the core's TokenizerPort. Every call carries the request id being served and,
with tracing on, is a CLIENT span whose context the tokenizer continues (tracing.peer_call)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
from tokenway.tokenizer.v1 import tokenizer_pb2 as pb
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc

from tokenway_common import errors, tracing

from ..core.params import Message
from ..core.ports import Detokenized
from . import translated

PEER = "tokenizer"
SERVICE = "tokenway.tokenizer.v1.TokenizerService"


class TokenizerClient:
    def __init__(self, channel: grpc.aio.Channel, short_timeout: float, address: str = "") -> None:
        self.stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
        self.short_timeout = short_timeout
        self.address = address

    def _call(self, rpc: str) -> tuple[tracing.Span, tracing.Metadata]:
        return tracing.peer_call(f"{SERVICE}/{rpc}", self.address)

    def _t(self, timeout: float | None) -> float:
        return self.short_timeout if timeout is None else min(timeout, self.short_timeout)

    async def info(self, timeout: float | None = None, wait_for_ready: bool = False) -> pb.GetTokenizerInfoResponse:
        span, md = self._call("GetTokenizerInfo")
        with translated(PEER), span:
            return await self.stub.GetTokenizerInfo(pb.GetTokenizerInfoRequest(), timeout=timeout,
                                                    wait_for_ready=wait_for_ready, metadata=md)

    async def render_chat(self, messages: list[Message], max_prompt_tokens: int,
                          timeout: float | None) -> tuple[list[int], list[int]]:
        req = pb.RenderChatRequest(messages=[pb.ChatTurn(role=m.role, content=m.content, name=m.name) for m in messages],
                                   max_prompt_tokens=max_prompt_tokens)
        span, md = self._call("RenderChat")
        with _context_errors("messages", max_prompt_tokens), translated(PEER), span:
            resp = await self.stub.RenderChat(req, timeout=self._t(timeout), metadata=md)
            span.set("tokenway.prompt_tokens", len(resp.prompt_token_ids))
        return list(resp.prompt_token_ids), list(resp.stop_token_ids)

    async def tokenize(self, texts: list[str], max_tokens_per_text: int, timeout: float | None) -> list[list[int]]:
        req = pb.TokenizeRequest(texts=texts, add_special_tokens=True, max_tokens_per_text=max_tokens_per_text)
        span, md = self._call("Tokenize")
        with _context_errors("prompt", max_tokens_per_text), translated(PEER), span:
            resp = await self.stub.Tokenize(req, timeout=self._t(timeout), metadata=md)
        return [list(e.token_ids) for e in resp.encodings]

    async def detokenize(self, sequences: list[list[int]], skip_special_tokens: bool, timeout: float | None) -> list[str]:
        req = pb.DetokenizeRequest(sequences=[pb.TokenIds(token_ids=s) for s in sequences],
                                   skip_special_tokens=skip_special_tokens)
        span, md = self._call("Detokenize")
        with translated(PEER), span:
            resp = await self.stub.Detokenize(req, timeout=self._t(timeout), metadata=md)
        return list(resp.texts)

    async def spec(self, timeout: float | None) -> pb.GetTokenizerSpecResponse:
        """The served tokenizer, serialized (tokenizer_json, its sha256, the files' fingerprint)."""
        span, md = self._call("GetTokenizerSpec")
        with translated(PEER), span:
            return await self.stub.GetTokenizerSpec(pb.GetTokenizerSpecRequest(), timeout=timeout, metadata=md)

    async def vocabulary(self, timeout: float | None) -> list[bytes]:
        span, md = self._call("GetVocabulary")
        with translated(PEER), span:
            resp = await self.stub.GetVocabulary(pb.GetVocabularyRequest(), timeout=timeout, metadata=md)
        return list(resp.token_bytes)

    def detokenize_stream(self, prompt_tail: list[int], skip_special_tokens: bool, stop: tuple[str, ...],
                          include_stop: bool, timeout: float | None) -> DetokenizeStream:
        start = pb.DetokenizeStreamStart(prompt_token_ids=prompt_tail, skip_special_tokens=skip_special_tokens,
                                         stop=stop, include_stop_str_in_output=include_stop)
        return DetokenizeStream(self.stub, start, timeout, self.address)


@contextlib.contextmanager
def _context_errors(param: str, context: int) -> Iterator[None]:
    """The tokenizer's CONTEXT_LENGTH_EXCEEDED in the public API's words (no internal field names)."""
    try:
        yield
    except errors.InvalidArgument as e:
        if e.reason != "CONTEXT_LENGTH_EXCEEDED":
            raise
        raise errors.InvalidArgument(
            f"This model's maximum context length is {context} tokens, but the prompt is longer than that",
            reason="CONTEXT_LENGTH_EXCEEDED", field_violations=[(param, f"more than {context} tokens")],
            metadata={"param": param, "context_length": str(context)}) from None


class DetokenizeStream:
    """One generation's server-side detokenizer: one response per pushed chunk."""

    def __init__(self, stub: tokenizer_pb2_grpc.TokenizerServiceStub, start: pb.DetokenizeStreamStart,
                 timeout: float | None, address: str = "") -> None:
        self._stub, self._start, self._timeout, self._address = stub, start, timeout, address
        self._call: grpc.aio.StreamStreamCall | None = None
        self._span = tracing.NOOP

    async def push(self, token_ids: tuple[int, ...], last: bool) -> Detokenized:
        with translated(PEER):
            try:
                if self._call is None:
                    self._span, md = tracing.peer_call(f"{SERVICE}/DetokenizeStream", self._address)
                    self._call = self._stub.DetokenizeStream(timeout=self._timeout, metadata=md)
                    await self._call.write(pb.DetokenizeStreamRequest(start=self._start))
                await self._call.write(pb.DetokenizeStreamRequest(chunk=pb.DetokenizeStreamChunk(token_ids=token_ids,
                                                                                                   last=last)))
                resp = await self._call.read()
            except BaseException as exc:
                self._span.end(exc)
                raise
        if resp is grpc.aio.EOF:
            raise errors.Unavailable("the tokenizer closed the detokenize stream early", reason="DETOKENIZE_STREAM_CLOSED")
        return Detokenized(resp.text, resp.num_tokens, resp.matched_stop if resp.HasField("matched_stop") else None,
                           tuple(resp.token_texts))

    async def aclose(self) -> None:
        self._span.end()
        if self._call is not None and not self._call.done():
            self._call.cancel()
