"""The orchestrator's own admission: at most `max_running` sequences generating, at most `max_queued`
requests waiting, none waiting longer than its class allows — beyond that RESOURCE_EXHAUSTED with
RetryInfo, at once, never an unbounded queue or a hang.

Two priority classes. Interactive requests are for someone watching the first token: by default they
never wait (`max_wait["interactive"] = 0`): a request that finds no free slot is refused at once, so the
requests that run keep their time to first token and the refused ones can retry elsewhere. Batch requests
may wait (`max_wait["batch"]`), and hold at most `batch_share` of the slots, so that an interactive
request finds room even while batch work saturates the rest. Waiting requests are served interactive
first, first come first served within a class. When the queue is full an interactive request takes the
place of the newest waiting batch request, which is shed (reason SHED); otherwise the newcomer is refused
(OVERLOADED).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
from collections.abc import Callable

from tokenway_common import errors

PRIORITIES = ("interactive", "batch")  # first: served first


@dataclasses.dataclass(eq=False)
class _Waiter:
    rank: int
    seq: int
    units: int
    future: asyncio.Future


def _overloaded(message: str, reason: str, retry_after: float = 1.0) -> errors.ResourceExhausted:
    return errors.ResourceExhausted(message, reason=reason, retry_after=retry_after)


class Admission:
    def __init__(self, max_running: int, max_queued: int, max_wait: dict[str, float] | float,
                 batch_share: float = 0.75, report: Callable[[int, int], None] | None = None) -> None:
        """`report(running sequences, waiting requests)` is called after every change (metrics)."""
        self.max_running, self.max_queued = max_running, max_queued
        self.max_wait = max_wait if isinstance(max_wait, dict) else dict.fromkeys(PRIORITIES, max_wait)
        self.batch_share = batch_share
        self.running = 0
        self.running_batch = 0
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self.shed = self.refused = self.timed_out = 0  # counters, for logs and tests
        self._report = report

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def batch_limit(self) -> int:
        return self._limit(1)

    def _limit(self, rank: int) -> int:
        """The slots a class may hold: all of them (interactive), or batch's share (at least one)."""
        return self.max_running if rank == 0 else max(1, math.floor(self.max_running * self.batch_share))

    def _fits(self, rank: int, units: int) -> bool:
        return self.running + units <= self.max_running and (
            rank == 0 or self.running_batch + units <= self._limit(rank))

    def _take(self, rank: int, units: int) -> None:
        self.running += units
        if rank:
            self.running_batch += units

    def _changed(self) -> None:
        if self._report is not None:
            self._report(self.running, len(self._queue))

    async def acquire(self, priority: str, units: int, timeout: float | None = None) -> int:
        """Takes `units` sequences of capacity (waiting for them when its class may); returns what it
        took, to give back with `release(units, priority)`."""
        if self.max_running <= 0:
            return 0
        rank = PRIORITIES.index(priority)
        units = max(1, min(units, self._limit(rank)))  # a request larger than its share still runs, alone
        if not any(w.rank <= rank for w in self._queue) and self._fits(rank, units):
            self._take(rank, units)
            self._changed()
            return units
        wait = self.max_wait[priority] if timeout is None else min(self.max_wait[priority], timeout)
        if wait <= 0:
            self.refused += 1
            raise _overloaded(f"The server is at capacity ({self.running} of {self.max_running} sequences "
                              f"running); retry shortly", "OVERLOADED")
        if len(self._queue) >= self.max_queued:
            victims = [w for w in self._queue if w.rank > rank]
            if not victims:
                self.refused += 1
                raise _overloaded(f"The server is overloaded: {self.running} sequences running and "
                                  f"{len(self._queue)} requests waiting; retry shortly", "OVERLOADED")
            victim = max(victims, key=lambda w: (w.rank, w.seq))
            self._queue.remove(victim)
            self.shed += 1
            victim.future.set_exception(_overloaded(
                "The server is overloaded and served a higher-priority request first; retry shortly", "SHED"))
        waiter = _Waiter(rank, next(self._seq), units, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        self._changed()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait)
            return units
        except BaseException as exc:
            if waiter in self._queue:
                self._queue.remove(waiter)
                self._changed()
            elif waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self.release(units, priority)  # granted at the moment its caller gave up: give it straight back
            if isinstance(exc, TimeoutError):
                self.timed_out += 1
                raise _overloaded(f"The server is overloaded: no capacity within {wait:.1f}s; retry shortly",
                                  "QUEUE_TIMEOUT") from None
            raise

    def release(self, units: int, priority: str) -> None:
        if units <= 0:
            return
        self.running -= units
        if PRIORITIES.index(priority):
            self.running_batch -= units
        for w in sorted(self._queue, key=lambda w: (w.rank, w.seq)):
            if self._fits(w.rank, w.units):
                self._queue.remove(w)
                self._take(w.rank, w.units)
                w.future.set_result(None)
            elif w.rank == 0:
                break  # interactive waiters keep their order; a batch one held by its share lets others by
        self._changed()
