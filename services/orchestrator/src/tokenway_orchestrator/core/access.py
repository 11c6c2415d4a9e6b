"""Who may call, which models they may use, and how often: API keys and a per-key rate limit.

Keys come from settings as `KEY` (every model) or `KEY@model-a|model-b` (only those models). With
no keys configured the API is open (a warning is logged at startup). The rate limit is a token
bucket per key (per caller address when the API is open): `rpm` requests a minute, bursts of up
to `burst`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from tokenway_common import errors


@dataclass(frozen=True)
class Principal:
    name: str  # a stable, non-secret id for logs and rate limiting
    models: frozenset[str] | None = None  # None: every model


@dataclass
class _Bucket:
    tokens: float
    updated: float


def _fingerprint(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


class Access:
    def __init__(self, entries: tuple[str, ...], rpm: int, burst: int, clock=time.monotonic) -> None:
        self._keys: dict[str, Principal] = {}
        for entry in entries:
            key, _, models = entry.partition("@")
            scope = frozenset(m for m in models.split("|") if m) if models else None
            self._keys[key] = Principal(_fingerprint(key), scope)
        self.rpm, self.burst = rpm, max(burst, 1)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def open(self) -> bool:
        return not self._keys

    def authenticate(self, authorization: str | None, peer: str) -> Principal:
        """The caller for an `authorization: Bearer KEY` header; raises UNAUTHENTICATED."""
        if self.open:
            return Principal(f"peer-{peer.rsplit(':', 1)[0]}")
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise errors.Unauthenticated("Missing API key: send 'Authorization: Bearer <key>'", reason="MISSING_API_KEY")
        key = key.strip()
        for known, principal in self._keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return principal
        raise errors.Unauthenticated("Incorrect API key provided", reason="INVALID_API_KEY")

    def authorize(self, principal: Principal, model: str) -> None:
        if principal.models is not None and model and model not in principal.models:
            raise errors.PermissionDenied(f"This API key may not use the model '{model}'", reason="MODEL_NOT_ALLOWED",
                                          metadata={"model": model, "param": "model"})

    def admit(self, principal: Principal) -> None:
        """Takes one request from the caller's bucket; raises RESOURCE_EXHAUSTED with a retry delay."""
        if self.rpm <= 0:
            return
        now = self._clock()
        rate = self.rpm / 60.0
        b = self._buckets.get(principal.name)
        if b is None:
            b = self._buckets[principal.name] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.updated) * rate)
        b.updated = now
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / rate
            raise errors.ResourceExhausted(f"Rate limit reached: {self.rpm} requests per minute; retry in {wait:.1f}s",
                                           reason="RATE_LIMITED", retry_after=wait,
                                           metadata={"limit_rpm": str(self.rpm)})
        b.tokens -= 1.0
