"""The store's logic in the SQL common to SQLite and PostgreSQL; a backend supplies connections.

A backend subclass implements `_tx(kind)`: a context manager giving a `Tx` inside one transaction that
commits on exit and rolls back on an exception. Kinds:
  - "read": a consistent read that never waits for a writer (SQLite WAL reader, PostgreSQL snapshot);
  - "write": committed durably (fsynced) before `_tx` returns: keys, usage records, settlements;
  - "meter": limit meters and leases; must serialise with every other "meter"/"write" transaction on the
    same key (SQLite: BEGIN IMMEDIATE; PostgreSQL: the `FOR UPDATE` row lock below), and may skip the
    fsync (a meter lost in a power cut only forgives a few requests).
Queries use `?` placeholders; a backend whose driver wants `%s` sets `paramstyle = "format"`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence

from . import limits as meters
from .keys import PRIORITIES, ApiKey, Limits, StoreError, hash_secret, new_secret
from .limits import Decision, MeterState
from .migrations import MIGRATIONS
from .usage import STATUSES, UsageRecord, UsageTotal

_COLUMNS = ("id, name, owner, models, requests_per_minute, tokens_per_minute, concurrent_requests, token_quota, "
            "quota_period, priority, created_at, revoked_at")
_USAGE = ("request_id, key_id, key_name, model, prompt_tokens, completion_tokens, finish_reason, status, "
          "created_at, queue_ms, ttft_ms, total_ms")


class Tx:
    """One transaction's statements: `run` (returns the row count), `one`, `all`."""

    def __init__(self, conn, paramstyle: str = "qmark") -> None:
        self._conn, self._format = conn, paramstyle == "format"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._format else sql

    def run(self, sql: str, args: Sequence = ()) -> int:
        return self._conn.execute(self._sql(sql), tuple(args)).rowcount

    def one(self, sql: str, args: Sequence = ()) -> tuple | None:
        return self._conn.execute(self._sql(sql), tuple(args)).fetchone()

    def all(self, sql: str, args: Sequence = ()) -> list[tuple]:
        return self._conn.execute(self._sql(sql), tuple(args)).fetchall()


@dataclasses.dataclass(frozen=True)
class Settlement:
    """How one request ended: its usage record, and its key (None: no limits to settle, record only)."""

    record: UsageRecord
    key: ApiKey | None = None


