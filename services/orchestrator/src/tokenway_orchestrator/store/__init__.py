"""The orchestrator's durable state: API keys, usage records, per-key limit meters and leases.

`open_store(spec)` opens one: a `postgresql://` (or `postgres://`) URL is the shared store, PostgreSQL
(`postgres.PostgresStore`), for several orchestrator replicas on one database; anything else is the path of
the embedded default, one SQLite file under `.tokenway/` in WAL mode (`sqlite.SqliteStore`). Both run the
same SQL (`sql.SqlStore`) and apply the same versioned migrations (`migrations.py`) when opened, so the
orchestrator and the `tokenway` CLI do not care which one holds the state.
"""

from __future__ import annotations

from .keys import ApiKey, Limits, StoreError, hash_secret, new_secret  # noqa: F401
from .sql import SqlStore
from .sqlite import SqliteStore
from .usage import UsageRecord, UsageTotal  # noqa: F401

#: URL schemes that name a PostgreSQL store
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(spec: str) -> SqlStore:
    """The store `spec` names: a PostgreSQL URL (`postgresql://user[:password]@host[:port]/dbname`), else a
    SQLite file's path."""
    spec = str(spec)
    if spec.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresStore  # psycopg is imported only by those who use it

        return PostgresStore(spec)
    return SqliteStore(spec)
