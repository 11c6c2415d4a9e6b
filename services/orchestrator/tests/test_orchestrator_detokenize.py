"""Detokenizing in the orchestrator's process gives exactly the answers the tokenizer service's stream gives."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from tokenway.tokenizer.v1 import tokenizer_pb2, tokenizer_pb2_grpc
from tokenway.v1 import chat_pb2, chat_pb2_grpc, completion_pb2, completion_pb2_grpc

from tokenway_common import errors
from tokenway_common.server import start_server
from tokenway_orchestrator.app import OrchestratorApp
from tokenway_orchestrator.core.detokenize import LocalDetokenizer
from tokenway_orchestrator.registry.registry import local_detokenizer
from tokenway_text import Detokenizer, spec_digest

MODEL = "tokenway-tiny"


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


@pytest.fixture(scope="module")
async def remote(stack):
    """A second orchestrator on the same peers that detokenizes through the tokenizer service."""
    s = stack.settings(detokenize="remote")
    server = await start_server(s, OrchestratorApp(s))
    yield server
    await server.stop()


async def _stream(address: str, **kw) -> tuple[list[str], list, object]:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = chat_pb2_grpc.ChatServiceStub(ch)
        req = chat_pb2.StreamChatCompletionRequest(
            model=MODEL, stream_options={"include_usage": True}, temperature=0, ignore_eos=True,
            messages=[chat_pb2.ChatRequestMessage(role="user", content=text_value(kw.pop("prompt")))], **kw)
        deltas, logprobs, usage, finish = [], [], None, None
        async for chunk in stub.StreamChatCompletion(req, timeout=120):
            if chunk.HasField("usage"):
                usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for c in chunk.choices:
                deltas.append(c.delta.content)
                logprobs += [(t.token, list(t.bytes), [(a.token, list(a.bytes)) for a in t.top_logprobs])
                             for t in c.logprobs.content]
                if c.HasField("finish_reason"):
                    finish = (c.finish_reason, c.stop_reason if c.HasField("stop_reason") else None)
        return deltas, logprobs, (usage, finish)


PROMPTS = ["Tell me about the fast model server.", "日本語 and emoji 🎉 then more words", "a\nb\tc and so on"]


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_local_and_remote_detokenization_answer_alike(stack, remote, prompt):
    plain_local = await _stream(stack.orchestrator.address, prompt=prompt, max_tokens=48)
    plain_remote = await _stream(remote.address, prompt=prompt, max_tokens=48)
    assert "".join(plain_local[0]) == "".join(plain_remote[0]) and plain_local[2] == plain_remote[2]
    text = "".join(plain_local[0])
    # a stop string from the middle of the answer, with logprobs: the cut, the billing and every token's text
    stop = text[len(text) // 2:len(text) // 2 + 3]
    kw = dict(max_tokens=48, stop=[stop, "never-there"], logprobs=True, top_logprobs=3)
    local = await _stream(stack.orchestrator.address, prompt=prompt, **kw)
    far = await _stream(remote.address, prompt=prompt, **kw)
    assert local[1] == far[1] and local[2] == far[2]
    assert "".join(local[0]) == "".join(far[0]) == text[:text.find(stop)]
    assert local[2][1] == ("stop", stop)


async def test_completions_with_token_id_prompts_decode_alike(stack, remote):
    async def run(address: str) -> tuple[str, int]:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = completion_pb2_grpc.CompletionServiceStub(ch)
            req = completion_pb2.StreamCompletionRequest(
                model=MODEL, prompt=struct_pb2.Value(list_value=struct_pb2.ListValue(
                    values=[struct_pb2.Value(number_value=i) for i in (5, 300, 1200, 40)])),
                max_tokens=32, temperature=0, ignore_eos=True, skip_special_tokens=False)
            return "".join([c.text async for chunk in stub.StreamCompletion(req, timeout=120) for c in chunk.choices])
    assert await run(stack.orchestrator.address) == await run(remote.address)


async def test_the_tokenizer_spec_rebuilds_the_served_tokenizer(stack):
    async with grpc.aio.insecure_channel(stack.tokenizer.address) as ch:
        stub = tokenizer_pb2_grpc.TokenizerServiceStub(ch)
        spec = await stub.GetTokenizerSpec(tokenizer_pb2.GetTokenizerSpecRequest(), timeout=30)
        info = await stub.GetTokenizerInfo(tokenizer_pb2.GetTokenizerInfoRequest(), timeout=30)
        text = "Hello, wörld 日本 🎉 <|im_end|>"
        enc = await stub.Tokenize(tokenizer_pb2.TokenizeRequest(texts=[text]), timeout=30)
    assert spec_digest(spec.tokenizer_json) == spec.tokenizer_json_sha256 and spec.fingerprint == info.fingerprint
    rebuilt = Detokenizer.from_json(spec.tokenizer_json)
    assert rebuilt.vocab_size == info.vocab_size
    assert rebuilt.rust.encode(text, add_special_tokens=False).ids == list(enc.encodings[0].token_ids)


class _Spec:
    def __init__(self, spec) -> None:
        self._spec = spec

    async def spec(self, timeout):
        return self._spec


@pytest.mark.parametrize("damage", ["digest", "fingerprint"])
async def test_a_damaged_or_foreign_tokenizer_spec_is_never_used(stack, damage):
    async with grpc.aio.insecure_channel(stack.tokenizer.address) as ch:
        stub = tokenizer_pb2_grpc.TokenizerServiceStub(ch)
        spec = await stub.GetTokenizerSpec(tokenizer_pb2.GetTokenizerSpecRequest(), timeout=30)
        info = await stub.GetTokenizerInfo(tokenizer_pb2.GetTokenizerInfoRequest(), timeout=30)
    if damage == "digest":
        spec.tokenizer_json = spec.tokenizer_json.replace('"', "'", 1)
    else:
        spec.fingerprint = "0" * 64
    with pytest.raises(RuntimeError, match="damaged" if damage == "digest" else "fingerprint"):
        await local_detokenizer(_Spec(spec), info, 30)


async def test_an_undecodable_engine_token_is_an_internal_error_not_the_callers():
    from tokenway_tokenizer.core import Tokenizer

    tok = Tokenizer.load(str(__import__("pathlib").Path(__file__).resolve().parents[3] / ".tokenway" / "models" / "tokenway-tiny"))
    stream = LocalDetokenizer(tok.detokenizer).detokenize_stream([], True, (), False, None)
    with pytest.raises(errors.Internal):
        await stream.push((tok.vocab_size + 5,), False)