class SqlStore:
    #: the driver's IntegrityError (a UNIQUE violation)
    integrity_error: type[Exception] = Exception
    #: " FOR UPDATE" where a row lock is how meter transactions serialise (PostgreSQL)
    for_update: str = ""

    # -- what a backend provides -----------------------------------------------------------------

    def _tx(self, kind: str) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def _now(self, tx: Tx) -> float:
        """The clock meters use; a shared server's own clock where replicas share one (PostgreSQL)."""
        return time.time()

    def _migration_lock(self, tx: Tx) -> None:
        """Makes concurrent migrators of one database take turns (SQLite: BEGIN IMMEDIATE already does)."""

    def close(self) -> None:
        raise NotImplementedError

    # -- schema ----------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Applies the migrations this database lacks, each in its own transaction; returns their versions."""
        applied = []
        for version, name, statements in MIGRATIONS:
            with self._tx("write") as tx:
                self._migration_lock(tx)
                tx.run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                       "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
                if tx.one("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)):
                    continue
                for sql in statements:
                    tx.run(sql)
                tx.run("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time()))
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        with self._tx("read") as tx:
            row = tx.one("SELECT MAX(version) FROM schema_migrations")
        return row[0] or 0

    # -- keys ------------------------------------------------------------------------------------

    def create_key(self, name: str, *, owner: str = "", models: tuple[str, ...] = (), limits: Limits = Limits(),  # noqa: B008 - frozen
                   priority: str = "interactive") -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown once and never stored."""
        _check(name, priority, models)
        kid, secret = new_secret()
        key = ApiKey(kid, name, owner, tuple(models), limits, priority, time.time())
        try:
            with self._tx("write") as tx:
                tx.run(f"INSERT INTO api_keys ({_COLUMNS}, key_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*_row(key), hash_secret(secret)))
        except self.integrity_error as exc:
            raise StoreError("ALREADY_EXISTS", f"a key named {name!r} exists") from exc
        return key, secret

    def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        sql = f"SELECT {_COLUMNS} FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        with self._tx("read") as tx:
            return [_key(r) for r in tx.all(sql + " ORDER BY created_at, id")]

    def get_key(self, name_or_id: str) -> ApiKey:
        with self._tx("read") as tx:
            row = tx.one(f"SELECT {_COLUMNS} FROM api_keys WHERE name = ? OR id = ? ORDER BY name = ? DESC",
                         (name_or_id, name_or_id, name_or_id))
        if row is None:
            raise StoreError("NOT_FOUND", f"no key named or with id {name_or_id!r}")
        return _key(row)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key whose secret this is, revoked or not; None when there is none."""
        with self._tx("read") as tx:
            row = tx.one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_sha256 = ?", (hash_secret(presented),))
        return _key(row) if row else None

    def revoke_key(self, name_or_id: str) -> ApiKey:
        key = self.get_key(name_or_id)
        if key.revoked:
            return key
        now = time.time()
        with self._tx("write") as tx:
            tx.run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key.id))
        return dataclasses.replace(key, revoked_at=now)

    def update_key(self, name_or_id: str, *, name: str | None = None, owner: str | None = None,
                   models: tuple[str, ...] | None = None, limits: Limits | None = None,
                   priority: str | None = None) -> ApiKey:
        key = self.get_key(name_or_id)
        new = dataclasses.replace(key, **{k: v for k, v in (("name", name), ("owner", owner), ("models", models),
                                                            ("limits", limits), ("priority", priority)) if v is not None})
        _check(new.name, new.priority, new.models)
        try:
            with self._tx("write") as tx:
                tx.run("UPDATE api_keys SET name = ?, owner = ?, models = ?, requests_per_minute = ?, "
                       "tokens_per_minute = ?, concurrent_requests = ?, token_quota = ?, quota_period = ?, "
                       "priority = ? WHERE id = ?", (*_row(new)[1:10], key.id))
        except self.integrity_error as exc:
            raise StoreError("ALREADY_EXISTS", f"a key named {new.name!r} exists") from exc
        return new

    # -- limits ----------------------------------------------------------------------------------

    def _meter(self, tx: Tx, key_id: str) -> MeterState:
        tx.run("INSERT INTO limiter_state (key_id) VALUES (?) ON CONFLICT (key_id) DO NOTHING", (key_id,))
        row = tx.one("SELECT request_tat, token_tat, quota_period_start, quota_used FROM limiter_state "
                     f"WHERE key_id = ?{self.for_update}", (key_id,))
        return MeterState(*row)

    @staticmethod
    def _save(tx: Tx, key_id: str, st: MeterState) -> None:
        tx.run("UPDATE limiter_state SET request_tat = ?, token_tat = ?, quota_period_start = ?, quota_used = ? "
               "WHERE key_id = ?", (st.request_tat, st.token_tat, st.quota_period_start, st.quota_used, key_id))

    @staticmethod
    def _live(tx: Tx, key_id: str, now: float, exclude: str = "") -> tuple[int, int]:
        """(live leases, their reserved tokens) of a key, `exclude` left out; expired leases are dropped."""
        tx.run("DELETE FROM leases WHERE key_id = ? AND expires_at <= ?", (key_id, now))
        row = tx.one("SELECT COUNT(*), COALESCE(SUM(reserved_tokens), 0) FROM leases WHERE key_id = ? "
                     "AND request_id <> ?", (key_id, exclude))
        return int(row[0]), int(row[1])

    def admit(self, key: ApiKey, request_id: str, holder: str, lease_seconds: float) -> Decision:
        """Phase one of admission (request rate, concurrency, a spent quota); when admitted the request
        holds a lease, renewed by its holder (`renew_leases`) and dropped when it settles or expires."""
        with self._tx("meter") as tx:
            st = self._meter(tx, key.id)
            now = self._now(tx)
            live, reserved = self._live(tx, key.id, now)
            decision = meters.admit_request(key.limits, st, now, live, reserved)
            if decision.allowed:
                self._save(tx, key.id, st)
                tx.run("INSERT INTO leases (request_id, key_id, holder, reserved_tokens, expires_at) "
                       "VALUES (?, ?, ?, 0, ?)", (request_id, key.id, holder, now + lease_seconds))
        return decision

    def reserve(self, key: ApiKey, request_id: str, tokens: int) -> Decision:
        """Phase two, once the prompt is known: reserves `tokens` (prompt + max_tokens) from the token rate
        and the quota, on the request's lease."""
        with self._tx("meter") as tx:
            st = self._meter(tx, key.id)
            now = self._now(tx)
            _, others = self._live(tx, key.id, now, exclude=request_id)
            decision = meters.reserve_tokens(key.limits, st, now, tokens, others)
            if decision.allowed:
                self._save(tx, key.id, st)
                tx.run("UPDATE leases SET reserved_tokens = ? WHERE request_id = ?", (tokens, request_id))
        return decision

    def renew_leases(self, holder: str, lease_seconds: float, request_ids: Sequence[str] | None = None) -> int:
        """Extends the leases of `holder` (one orchestrator process): those of `request_ids` (its requests
        still running), or all of them; returns how many it extended."""
        with self._tx("meter") as tx:
            expires = self._now(tx) + lease_seconds
            if request_ids is None:
                return tx.run("UPDATE leases SET expires_at = ? WHERE holder = ?", (expires, holder))
            ids, renewed = list(request_ids), 0
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                renewed += tx.run(f"UPDATE leases SET expires_at = ? WHERE holder = ? AND request_id IN "
                                  f"({', '.join('?' * len(part))})", (expires, holder, *part))
            return renewed

    def settle(self, items: Sequence[Settlement]) -> list[bool]:
        """Ends requests, in one durable transaction: each one's usage record is written, its lease dropped,
        the tokens it reserved and did not use given back, and what it used counted against its key's
        quota. Returns, per item, False when its request already had a record (then nothing else changes:
        a retried settlement never counts twice)."""
        for it in items:
            if it.record.status not in STATUSES:
                raise StoreError("INVALID", f"status must be one of {', '.join(STATUSES)}")
        written = []
        with self._tx("write") as tx:
            keyed = sorted({it.key.id for it in items if it.key is not None})
            if len(keyed) > 1:  # every meter of the batch locked in one order: two batches never wait in a cycle
                for kid in keyed:
                    self._meter(tx, kid)
            for it in items:
                r = it.record
                new = tx.run(f"INSERT INTO usage_records ({_USAGE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                             "ON CONFLICT (request_id) DO NOTHING", _usage_row(r)) == 1
                written.append(new)
                if it.key is None or not new:
                    continue
                lease = tx.one("SELECT reserved_tokens FROM leases WHERE request_id = ?", (r.request_id,))
                if lease is None and not it.key.limits.token_quota:
                    continue
                st = self._meter(tx, it.key.id)
                meters.settle(it.key.limits, st, self._now(tx), int(lease[0]) if lease else 0,
                              r.prompt_tokens + r.completion_tokens)
                self._save(tx, it.key.id, st)
                tx.run("DELETE FROM leases WHERE request_id = ?", (r.request_id,))
        return written

    def leases(self, key_id: str) -> int:
        """Live leases of a key (for tests and the CLI)."""
        with self._tx("read") as tx:
            row = tx.one("SELECT COUNT(*) FROM leases WHERE key_id = ? AND expires_at > ?", (key_id, self._now(tx)))
        return int(row[0])

    # -- usage -----------------------------------------------------------------------------------

    def record_usage(self, rec: UsageRecord) -> bool:
        """Writes rec durably (committed, fsynced) before returning; False when its request already has one."""
        return self.settle([Settlement(rec)])[0]

    def usage_records(self, *, since: float = 0.0, key: str | None = None) -> list[UsageRecord]:
        """Records created at or after `since`, of the key named `key` when given, oldest first."""
        sql, args = f"SELECT {_USAGE} FROM usage_records WHERE created_at >= ?", [since]
        if key is not None:
            sql, args = sql + " AND key_name = ?", [*args, key]
        with self._tx("read") as tx:
            rows = tx.all(sql + " ORDER BY created_at, request_id", args)
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

