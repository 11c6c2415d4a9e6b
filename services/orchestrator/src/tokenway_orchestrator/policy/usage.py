"""Settlement of finished requests, group-committed: one thread writes everything that is waiting in
one durable transaction (one fsync however many requests finished meanwhile), and each request learns
when its own record is on disk.

A request's final answer waits for `write` (its record is durable before the caller sees the end);
a request whose caller is gone uses `submit` (nobody waits, the record is still written). `close()`
writes what is queued before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from tokenway_common import errors

from ..store import SqlStore
from ..store.sql import Settlement

log = logging.getLogger("tokenway.orchestrator.usage")
ATTEMPTS = 3  # a transient store failure (a PostgreSQL failover) is retried before a request fails


class UsageWriter:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._pending: list[tuple[Settlement, asyncio.AbstractEventLoop | None, asyncio.Future | None]] = []
        self._cv = threading.Condition()
        self._closing = False
        self.batches = self.records = 0  # for tests and logs
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    async def write(self, item: Settlement) -> bool:
        """Returns once `item` is durable: True, or False when its request already had a record."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._put(item, loop, fut)
        return await fut

    def submit(self, item: Settlement) -> None:
        """Writes `item` without waiting (its caller is gone)."""
        self._put(item, None, None)

    def _put(self, item: Settlement, loop, fut) -> None:
        with self._cv:
            if self._closing:
                raise errors.Unavailable("the server is shutting down", reason="SHUTTING_DOWN", retry_after=1.0)
            self._pending.append((item, loop, fut))
            self._cv.notify()

    def close(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closing:
                    self._cv.wait()
                batch, self._pending = self._pending, []
                if not batch and self._closing:
                    return
            result: list[bool] | BaseException = RuntimeError("not written")
            for attempt in range(ATTEMPTS):
                try:
                    result = self.store.settle([item for item, _, _ in batch])
                    break
                except Exception as exc:  # noqa: BLE001 - reported to every waiting request below
                    result = exc
                    log.error("usage records not written (attempt %d of %d): %s", attempt + 1, ATTEMPTS, exc)
                    time.sleep(0.2 * (attempt + 1))  # backoff between retries of a failed store write
            self.batches += 1
            self.records += len(batch)
            for i, (item, loop, fut) in enumerate(batch):
                if fut is None:
                    if isinstance(result, BaseException):
                        log.error("lost the usage record of %s: %s", item.record.request_id, result)
                    continue
                loop.call_soon_threadsafe(_resolve, fut, result if isinstance(result, BaseException) else result[i])


def _resolve(fut: asyncio.Future, value) -> None:
    if fut.done():
        return
    if isinstance(value, BaseException):
        fut.set_exception(errors.Unavailable("the usage record of this request could not be written; retry",
                                             reason="USAGE_NOT_RECORDED", retry_after=1.0))
    else:
        fut.set_result(value)
