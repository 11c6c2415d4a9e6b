"""TokenizerService: translates messages to core calls and back; no logic of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
from tokenway_common import errors
from tokenway.tokenizer.v1 import tokenizer_pb2 as pb
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc as pb_grpc

from ..core import ChatMessage, StreamOptions, Tokenizer


class TokenizerServicer(pb_grpc.TokenizerServiceServicer):
    def __init__(self, tokenizer: Callable[[], Tokenizer]) -> None:
        self._tokenizer = tokenizer  # a getter: the app loads the tokenizer after registering

    @property
    def core(self) -> Tokenizer:
        return self._tokenizer()

    async def Tokenize(self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext) -> pb.TokenizeResponse:
        limit = request.max_tokens_per_text if request.HasField("max_tokens_per_text") else None
        encs = await self.core.encode(list(request.texts), request.add_special_tokens, request.return_offsets, limit)
        return pb.TokenizeResponse(encodings=[
            pb.Encoding(token_ids=e.token_ids, offsets=[pb.Offset(start=s, end=t) for s, t in e.offsets or ()])
            for e in encs])

    async def Detokenize(self, request: pb.DetokenizeRequest, context: grpc.aio.ServicerContext) -> pb.DetokenizeResponse:
        texts = await self.core.decode([list(s.token_ids) for s in request.sequences], request.skip_special_tokens)
        return pb.DetokenizeResponse(texts=texts)

    async def RenderChat(self, request: pb.RenderChatRequest, context: grpc.aio.ServicerContext) -> pb.RenderChatResponse:
        messages = [ChatMessage(m.role, m.content, m.name if m.HasField("name") else None) for m in request.messages]
        add_prompt = request.add_generation_prompt if request.HasField("add_generation_prompt") else True
        limit = request.max_prompt_tokens if request.HasField("max_prompt_tokens") else None
        out = await self.core.render_chat(messages, add_prompt, limit)
        return pb.RenderChatResponse(prompt_token_ids=out.prompt_token_ids, stop_token_ids=out.stop_token_ids,
                                     prompt_text=out.prompt_text if request.return_text else "")

    async def DetokenizeStream(self, request_iterator: AsyncIterator[pb.DetokenizeStreamRequest],
                               context: grpc.aio.ServicerContext) -> AsyncIterator[pb.DetokenizeStreamResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        if first.WhichOneof("kind") != "start":
            raise errors.InvalidArgument("the first message of a stream must be a start", reason="STREAM_NOT_STARTED",
                                         field_violations=[("start", "required in the first message")])
        start = first.start
        stream = self.core.open_stream(StreamOptions(
            prompt_token_ids=list(start.prompt_token_ids),
            skip_special_tokens=start.skip_special_tokens if start.HasField("skip_special_tokens") else True,
            stop=list(start.stop), include_stop_str_in_output=start.include_stop_str_in_output))
        async for request in requests:
            if request.WhichOneof("kind") != "chunk":
                raise errors.InvalidArgument("only the first message of a stream may be a start",
                                             reason="STREAM_ALREADY_STARTED",
                                             field_violations=[("chunk", "required after the first message")])
            delta = stream.push(list(request.chunk.token_ids), request.chunk.last)
            yield pb.DetokenizeStreamResponse(text=delta.text, num_tokens=delta.num_tokens,
                                              matched_stop=delta.matched_stop, token_texts=delta.token_texts)

    async def GetTokenizerInfo(self, request: pb.GetTokenizerInfoRequest,
                               context: grpc.aio.ServicerContext) -> pb.GetTokenizerInfoResponse:
        info = self.core.info()
        return pb.GetTokenizerInfoResponse(
            vocab_size=info.vocab_size, chat_template=info.chat_template, fingerprint=info.fingerprint,
            model_max_length=info.model_max_length, name=info.name, all_special_ids=info.all_special_ids,
            special_tokens=[pb.SpecialToken(name=s.name, content=s.content, id=s.id) for s in info.special_tokens],
            max_chars_per_token=info.max_chars_per_token)

    async def GetVocabulary(self, request: pb.GetVocabularyRequest,
                            context: grpc.aio.ServicerContext) -> pb.GetVocabularyResponse:
        table = await self.core.vocabulary()
        return pb.GetVocabularyResponse(token_bytes=table.token_bytes, fingerprint=table.fingerprint)

    async def GetTokenizerSpec(self, request: pb.GetTokenizerSpecRequest,
                               context: grpc.aio.ServicerContext) -> pb.GetTokenizerSpecResponse:
        spec = self.core.spec()
        return pb.GetTokenizerSpecResponse(tokenizer_json=spec.tokenizer_json, tokenizer_json_sha256=spec.sha256,
                                           fingerprint=spec.fingerprint)
