"""A peer's failure reaches a public caller only as an error the public API defines."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from tokenway_common import errors
from tokenway_orchestrator.clients import public_error


def rpc_error(code: grpc.StatusCode, details: str, err: errors.TokenwayError | None = None) -> AioRpcError:
    trailing = Metadata(*errors.trailing_metadata(err)) if err is not None else Metadata()
    return AioRpcError(code, Metadata(), trailing, details=details)


def test_an_unavailable_peer_is_named_by_role_never_by_address():
    e = public_error(rpc_error(grpc.StatusCode.UNAVAILABLE,
                               "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.1.2.3:50053"), "inference")
    assert e.code == grpc.StatusCode.UNAVAILABLE and e.reason == "PEER_UNAVAILABLE" and e.retry_after
    assert "10.1.2.3" not in e.message and "50053" not in e.message and "10.1.2.3" not in str(e.metadata)


def test_a_peers_invalid_argument_is_an_internal_error_without_its_field_names():
    peer = errors.InvalidArgument("sequences[0].token_ids[3]: 9999 is not in [0, 3645)", reason="TOKEN_ID_OUT_OF_RANGE",
                                  field_violations=[("sequences[0].token_ids[3]", "out of range")])
    e = public_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, peer.message, peer), "tokenizer")
    assert e.code == grpc.StatusCode.INTERNAL and "sequences" not in e.message and not e.field_violations


@pytest.mark.parametrize("peer, code", [
    (errors.InvalidArgument("the chat template rejected the conversation: roles must alternate",
                            reason="CHAT_TEMPLATE_ERROR"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ResourceExhausted("the queue is full", reason="QUEUE_FULL", retry_after=0.5), grpc.StatusCode.RESOURCE_EXHAUSTED),
])
def test_errors_the_public_api_defines_pass_with_their_reason(peer, code):
    e = public_error(rpc_error(code, peer.message, peer), "inference")
    assert e.code == code and e.reason == peer.reason and e.message == peer.message


def test_context_errors_from_a_peer_use_public_words():
    peer = errors.InvalidArgument("prompt_token_ids: 3000 tokens", reason="CONTEXT_LENGTH_EXCEEDED",
                                  field_violations=[("prompt_token_ids", "too long")])
    e = public_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, peer.message, peer), "inference")
    assert e.reason == "CONTEXT_LENGTH_EXCEEDED" and "prompt_token_ids" not in e.message and not e.field_violations


def test_errors_are_bounded_whatever_the_request_held():
    e = errors.InvalidArgument("x" * 100_000, field_violations=[(f"f{i}", "bad " * 1000) for i in range(500)],
                               metadata={"model": "m" * 10_000})
    assert len(e.message) <= errors.MAX_MESSAGE_CHARS and len(e.field_violations) == errors.MAX_FIELD_VIOLATIONS + 1
    assert e.field_violations[-1] == ("", f"and {500 - errors.MAX_FIELD_VIOLATIONS} more")
    assert errors.to_status_proto(e).ByteSize() < 4096
