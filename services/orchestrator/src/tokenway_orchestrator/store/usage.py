"""Usage records: one per request, whatever its end (completed, stopped, cancelled, failed, rejected).

`request_id` is the primary key, so writing the same request's record twice (a retry after a crash between
the commit and the answer) keeps the first one: a restart never duplicates a record.
"""

from __future__ import annotations

import dataclasses

STATUSES = ("ok", "cancelled", "failed", "rejected")


@dataclasses.dataclass(frozen=True)
class UsageRecord:
    request_id: str
    key_id: str
    key_name: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length | cancelled | error | "" (rejected before generating)
    status: str  # one of STATUSES
    created_at: float
    queue_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None

    def public(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class UsageTotal:
    """The records of one key and model: how many, and their tokens."""

    key_name: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    by_status: dict[str, int]

    def public(self) -> dict:
        return dataclasses.asdict(self)
