"""Versioned schema changes, applied in order, each once, each in its own transaction.

A store records the versions it has applied in `schema_migrations`; opening a store applies the missing
ones. Never edit a released migration: add the next one. The SQL is the common subset of SQLite and
PostgreSQL.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, tuple[str, ...]]] = [
    (1, "api keys", (
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            owner TEXT NOT NULL DEFAULT '',
            key_sha256 TEXT NOT NULL UNIQUE,
            models TEXT NOT NULL DEFAULT '',
            requests_per_minute INTEGER NOT NULL DEFAULT 0,
            tokens_per_minute INTEGER NOT NULL DEFAULT 0,
            concurrent_requests INTEGER NOT NULL DEFAULT 0,
            token_quota BIGINT NOT NULL DEFAULT 0,
            quota_period TEXT NOT NULL DEFAULT 'month',
            priority TEXT NOT NULL DEFAULT 'interactive',
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION
        )""",
    )),
    (2, "usage records", (
        """CREATE TABLE usage_records (
            request_id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL DEFAULT '',
            key_name TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            finish_reason TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            queue_ms DOUBLE PRECISION,
            ttft_ms DOUBLE PRECISION,
            total_ms DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX usage_records_by_time ON usage_records (created_at)",
        "CREATE INDEX usage_records_by_key ON usage_records (key_name, created_at)",
    )),
    (3, "limit meters and leases", (
        """CREATE TABLE limiter_state (
            key_id TEXT PRIMARY KEY,
            request_tat DOUBLE PRECISION NOT NULL DEFAULT 0,
            token_tat DOUBLE PRECISION NOT NULL DEFAULT 0,
            quota_period_start DOUBLE PRECISION NOT NULL DEFAULT 0,
            quota_used BIGINT NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE leases (
            request_id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            holder TEXT NOT NULL,
            reserved_tokens BIGINT NOT NULL DEFAULT 0,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX leases_by_key ON leases (key_id, expires_at)",
        "CREATE INDEX leases_by_holder ON leases (holder)",
    )),
]
