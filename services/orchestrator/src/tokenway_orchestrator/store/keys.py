"""API keys as the store keeps them: never the key itself, only its SHA-256.

A key is `tw-<id>-<secret>`: `id` (12 hex digits) names the key in logs and in the CLI without revealing
it, `secret` is 32 random bytes (url-safe base64). A key carries 192+ bits of entropy, so a plain SHA-256
is the right digest (a slow password hash buys nothing against guessing a random 256-bit secret and costs
every request time); the store looks a presented key up by its digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

PREFIX = "tw-"
PRIORITIES = ("interactive", "batch")


class StoreError(Exception):
    """A store operation that cannot be done: `reason` is NOT_FOUND, ALREADY_EXISTS or INVALID."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-key limits; 0 means none."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    concurrent_requests: int = 0
    token_quota: int = 0  # tokens per quota period
    quota_period: str = "month"  # day | month

    @property
    def any(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute or self.concurrent_requests or self.token_quota)

    def __post_init__(self) -> None:
        for f in ("requests_per_minute", "tokens_per_minute", "concurrent_requests", "token_quota"):
            if getattr(self, f) < 0:
                raise StoreError("INVALID", f"{f} must be >= 0")
        if self.quota_period not in ("day", "month"):
            raise StoreError("INVALID", "quota_period must be day or month")


@dataclasses.dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    owner: str
    models: tuple[str, ...]  # empty: every model
    limits: Limits
    priority: str
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models

    def public(self) -> dict:
        """Everything about the key but its secret (which the store does not have), for the CLI's JSON."""
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        return d


def new_secret() -> tuple[str, str]:
    """(key id, the whole key to hand out once)."""
    kid = secrets.token_hex(6)
    return kid, f"{PREFIX}{kid}-{secrets.token_urlsafe(32)}"


def hash_secret(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
