"""Tokenizer replicas: each one followed (health Watch) and identified (its fingerprint), and a model's
pool of them behind the core's TokenizerPort."""

from __future__ import annotations

import logging

import grpc
from tokenway.tokenizer.v1 import tokenizer_pb2 as pb

from tokenway_common import errors
from tokenway_common.channels import ReadinessFollower

from ..clients.tokenizer import TokenizerClient
from ..core.params import Message
from ..core.ports import DetokenizerStream

log = logging.getLogger("tokenway.orchestrator.registry")
SERVICE = "tokenway.tokenizer.v1.TokenizerService"


class TokenizerPeer:
    def __init__(self, address: str, channel: grpc.aio.Channel, short_timeout: float) -> None:
        self.address = address
        self.channel = channel
        self.client = TokenizerClient(channel, short_timeout, address)
        self.health = ReadinessFollower(channel, SERVICE, f"tokenizer {address}")
        self.info: pb.GetTokenizerInfoResponse | None = None  # read each time it becomes ready
        self.listed: set[str] = set()  # the models it is listed under ("": shared by every model)
        self.in_flight = 0

    @property
    def ready(self) -> bool:
        return self.health.ready and self.info is not None

    @property
    def fingerprint(self) -> str:
        return self.info.fingerprint if self.info is not None else ""

    async def close(self) -> None:
        await self.health.close()
        await self.channel.close()


class TokenizerPool:
    """The ready tokenizers of one model (one fingerprint): each call goes to the least busy one, and a
    unary call that finds one unavailable is tried once more on another (tokenizer calls have no
    effects, so a retry is always safe)."""

    def __init__(self) -> None:
        self.peers: list[TokenizerPeer] = []

    @property
    def ready(self) -> bool:
        return any(p.ready for p in self.peers)

    def pick(self, exclude: set[str] = frozenset()) -> TokenizerPeer:
        ready = [p for p in self.peers if p.ready and p.address not in exclude]
        if not ready:
            raise errors.Unavailable("no tokenizer of this model is ready; retry shortly", reason="PEER_UNAVAILABLE",
                                     retry_after=1.0, metadata={"peer": "tokenizer"})
        return min(ready, key=lambda p: p.in_flight)

    async def _call(self, name: str, *args):
        tried: set[str] = set()
        while True:
            peer = self.pick(tried)
            tried.add(peer.address)
            peer.in_flight += 1
            try:
                return await getattr(peer.client, name)(*args)
            except errors.Unavailable as exc:
                if exc.reason != "PEER_UNAVAILABLE" or not any(p.ready and p.address not in tried for p in self.peers):
                    raise
                log.warning("tokenizer %s unavailable, trying another", peer.address)
            finally:
                peer.in_flight -= 1

    async def render_chat(self, messages: list[Message], max_prompt_tokens: int,
                          timeout: float | None) -> tuple[list[int], list[int]]:
        return await self._call("render_chat", messages, max_prompt_tokens, timeout)

    async def tokenize(self, texts: list[str], max_tokens_per_text: int, timeout: float | None) -> list[list[int]]:
        return await self._call("tokenize", texts, max_tokens_per_text, timeout)

    async def detokenize(self, sequences: list[list[int]], skip_special_tokens: bool, timeout: float | None) -> list[str]:
        return await self._call("detokenize", sequences, skip_special_tokens, timeout)

    async def vocabulary(self, timeout: float | None) -> list[bytes]:
        return await self._call("vocabulary", timeout)

    async def spec(self, timeout: float | None) -> pb.GetTokenizerSpecResponse:
        return await self._call("spec", timeout)

    def detokenize_stream(self, prompt_tail: list[int], skip_special_tokens: bool, stop: tuple[str, ...],
                          include_stop: bool, timeout: float | None) -> DetokenizerStream:
        return self.pick().client.detokenize_stream(prompt_tail, skip_special_tokens, stop, include_stop, timeout)


async def identify(peer: TokenizerPeer, timeout: float) -> bool:
    """Reads `peer`'s tokenizer info (fingerprint); False when it could not."""
    try:
        peer.info = await peer.client.info(timeout)
        return True
    except errors.TokenwayError as exc:
        log.warning("tokenizer %s: cannot read its info: %s", peer.address, exc)
        return False

