"""The embedded store: one SQLite file in WAL mode (readers never wait for the writer), FULL sync (a
committed row survives a power cut), applied migrations recorded in the file itself.

Calls block: the orchestrator runs them off its event loop (a thread), the CLI calls them directly. One
connection per store object, serialised by a lock, shared by threads."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

from .keys import PRIORITIES, ApiKey, Limits, StoreError, hash_secret, new_secret
from .migrations import MIGRATIONS
from .usage import STATUSES, UsageRecord, UsageTotal

_COLUMNS = ("id, name, owner, models, requests_per_minute, tokens_per_minute, concurrent_requests, token_quota, "
            "quota_period, priority, created_at, revoked_at")


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- schema ----------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Applies the migrations this file lacks; returns their versions."""
        applied = []
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                             "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            for version, name, statements in MIGRATIONS:
                self._db.execute("BEGIN IMMEDIATE")  # one writer applies it; a concurrent opener waits
                try:
                    done = self._db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone()
                    if not done:
                        for sql in statements:
                            self._db.execute(sql)
                        self._db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time()))
                        applied.append(version)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        return applied

    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return row[0] or 0

    # -- keys ------------------------------------------------------------------------------------

    def create_key(self, name: str, *, owner: str = "", models: tuple[str, ...] = (), limits: Limits = Limits(),
                   priority: str = "interactive") -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown once and never stored."""
        _check(name, priority, models)
        kid, secret = new_secret()
        key = ApiKey(kid, name, owner, tuple(models), limits, priority, time.time())
        with self._lock:
            try:
                self._db.execute(f"INSERT INTO api_keys ({_COLUMNS}, key_sha256) VALUES "
                                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*_row(key), hash_secret(secret)))
            except sqlite3.IntegrityError as exc:
                raise StoreError("ALREADY_EXISTS", f"a key named {name!r} exists") from exc
        return key, secret

    def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        sql = f"SELECT {_COLUMNS} FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        with self._lock:
            return [_key(r) for r in self._db.execute(sql + " ORDER BY created_at, id")]

    def get_key(self, name_or_id: str) -> ApiKey:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE name = ? OR id = ? ORDER BY name = ? DESC",
                                   (name_or_id, name_or_id, name_or_id)).fetchone()
        if row is None:
            raise StoreError("NOT_FOUND", f"no key named or with id {name_or_id!r}")
        return _key(row)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key whose secret this is, revoked or not; None when there is none."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_sha256 = ?",
                                   (hash_secret(presented),)).fetchone()
        return _key(row) if row else None

    def revoke_key(self, name_or_id: str) -> ApiKey:
        key = self.get_key(name_or_id)
        if key.revoked:
            return key
        now = time.time()
        with self._lock:
            self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key.id))
        return dataclasses.replace(key, revoked_at=now)

    def update_key(self, name_or_id: str, *, name: str | None = None, owner: str | None = None,
                   models: tuple[str, ...] | None = None, limits: Limits | None = None,
                   priority: str | None = None) -> ApiKey:
        key = self.get_key(name_or_id)
        new = dataclasses.replace(key, **{k: v for k, v in (("name", name), ("owner", owner), ("models", models),
                                                            ("limits", limits), ("priority", priority)) if v is not None})
        _check(new.name, new.priority, new.models)
        row = _row(new)
        with self._lock:
            try:
                self._db.execute("UPDATE api_keys SET name = ?, owner = ?, models = ?, requests_per_minute = ?, "
                                 "tokens_per_minute = ?, concurrent_requests = ?, token_quota = ?, quota_period = ?, "
                                 "priority = ? WHERE id = ?", (*row[1:10], key.id))
            except sqlite3.IntegrityError as exc:
                raise StoreError("ALREADY_EXISTS", f"a key named {new.name!r} exists") from exc
        return new


    # -- usage -----------------------------------------------------------------------------------

    def record_usage(self, rec: UsageRecord) -> bool:
        """Writes rec durably (committed, fsynced) before returning; False when its request already has one."""
        if rec.status not in STATUSES:
            raise StoreError("INVALID", f"status must be one of {', '.join(STATUSES)}")
        with self._lock:
            cur = self._db.execute(
                f"INSERT INTO usage_records ({_USAGE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_id) DO NOTHING", _usage_row(rec))
        return cur.rowcount == 1

    def usage_records(self, *, since: float = 0.0, key: str | None = None) -> list[UsageRecord]:
        """Records created at or after `since`, of the key named `key` when given, oldest first."""
        sql, args = f"SELECT {_USAGE} FROM usage_records WHERE created_at >= ?", [since]
        if key is not None:
            sql, args = sql + " AND key_name = ?", [*args, key]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, request_id", args).fetchall()
        return [UsageRecord(*r) for r in rows]

    def usage_totals(self, *, since: float = 0.0, key: str | None = None) -> list[UsageTotal]:
        """Per key and model since `since`: requests, prompt and completion tokens, requests by status."""
        totals: dict[tuple[str, str], dict] = {}
        for r in self.usage_records(since=since, key=key):
            t = totals.setdefault((r.key_name, r.model), {"requests": 0, "prompt": 0, "completion": 0, "status": {}})
            t["requests"] += 1
            t["prompt"] += r.prompt_tokens
            t["completion"] += r.completion_tokens
            t["status"][r.status] = t["status"].get(r.status, 0) + 1
        return [UsageTotal(k, m, t["requests"], t["prompt"], t["completion"], t["status"])
                for (k, m), t in sorted(totals.items())]


_USAGE = ("request_id, key_id, key_name, model, prompt_tokens, completion_tokens, finish_reason, status, "
          "created_at, queue_ms, ttft_ms, total_ms")


def _usage_row(r: UsageRecord) -> tuple:
    return (r.request_id, r.key_id, r.key_name, r.model, r.prompt_tokens, r.completion_tokens, r.finish_reason,
            r.status, r.created_at, r.queue_ms, r.ttft_ms, r.total_ms)


def _check(name: str, priority: str, models: tuple[str, ...]) -> None:
    if any(not m or "," in m for m in models):
        raise StoreError("INVALID", "model names are non-empty and without commas")
    if not name or len(name) > 128 or any(c.isspace() for c in name):
        raise StoreError("INVALID", "a key's name is 1-128 characters without spaces")
    if priority not in PRIORITIES:
        raise StoreError("INVALID", f"priority must be one of {', '.join(PRIORITIES)}")


def _row(k: ApiKey) -> tuple:
    lim = k.limits
    return (k.id, k.name, k.owner, ",".join(k.models), lim.requests_per_minute, lim.tokens_per_minute,
            lim.concurrent_requests, lim.token_quota, lim.quota_period, k.priority, k.created_at, k.revoked_at)


def _key(r: tuple) -> ApiKey:
    return ApiKey(id=r[0], name=r[1], owner=r[2], models=tuple(m for m in r[3].split(",") if m),
                  limits=Limits(r[4], r[5], r[6], r[7], r[8]), priority=r[9], created_at=r[10], revoked_at=r[11])
