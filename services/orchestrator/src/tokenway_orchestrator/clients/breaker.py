"""Per-replica circuit breaker (outlier ejection) and the router's retry budget.

A replica whose health says SERVING can still fail every call (an engine error, a GPU out of memory).
The breaker counts consecutive failures of calls to it: after `failures` (5) it opens and the replica gets
no traffic; after `open_seconds` (30) it half-opens and lets one trial call through at a time; `successes`
(3) trials in a row close it, one failure opens it again. The defaults are the classic breaker's (and
close to Envoy's outlier detection: 5 consecutive 5xx, 30 s ejection).

The retry budget bounds retries to another replica (before the first token) to a share of the calls, so
that a fleet in trouble is not hit by a retry storm: every call deposits `ratio` (0.2) of a retry, a retry
spends one, the bucket holds at most `burst`; `min_retries` concurrent retries are always allowed.
"""

from __future__ import annotations

import random
import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    def __init__(self, failures: int = 5, open_seconds: float = 30.0, successes: int = 3, clock=time.monotonic) -> None:
        self.failures, self.open_seconds, self.successes = failures, open_seconds, successes
        self._clock = clock
        self._state = CLOSED
        self._failed = 0  # consecutive failures (closed)
        self._succeeded = 0  # consecutive successful trials (half-open)
        self._opened_at = 0.0
        self._trials = 0  # trial calls in flight (half-open)
        self.opened = 0  # how many times it opened, for logs and tests

    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.open_seconds:
            self._state, self._succeeded, self._trials = HALF_OPEN, 0, 0
        return self._state

    def allows(self) -> bool:
        """May a call go to this replica now? (Half-open: one trial at a time.)"""
        state = self.state
        return state == CLOSED or (state == HALF_OPEN and self._trials == 0)

    def started(self) -> None:
        if self.state == HALF_OPEN:
            self._trials += 1

    def succeeded(self) -> None:
        state = self.state
        if state == HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._succeeded += 1
            if self._succeeded >= self.successes:
                self._state, self._failed = CLOSED, 0
        elif state == CLOSED:
            self._failed = 0

    def failed(self) -> None:
        state = self.state
        if state == HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._open()
        elif state == CLOSED:
            self._failed += 1
            if self._failed >= self.failures:
                self._open()

    def released(self) -> None:
        """A call ended neither way (the caller went away): a half-open trial slot is free again."""
        if self.state == HALF_OPEN:
            self._trials = max(0, self._trials - 1)

    def _open(self) -> None:
        self._state, self._opened_at, self._failed, self._succeeded = OPEN, self._clock(), 0, 0
        self.opened += 1


class RetryBudget:
    def __init__(self, ratio: float = 0.2, burst: float = 10.0, min_retries: int = 3) -> None:
        self.ratio, self.burst, self.min_retries = ratio, burst, min_retries
        self._tokens = burst
        self.retrying = 0  # retries in flight
        self.refused = 0

    def called(self) -> None:
        self._tokens = min(self.burst, self._tokens + self.ratio)

    def take(self) -> bool:
        """May this call be retried? Spends a retry when it may."""
        if self.retrying < self.min_retries or self._tokens >= 1.0:
            if self.retrying >= self.min_retries:
                self._tokens -= 1.0
            self.retrying += 1
            return True
        self.refused += 1
        return False

    def done(self) -> None:
        self.retrying = max(0, self.retrying - 1)


def jitter(attempt: int, base: float = 0.025) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): full jitter over an exponential step."""
    return random.uniform(0, base * (2 ** (attempt - 1)))
