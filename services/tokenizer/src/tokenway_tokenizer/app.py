"""The tokenizer service as an `App` for tokenway_common's server."""

from __future__ import annotations

import asyncio

import grpc
from tokenway_common import errors
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc as pb_grpc

from .config import SERVICE_NAME, TokenizerSettings
from .core import Tokenizer
from .servicers import TokenizerServicer


class TokenizerApp:
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: TokenizerSettings) -> None:
        self.settings = settings
        self.tokenizer: Tokenizer | None = None

    def _get(self) -> Tokenizer:
        if self.tokenizer is None:
            raise errors.Unavailable("the tokenizer is still loading", reason="NOT_READY", retry_after=0.5)
        return self.tokenizer

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_TokenizerServiceServicer_to_server(TokenizerServicer(self._get), server)

    async def start(self) -> None:
        self.tokenizer = await asyncio.to_thread(Tokenizer.load, self.settings.model, self.settings.workers)

    async def close(self) -> None:
        if self.tokenizer is not None:
            self.tokenizer.close()
