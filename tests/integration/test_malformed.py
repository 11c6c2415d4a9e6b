"""Malformed request bytes to every service process: INVALID_ARGUMENT/MALFORMED_REQUEST, no traceback logged."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tokenway.tokenizer.v1 import tokenizer_pb2

from tokenway_common.errors import error_info

pytestmark = pytest.mark.integration
GARBAGE = b"\x0a\x10ab"  # field 1 says 16 bytes follow; 2 do
BAD_UTF8 = b"\x0a\x02\xff\xfe"  # field 1 (a string in each request below) = b"\xff\xfe"
BAD_UTF8_ROLE = b"\x12\x04\x0a\x02\xff\xfe"  # messages[0].role = b"\xff\xfe"
START = b"\x0a\x00"  # DetokenizeStreamRequest{start: {}}
BAD_UTF8_STOP = b"\x0a\x04\x1a\x02\xff\xfe"  # DetokenizeStreamRequest{start: {stop: [b"\xff\xfe"]}}

UNARY = [
    ("tokenizer", "/tokenway.tokenizer.v1.TokenizerService/Tokenize", GARBAGE),
    ("tokenizer", "/tokenway.tokenizer.v1.TokenizerService/Tokenize", BAD_UTF8),  # TokenizeRequest.texts
    ("inference", "/tokenway.inference.v1.InferenceService/Abort", BAD_UTF8),  # AbortRequest.request_id
    ("orchestrator", "/tokenway.v1.ChatService/CreateChatCompletion", GARBAGE),
    ("orchestrator", "/tokenway.v1.ChatService/CreateChatCompletion", BAD_UTF8),  # model
    ("orchestrator", "/tokenway.v1.ChatService/CreateChatCompletion", BAD_UTF8_ROLE),
]
SERVER_STREAMING = [
    ("inference", "/tokenway.inference.v1.InferenceService/Generate", GARBAGE),
    ("inference", "/tokenway.inference.v1.InferenceService/Generate", BAD_UTF8),  # request_id
    ("orchestrator", "/tokenway.v1.ChatService/StreamChatCompletion", BAD_UTF8_ROLE),
    ("orchestrator", "/tokenway.v1.CompletionService/StreamCompletion", GARBAGE),
]


@pytest.fixture
def logs(suite):
    """The service logs written during the test (the session suite's run dir)."""
    run = Path(suite.env["TOKENWAY_RUN_DIR"])
    sizes = {f: f.stat().st_size for f in run.glob("*.log")}

    def written() -> dict[str, str]:
        return {f.stem: f.read_bytes()[sizes.get(f, 0):].decode(errors="replace") for f in run.glob("*.log")}
    return written


def _assert_malformed(err: grpc.RpcError) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    info = error_info(err)
    assert info is not None and info.reason == "MALFORMED_REQUEST", err


def test_malformed_requests_to_every_service_are_invalid_argument_without_tracebacks(suite, logs):
    for service, method, body in UNARY:
        with suite.channel(getattr(suite, service)) as ch, pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(method)(body, timeout=30)  # no serializer: the bytes go out as they are
        _assert_malformed(e.value)
    for service, method, body in SERVER_STREAMING:
        with suite.channel(getattr(suite, service)) as ch, pytest.raises(grpc.RpcError) as e:
            list(ch.unary_stream(method)(body, timeout=30))
        _assert_malformed(e.value)
    for bad in (GARBAGE, BAD_UTF8_STOP):  # a bidi stream: a good first message, then a bad one
        with suite.channel(suite.tokenizer) as ch:
            call = ch.stream_stream("/tokenway.tokenizer.v1.TokenizerService/DetokenizeStream")(
                iter([START, bad]), timeout=30)
            with pytest.raises(grpc.RpcError) as e:
                for raw in call:
                    tokenizer_pb2.DetokenizeStreamResponse.FromString(raw)
            _assert_malformed(e.value)
    written = logs()
    assert not [name for name, text in written.items() if "Traceback" in text], written
    for service in ("tokenizer", "inference", "orchestrator"):
        # rate-limited: one line for the first, the rest counted into a later line
        assert written[service].count("malformed request(s) refused") <= 1, written[service]
