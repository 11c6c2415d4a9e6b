"""gRPC adapters for the orchestrator's peers: deadlines on every call, errors translated once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from tokenway_common import errors


@contextlib.contextmanager
def translated(peer: str) -> Iterator[None]:
    """Turns a peer call's failure into the domain error the caller should see."""
    try:
        yield
    except grpc.aio.AioRpcError as e:
        raise errors.from_rpc_error(e, peer) from None
