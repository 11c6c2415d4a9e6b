"""The tokenizer service as an `App` for tokenway_common's server."""

from __future__ import annotations

import asyncio
import threading

import grpc
from tokenway_common import errors
from tokenway_common.metrics import ServiceMetrics
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc as pb_grpc

from .config import SERVICE_NAME, TokenizerSettings
from .core import Tokenizer
from .servicers import TokenizerServicer


class TokenizerApp:
    service_names = (SERVICE_NAME,)
    # what orchestrators read when a tokenizer becomes ready: traced only as part of a request's trace
    background_methods = frozenset(f"{SERVICE_NAME}/{m}" for m in ("GetTokenizerInfo", "GetTokenizerSpec", "GetVocabulary"))

    def __init__(self, settings: TokenizerSettings) -> None:
        self.settings = settings
        self.tokenizer: Tokenizer | None = None
        self.metrics = ServiceMetrics("tokenizer")  # calls by RPC and code, their latency

    def _get(self) -> Tokenizer:
        if self.tokenizer is None:
            raise errors.Unavailable("the tokenizer is still loading", reason="NOT_READY", retry_after=0.5)
        return self.tokenizer

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_TokenizerServiceServicer_to_server(TokenizerServicer(self._get), server)

    async def start(self) -> None:
        # Loaded on a daemon thread rather than the loop's executor: a SIGTERM during the (slow)
        # import of transformers then exits at once instead of waiting for the load to finish.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Tokenizer] = loop.create_future()

        def settle(result: Tokenizer | None, exc: BaseException | None) -> None:
            if done.cancelled():
                if result is not None:
                    result.close()
            elif exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(result)

        def load() -> None:
            try:
                result, exc = Tokenizer.load(self.settings.model, self.settings.workers,
                                             self.settings.max_input_tokens), None
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                result, exc = None, e
            try:
                loop.call_soon_threadsafe(settle, result, exc)
            except RuntimeError:  # the loop is gone: the service stopped while loading
                pass

        threading.Thread(target=load, name="tokenizer-load", daemon=True).start()
        self.tokenizer = await done

    async def close(self) -> None:
        if self.tokenizer is not None:
            self.tokenizer.close()
