"""The embedded store: one SQLite file in WAL mode (readers never wait for the writer), durable writes
fsynced (synchronous=FULL), limit meters not (synchronous=NORMAL: they survive a crash of the process,
not a power cut), applied migrations recorded in the file itself.

Calls block: the orchestrator runs writes off its event loop (a thread), the CLI calls them directly. One
connection per kind of transaction, each serialised by its own lock and shared by threads; several
processes (the orchestrator's workers, the CLI) share the file, and SQLite's own lock orders their writes."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .sql import SqlStore, Tx


class SqliteStore(SqlStore):
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conns: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}
        for kind, sync in (("write", "FULL"), ("meter", "NORMAL"), ("read", "FULL")):
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={sync}")
            self._conns[kind] = (db, threading.Lock())
        self.migrate()

    def close(self) -> None:
        for db, lock in self._conns.values():
            with lock:
                db.close()

    @contextlib.contextmanager
    def _tx(self, kind: str) -> Iterator[Tx]:
        db, lock = self._conns[kind]
        with lock:
            # a writer takes SQLite's write lock up front, so that a read-then-write never fails to upgrade
            db.execute("BEGIN" if kind == "read" else "BEGIN IMMEDIATE")
            try:
                yield Tx(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
