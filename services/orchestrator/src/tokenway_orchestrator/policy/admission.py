"""The orchestrator's own admission: at most `max_running` sequences generating, at most `max_queued`
requests waiting, none waiting longer than `max_wait` — beyond that RESOURCE_EXHAUSTED with RetryInfo,
never an unbounded queue or a hang.

Waiting requests are served by priority class (interactive before batch), first come first served within
a class. When the queue is full an interactive request takes the place of the newest waiting batch
request, which is shed (RESOURCE_EXHAUSTED, reason SHED); with no batch request to shed it is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

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
    def __init__(self, max_running: int, max_queued: int, max_wait: float) -> None:
        self.max_running, self.max_queued, self.max_wait = max_running, max_queued, max_wait
        self.running = 0
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self.shed = self.refused = self.timed_out = 0  # counters, for logs and tests

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def acquire(self, priority: str, units: int, timeout: float | None = None) -> int:
        """Takes `units` sequences of capacity (waiting for them by priority); returns what it took, to
        give back with `release`."""
        if self.max_running <= 0:
            return 0
        units = max(1, min(units, self.max_running))  # a request larger than the whole still runs, alone
        rank = PRIORITIES.index(priority)
        if not any(w.rank <= rank for w in self._queue) and self.running + units <= self.max_running:
            self.running += units
            return units
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
        wait = self.max_wait if timeout is None else min(self.max_wait, timeout)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait)
            return units
        except BaseException as exc:
            if waiter in self._queue:
                self._queue.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self.release(units)  # granted at the moment its caller gave up: give it straight back
            if isinstance(exc, TimeoutError):
                self.timed_out += 1
                raise _overloaded(f"The server is overloaded: no capacity within {wait:.1f}s; retry shortly",
                                  "QUEUE_TIMEOUT") from None
            raise

    def release(self, units: int) -> None:
        if units <= 0:
            return
        self.running -= units
        while self._queue:
            best = min(self._queue, key=lambda w: (w.rank, w.seq))
            if self.running + best.units > self.max_running:
                break
            self._queue.remove(best)
            self.running += best.units
            best.future.set_result(None)

