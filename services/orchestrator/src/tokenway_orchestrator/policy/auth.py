"""API keys: `authorization: Bearer <key>` (gRPC metadata; the same HTTP header through Envoy), checked by
an interceptor before the request reaches a servicer, so that a caller without a valid key costs one
indexed lookup and no tokenizer or inference work.

The caller is then `CALLER.get()` for the rest of the request. With auth off (`TOKENWAY_ORCHESTRATOR_AUTH=off`)
every caller is `ANONYMOUS`: no key, no limits, usage recorded under the name "anonymous".
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import grpc

from tokenway_common import errors

from ..store import ApiKey, SqlStore
from ..store.keys import PREFIX

log = logging.getLogger("tokenway.orchestrator.auth")
MAX_KEY_CHARS = 256  # a key is ~60 characters; anything longer is refused without a lookup


@dataclasses.dataclass(frozen=True)
class Caller:
    key: ApiKey | None  # None: auth is off

    @property
    def name(self) -> str:
        return self.key.name if self.key else "anonymous"

    @property
    def key_id(self) -> str:
        return self.key.id if self.key else ""

    def allows(self, model: str) -> bool:
        return self.key is None or not model or self.key.allows(model)

    def authorize(self, model: str) -> None:
        """PERMISSION_DENIED when the key may not use `model`."""
        self.authorize_any(model)

    def authorize_any(self, model: str, *names: str) -> None:
        """PERMISSION_DENIED unless the key may use `model` or one of its other `names` (an alias's model)."""
        if not any(self.allows(n) for n in (model, *names)):
            raise errors.PermissionDenied(f"This API key may not use the model '{errors.clip(model, 100)}'",
                                          reason="MODEL_NOT_ALLOWED", metadata={"model": model, "param": "model"})


ANONYMOUS = Caller(None)
CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("tokenway_caller", default=ANONYMOUS)


class Authenticator:
    def __init__(self, store: SqlStore | None, *, blocking_reads: bool = False) -> None:
        """`store` None: auth is off. `blocking_reads`: the store's reads may wait (a server over the
        network): they run in a thread instead of on the event loop."""
        self.store = store
        self._blocking = blocking_reads

    @property
    def enabled(self) -> bool:
        return self.store is not None

    async def authenticate(self, authorization: str | None) -> Caller:
        if self.store is None:
            return ANONYMOUS
        scheme, _, secret = (authorization or "").partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise errors.Unauthenticated("Missing API key: send 'Authorization: Bearer <key>'", reason="MISSING_API_KEY")
        key = None
        if secret.startswith(PREFIX) and len(secret) <= MAX_KEY_CHARS:
            try:  # SQLite in WAL mode: an indexed read that never waits for a writer, ~20 us, on the loop
                key = await asyncio.to_thread(self.store.authenticate, secret) if self._blocking \
                    else self.store.authenticate(secret)
            except Exception as exc:  # noqa: BLE001 - any driver error
                log.error("the key store failed: %s", exc)
                raise errors.Unavailable("the key store is unavailable; retry shortly", reason="STORE_UNAVAILABLE",
                                         retry_after=1.0) from exc
        if key is None:
            raise errors.Unauthenticated("Incorrect API key provided", reason="INVALID_API_KEY")
        if key.revoked:
            raise errors.Unauthenticated("This API key has been revoked", reason="REVOKED_API_KEY",
                                         metadata={"key": key.name})
        return Caller(key)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call of the public services (`prefixes`); health and reflection stay open."""

    def __init__(self, auth: Authenticator, prefixes: tuple[str, ...] = ("/tokenway.v1.",)) -> None:
        self.auth = auth
        self.prefixes = prefixes

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self.prefixes):
            return handler
        header = next((v for k, v in details.invocation_metadata or () if k == "authorization"), None)
        auth = self.auth
        if handler.unary_unary:
            behavior = handler.unary_unary

            async def unary(request, context):
                CALLER.set(await auth.authenticate(header))
                return await behavior(request, context)
            return handler._replace(unary_unary=unary)
        if handler.unary_stream:
            stream_behavior = handler.unary_stream

            async def stream(request, context):
                CALLER.set(await auth.authenticate(header))
                async for item in stream_behavior(request, context):
                    yield item
            return handler._replace(unary_stream=stream)
        return handler
