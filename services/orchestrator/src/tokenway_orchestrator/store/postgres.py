"""The shared store: PostgreSQL, for several orchestrator replicas (and the CLI) on one database.

The same SQL as SQLite (`sql.py`); what differs is how transactions are had:
  - "read": REPEATABLE READ READ ONLY, one snapshot, never waits for a writer;
  - "write": READ COMMITTED, durable at COMMIT (the server's synchronous_commit, on by default);
  - "meter": READ COMMITTED with synchronous_commit=off (the commit does not wait for the WAL flush: a
    server crash may forget the last few meter updates, never corrupt them); the key's limiter_state row
    is locked `FOR UPDATE`, so meter transactions of one key take turns across every replica.
Meters read the server's clock (`clock_timestamp()`), so replicas on hosts whose clocks differ share one.
Migrations take a transaction-scoped advisory lock, so concurrent openers apply each one once.

Calls block (the orchestrator runs them in threads). Each kind has a tiny pool of connections (opened on
demand, `connections` at most, a caller waits for a free one); a connection that broke (server restart,
terminated backend, network) is dropped when its call ends and a new one opened by a later call. When the
BEGIN of a transaction finds its idle connection dead, the transaction starts again on a new connection
(nothing was done yet); a failure inside a transaction surfaces as the driver's exception.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg
from psycopg.pq import TransactionStatus

from .sql import SqlStore, Tx

#: pg_advisory_xact_lock key of migrations ("tokenway" in ASCII, as a number)
MIGRATION_LOCK = 0x746F6B656E776179
_BEGIN = {"read": "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "write": "BEGIN", "meter": "BEGIN"}
_OPTIONS = {"read": "", "write": "", "meter": "-c synchronous_commit=off"}


class _Pool:
    """At most `size` connections of one kind; idle ones are reused, newest first."""

    def __init__(self, url: str, kind: str, size: int, connect_timeout: float, wait: float) -> None:
        self.url, self.kind, self.connect_timeout, self.wait = url, kind, connect_timeout, wait
        self.slots = threading.BoundedSemaphore(size)
        self.idle: list[psycopg.Connection] = []
        self.lock = threading.Lock()
        self.closed = False

    def connect(self) -> psycopg.Connection:
        kw = {"options": _OPTIONS[self.kind]} if _OPTIONS[self.kind] else {}
        return psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout)),
                               application_name=f"tokenway-store-{self.kind}", **kw)

    def get(self) -> psycopg.Connection | None:
        """An idle connection, or None: the caller opens one (a free slot is already held)."""
        if not self.slots.acquire(timeout=self.wait):
            raise TimeoutError(f"no free {self.kind} connection to the store within {self.wait:.0f}s")
        with self.lock:
            if self.closed:
                self.slots.release()
                raise RuntimeError("the store is closed")
            return self.idle.pop() if self.idle else None

    def put(self, conn: psycopg.Connection | None) -> None:
        """Gives a slot back, with its connection kept for reuse when it is healthy and idle."""
        keep = (conn is not None and not conn.closed and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE)
        with self.lock:
            if keep and not self.closed:
                self.idle.append(conn)
                conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self.slots.release()

    def close(self) -> None:
        with self.lock:
            self.closed, idle, self.idle = True, self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


class PostgresStore(SqlStore):
    integrity_error = psycopg.IntegrityError
    for_update = " FOR UPDATE"

    def __init__(self, url: str, *, connections: int = 2, connect_timeout: float = 10.0, wait: float = 60.0) -> None:
        """`url`: libpq's `postgresql://user[:password]@host[:port]/dbname[?param=value]` (or a key=value
        string); `connections`: the most each kind of transaction opens at once; `wait`: how long a call
        waits for one of them to be free."""
        self.url = url
        self._pools = {kind: _Pool(url, kind, connections, connect_timeout, wait) for kind in _BEGIN}
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    def _begin(self, pool: _Pool, conn: psycopg.Connection | None) -> psycopg.Connection:
        """Starts a transaction; an idle connection found dead at BEGIN is replaced once (nothing ran on it)."""
        if conn is not None:
            try:
                conn.execute(_BEGIN[pool.kind])
                return conn
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                with contextlib.suppress(Exception):
                    conn.close()
        conn = pool.connect()
        try:
            conn.execute(_BEGIN[pool.kind])
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _tx(self, kind: str) -> Iterator[Tx]:
        pool = self._pools[kind]
        conn = pool.get()
        try:
            conn = self._begin(pool, conn)
            try:
                yield Tx(conn, "format")
            except BaseException:
                if not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except BaseException:
            # a connection lost mid-call, or in any state but idle, is not reused
            if conn is not None and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(Exception):
                    conn.close()
            raise
        finally:
            pool.put(conn)

    def _now(self, tx: Tx) -> float:
        return float(tx.one("SELECT EXTRACT(EPOCH FROM clock_timestamp())")[0])

    def _migration_lock(self, tx: Tx) -> None:
        tx.one("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
