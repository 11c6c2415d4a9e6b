"""gRPC adapters for the orchestrator's peers: deadlines on every call, errors translated once.

A peer's failure reaches the public caller only as an error the public API defines: its internal
details (addresses, internal field names, peer messages) are logged, never returned.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import grpc

from tokenway_common import errors

log = logging.getLogger("tokenway.orchestrator.peers")

# Peer reasons that mean the same thing to a public caller, passed on with their message.
PUBLIC_REASONS = frozenset({"CHAT_TEMPLATE_ERROR", "NO_CHAT_TEMPLATE", "QUEUE_FULL"})


def public_error(err: grpc.aio.AioRpcError, peer: str) -> errors.TokenwayError:
    """The error a public caller sees for a failed call to `peer` ("tokenizer", "inference")."""
    code = err.code()
    info = errors.error_info(err)
    reason = info.reason if info is not None else None
    if code == grpc.StatusCode.CANCELLED:
        return errors.Cancelled("the request was cancelled", reason="CANCELLED")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.DeadlineExceeded("the request's deadline passed before the answer was complete",
                                       reason="DEADLINE_EXCEEDED")
    if reason == "CONTEXT_LENGTH_EXCEEDED":  # the peer's field names are internal: the public words only
        return errors.InvalidArgument("The prompt and the tokens to generate do not fit in this model's context",
                                      reason=reason, metadata={"param": "max_tokens"})
    if reason in PUBLIC_REASONS:
        return errors.from_rpc_error(err, peer)
    if code == grpc.StatusCode.UNAVAILABLE:
        log.warning("%s unavailable: %s", peer, errors.clip(err.details() or "", 300))
        return errors.Unavailable(f"the {peer} service is unavailable; retry shortly", reason="PEER_UNAVAILABLE",
                                  retry_after=1.0, metadata={"peer": peer})
    log.error("%s failed: %s %s %s", peer, code.name, reason, errors.clip(err.details() or "", 500))
    return errors.Internal("internal error; see the server log", reason="INTERNAL", metadata={"peer": peer})


@contextlib.contextmanager
def translated(peer: str) -> Iterator[None]:
    """Turns a peer call's failure into the error the public caller should see."""
    try:
        yield
    except grpc.aio.AioRpcError as e:
        raise public_error(e, peer) from None
