"""The orchestrator's durable state: API keys (and, next, usage records and limit counters).

`sqlite.SqliteStore` is the embedded default (one file under `.tokenway/`, WAL). Every backend applies the
same versioned migrations (`migrations.py`) and offers the same methods, so the orchestrator and the
`tokenway` CLI do not care which one holds the state.
"""

from .keys import ApiKey, Limits, StoreError, hash_secret, new_secret  # noqa: F401
from .sqlite import SqliteStore  # noqa: F401
from .usage import UsageRecord, UsageTotal  # noqa: F401
