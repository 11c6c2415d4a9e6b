"""Malformed requests: a real grpc.aio server from start_server, raw bytes from a generic channel call."""

from __future__ import annotations

import logging

import grpc
import pytest
from tokenway.inference.v1 import inference_pb2, inference_pb2_grpc
from tokenway.tokenizer.v1 import tokenizer_pb2, tokenizer_pb2_grpc

from tokenway_common import config, interceptors
from tokenway_common.errors import error_info
from tokenway_common.server import start_server

TOKENIZE = "/tokenway.tokenizer.v1.TokenizerService/Tokenize"
DETOKENIZE_STREAM = "/tokenway.tokenizer.v1.TokenizerService/DetokenizeStream"
GENERATE = "/tokenway.inference.v1.InferenceService/Generate"
GARBAGE = b"\x0a\x10ab"  # field 1, length 16, two bytes follow: truncated
BAD_UTF8_TEXT = b"\x0a\x02\xff\xfe"  # TokenizeRequest.texts / GenerateRequest.request_id = b"\xff\xfe"
START = b"\x0a\x00"  # DetokenizeStreamRequest{start: {}}
BAD_UTF8_STOP = b"\x0a\x04\x1a\x02\xff\xfe"  # DetokenizeStreamRequest{start: {stop: [b"\xff\xfe"]}}


class Tokenizer(tokenizer_pb2_grpc.TokenizerServiceServicer):
    async def Tokenize(self, request, context):
        return tokenizer_pb2.TokenizeResponse()

    async def DetokenizeStream(self, request_iterator, context):
        async for _ in request_iterator:
            yield tokenizer_pb2.DetokenizeStreamResponse(text="ok")


class Inference(inference_pb2_grpc.InferenceServiceServicer):
    async def Generate(self, request, context):
        yield inference_pb2.GenerateResponse(token_ids=[1])


class EchoApp:
    service_names = ("tokenway.tokenizer.v1.TokenizerService", "tokenway.inference.v1.InferenceService")

    def register(self, server):
        tokenizer_pb2_grpc.add_TokenizerServiceServicer_to_server(Tokenizer(), server)
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(Inference(), server)

    async def start(self):
        pass

    async def close(self):
        pass


@pytest.fixture
async def channel():
    running = await start_server(config.ServerSettings(port=0), EchoApp())
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            yield ch
    finally:
        await running.stop()


def _assert_malformed(err: grpc.aio.AioRpcError) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    info = error_info(err)
    assert info is not None and info.reason == "MALFORMED_REQUEST" and info.domain == "tokenway.io"


@pytest.mark.parametrize("body", [GARBAGE, BAD_UTF8_TEXT], ids=["garbage", "bad-utf8"])
async def test_a_malformed_unary_request_is_invalid_argument(channel, body):
    call = channel.unary_unary(TOKENIZE)  # no serializers: the raw bytes go out as they are
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call(body, timeout=10)
    _assert_malformed(e.value)
    assert isinstance(await call(b"", timeout=10), bytes)  # the same method still answers a good request


@pytest.mark.parametrize("body", [GARBAGE, BAD_UTF8_TEXT], ids=["garbage", "bad-utf8"])
async def test_a_malformed_server_streaming_request_is_invalid_argument(channel, body):
    call = channel.unary_stream(GENERATE)(body, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in call:
            pass
    _assert_malformed(e.value)


@pytest.mark.parametrize("body", [GARBAGE, BAD_UTF8_STOP], ids=["garbage", "bad-utf8"])
async def test_a_malformed_message_in_a_client_stream_is_invalid_argument(channel, body):
    call = channel.stream_stream(DETOKENIZE_STREAM)(timeout=10)
    await call.write(START)
    assert tokenizer_pb2.DetokenizeStreamResponse.FromString(await call.read()).text == "ok"  # good messages pass
    await call.write(body)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call.read()
    _assert_malformed(e.value)


async def test_malformed_requests_log_one_line_with_a_count_and_no_traceback(channel, caplog, monkeypatch):
    monkeypatch.setattr(interceptors, "_malformed_log", interceptors._RateLimitedLog(3600))
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary(TOKENIZE)(GARBAGE, timeout=10)
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING  # the first one, then silence for the interval
    assert interceptors._malformed_log.count == 4  # ...counted for the next line
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
