"""The tokenizer service, behind the core's TokenizerPort."""

from __future__ import annotations

import grpc
from tokenway.tokenizer.v1 import tokenizer_pb2 as pb
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc

from ..core.params import Message
from ..core.ports import Detokenized
from . import translated

PEER = "tokenizer"


class TokenizerClient:
    def __init__(self, channel: grpc.aio.Channel, short_timeout: float) -> None:
        self.stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
        self.short_timeout = short_timeout

    def _t(self, timeout: float | None) -> float:
        return self.short_timeout if timeout is None else min(timeout, self.short_timeout)

    async def info(self, timeout: float | None = None, wait_for_ready: bool = False) -> pb.GetTokenizerInfoResponse:
        with translated(PEER):
            return await self.stub.GetTokenizerInfo(pb.GetTokenizerInfoRequest(), timeout=timeout,
                                                    wait_for_ready=wait_for_ready)

    async def render_chat(self, messages: list[Message], timeout: float | None) -> tuple[list[int], list[int]]:
        req = pb.RenderChatRequest(messages=[pb.ChatTurn(role=m.role, content=m.content, name=m.name) for m in messages])
        with translated(PEER):
            resp = await self.stub.RenderChat(req, timeout=self._t(timeout))
        return list(resp.prompt_token_ids), list(resp.stop_token_ids)

    async def tokenize(self, texts: list[str], timeout: float | None) -> list[list[int]]:
        with translated(PEER):
            resp = await self.stub.Tokenize(pb.TokenizeRequest(texts=texts, add_special_tokens=True), timeout=self._t(timeout))
        return [list(e.token_ids) for e in resp.encodings]

    async def detokenize(self, sequences: list[list[int]], skip_special_tokens: bool, timeout: float | None) -> list[str]:
        req = pb.DetokenizeRequest(sequences=[pb.TokenIds(token_ids=s) for s in sequences],
                                   skip_special_tokens=skip_special_tokens)
        with translated(PEER):
            resp = await self.stub.Detokenize(req, timeout=self._t(timeout))
        return list(resp.texts)

    def detokenize_stream(self, prompt_tail: list[int], skip_special_tokens: bool, stop: tuple[str, ...],
                          include_stop: bool, timeout: float | None) -> DetokenizeStream:
        start = pb.DetokenizeStreamStart(prompt_token_ids=prompt_tail, skip_special_tokens=skip_special_tokens,
                                         stop=stop, include_stop_str_in_output=include_stop)
        return DetokenizeStream(self.stub, start, timeout)


class DetokenizeStream:
    """One generation's server-side detokenizer: one response per pushed chunk."""

    def __init__(self, stub: tokenizer_pb2_grpc.TokenizerServiceStub, start: pb.DetokenizeStreamStart,
                 timeout: float | None) -> None:
        self._stub, self._start, self._timeout = stub, start, timeout
        self._call: grpc.aio.StreamStreamCall | None = None

    async def push(self, token_ids: tuple[int, ...], last: bool) -> Detokenized:
        with translated(PEER):
            if self._call is None:
                self._call = self._stub.DetokenizeStream(timeout=self._timeout)
                await self._call.write(pb.DetokenizeStreamRequest(start=self._start))
            await self._call.write(pb.DetokenizeStreamRequest(chunk=pb.DetokenizeStreamChunk(token_ids=token_ids, last=last)))
            resp = await self._call.read()
        if resp is grpc.aio.EOF:
            from tokenway_common import errors

            raise errors.Unavailable("the tokenizer closed the detokenize stream early", reason="DETOKENIZE_STREAM_CLOSED")
        return Detokenized(resp.text, resp.num_tokens, resp.matched_stop if resp.HasField("matched_stop") else None)

    async def aclose(self) -> None:
        if self._call is not None and not self._call.done():
            self._call.cancel()
