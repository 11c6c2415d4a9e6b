"""TokenizerService over a real in-process grpc.aio server on port 0, with real stubs."""

from __future__ import annotations

import grpc
import pytest
from tokenway.tokenizer.v1 import tokenizer_pb2 as pb
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc as pb_grpc
from tokenway_common.errors import error_info, status_details
from tokenway_common.server import start_server
from google.rpc import error_details_pb2

from tokenway_tokenizer.app import TokenizerApp
from tokenway_tokenizer.config import TokenizerSettings


@pytest.fixture(scope="module")
async def stub(model_dir):
    running = await start_server(TokenizerSettings(port=0, model=model_dir), TokenizerApp(TokenizerSettings(port=0, model=model_dir)))
    channel = grpc.aio.insecure_channel(running.address)
    yield pb_grpc.TokenizerServiceStub(channel)
    await channel.close()
    await running.stop(0)


def violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    for any_ in status_details(err).details:
        if any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            any_.Unpack(br)
            return [(v.field, v.description) for v in br.field_violations]
    return []


def start(**kw) -> pb.DetokenizeStreamRequest:
    return pb.DetokenizeStreamRequest(start=pb.DetokenizeStreamStart(**kw))


def chunk(ids, last=False) -> pb.DetokenizeStreamRequest:
    return pb.DetokenizeStreamRequest(chunk=pb.DetokenizeStreamChunk(token_ids=ids, last=last))


async def test_tokenize_and_detokenize(stub):
    enc = await stub.Tokenize(pb.TokenizeRequest(texts=["Hello, world!", "日本"], return_offsets=True), timeout=10)
    assert [len(e.offsets) for e in enc.encodings] == [len(e.token_ids) for e in enc.encodings]
    dec = await stub.Detokenize(pb.DetokenizeRequest(sequences=[pb.TokenIds(token_ids=e.token_ids) for e in enc.encodings]),
                                timeout=10)
    assert list(dec.texts) == ["Hello, world!", "日本"]


async def test_validation_errors_carry_reasons(stub):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Tokenize(pb.TokenizeRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(e.value).reason == "EMPTY_BATCH"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Detokenize(pb.DetokenizeRequest(sequences=[pb.TokenIds(token_ids=[5, 1 << 20])]), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(e.value).reason == "TOKEN_ID_OUT_OF_RANGE" and error_info(e.value).domain == "tokenway.io"
    assert violations(e.value)[0][0] == "sequences[0].token_ids[1]"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.RenderChat(pb.RenderChatRequest(messages=[pb.ChatTurn(role="robot", content="x")]), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(e.value).reason == "UNKNOWN_ROLE"
    assert violations(e.value)[0][0] == "messages[0].role"


async def test_render_chat(stub):
    out = await stub.RenderChat(pb.RenderChatRequest(messages=[pb.ChatTurn(role="user", content="Hi")], return_text=True),
                                timeout=10)
    assert list(out.prompt_token_ids).count(0) == 1 and out.prompt_token_ids[0] == 0
    assert out.prompt_text.endswith("<|im_start|>assistant\n") and list(out.stop_token_ids) == [1, 4]
    no_prompt = await stub.RenderChat(pb.RenderChatRequest(messages=[pb.ChatTurn(role="user", content="Hi")],
                                                           add_generation_prompt=False), timeout=10)
    assert no_prompt.prompt_text == "" and len(no_prompt.prompt_token_ids) < len(out.prompt_token_ids)


async def test_info(stub):
    info = await stub.GetTokenizerInfo(pb.GetTokenizerInfoRequest(), timeout=10)
    assert info.vocab_size > 0 and len(info.fingerprint) == 64 and list(info.all_special_ids) == [0, 1, 2, 3, 4]
    assert {s.name for s in info.special_tokens} == {"bos_token", "eos_token", "pad_token"}


async def test_stream_pipelined_one_response_per_chunk_with_stop(stub):
    enc = await stub.Tokenize(pb.TokenizeRequest(texts=["The answer is 42. END of story."]), timeout=10)
    ids = list(enc.encodings[0].token_ids)
    requests = [start(stop=["END"], prompt_token_ids=[0, 3])] + [chunk([i]) for i in ids] + [chunk([], last=True)]
    call = stub.DetokenizeStream(iter(requests), timeout=10)  # all written up front: pipelined
    responses = [r async for r in call]
    assert len(responses) == len(ids) + 1
    assert "".join(r.text for r in responses) == "The answer is 42. "
    stopped = [r for r in responses if r.HasField("matched_stop")]
    assert stopped[0].matched_stop == "END"
    assert all(r.num_tokens == stopped[0].num_tokens and r.text == "" for r in stopped)
    assert stopped[0].num_tokens < len(ids)


async def test_stream_interactive_lone_bytes_flow(stub):
    call = stub.DetokenizeStream(timeout=10)
    await call.write(start(skip_special_tokens=False))
    lone = (await stub.Tokenize(pb.TokenizeRequest(texts=["\u0080"]), timeout=10)).encodings[0].token_ids
    # "\u0080" is two bytes; its second token alone is a lone continuation byte.
    for _ in range(5):
        await call.write(chunk([lone[-1]]))
        r = await call.read()
        assert r.text == "\ufffd"
    await call.write(chunk([1], last=True))
    r = await call.read()
    assert r.text == "<|end_of_text|>" and r.num_tokens == 6 and list(r.token_texts) == ["<|end_of_text|>"]
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF


async def test_stream_must_begin_with_start(stub):
    call = stub.DetokenizeStream(iter([chunk([5])]), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in call:
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(e.value).reason == "STREAM_NOT_STARTED"


async def test_stream_bad_id_mid_stream(stub):
    call = stub.DetokenizeStream(iter([start(), chunk([5]), chunk([5, -3])]), timeout=10)
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for r in call:
            got.append(r)
    assert len(got) == 1 and e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(e.value).reason == "TOKEN_ID_OUT_OF_RANGE"
    assert violations(e.value)[0][0] == "chunk.token_ids[1]"
