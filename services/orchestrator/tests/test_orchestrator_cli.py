"""`tokenway keys …` as a user runs it: the installed console script, a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokenway_orchestrator.store import SqliteStore

TOKENWAY = Path(sys.executable).parent / "tokenway"


def cli(store: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(TOKENWAY), "--store", str(store), *args], capture_output=True, text=True, timeout=60)
    assert (out.returncode == 0) == ok, out
    return out


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "tokenway.db"


def test_create_prints_the_key_once_and_it_authenticates(db):
    made = json.loads(cli(db, "keys", "create", "alice", "--owner", "alice@example.com", "--models", "m1,m2",
                          "--rpm", "60", "--tpm", "5000", "--priority", "batch", "--format", "json").stdout)
    assert made["name"] == "alice" and made["models"] == ["m1", "m2"] and made["priority"] == "batch"
    assert made["limits"]["requests_per_minute"] == 60 and made["limits"]["tokens_per_minute"] == 5000
    store = SqliteStore(db)
    assert store.authenticate(made["key"]).id == made["id"]
    store.close()
    listed = json.loads(cli(db, "keys", "list", "--format", "json").stdout)
    assert [k["name"] for k in listed] == ["alice"] and "key" not in listed[0]
    assert made["key"] not in cli(db, "keys", "list").stdout


def test_update_and_revoke_by_name_or_id(db):
    made = json.loads(cli(db, "keys", "create", "bob", "--format", "json").stdout)
    updated = json.loads(cli(db, "keys", "update", "bob", "--name", "bob2", "--concurrency", "3", "--format",
                             "json").stdout)
    assert updated["name"] == "bob2" and updated["limits"]["concurrent_requests"] == 3
    assert updated["limits"]["requests_per_minute"] == 0  # untouched limits stay
    revoked = json.loads(cli(db, "keys", "revoke", made["id"], "--format", "json").stdout)
    assert revoked["revoked_at"] is not None
    assert json.loads(cli(db, "keys", "list", "--format", "json").stdout) == []
    assert len(json.loads(cli(db, "keys", "list", "--all", "--format", "json").stdout)) == 1


def test_refusals_exit_1_with_the_reason(db):
    cli(db, "keys", "create", "carol")
    assert "ALREADY_EXISTS" in cli(db, "keys", "create", "carol", ok=False).stderr
    assert "NOT_FOUND" in cli(db, "keys", "revoke", "nobody", ok=False).stderr
    assert "INVALID" in cli(db, "keys", "create", "dave", "--rpm", "-1", ok=False).stderr


def test_usage_reports_totals_and_records(db):
    import time  # noqa: PLC0415

    from tokenway_orchestrator.cli import since  # noqa: PLC0415
    from tokenway_orchestrator.store import UsageRecord  # noqa: PLC0415

    now = time.time()
    store = SqliteStore(db)
    for rid, key, at, status in (("old", "alice", now - 7200, "ok"), ("new", "alice", now - 60, "ok"),
                                 ("bob-1", "bob", now - 30, "cancelled")):
        store.record_usage(UsageRecord(rid, "k", key, "tokenway-tiny", 10, 4, "stop", status, at))
    store.close()
    recs = json.loads(cli(db, "usage", "--since", "1h", "--format", "json").stdout)
    assert sorted(r["request_id"] for r in recs) == ["bob-1", "new"]
    assert [r["request_id"] for r in json.loads(cli(db, "usage", "--key", "alice", "--format", "json").stdout)] \
        == ["old", "new"]
    text = cli(db, "usage").stdout
    assert "alice  tokenway-tiny  requests 2 (ok 2)" in text and "bob  tokenway-tiny  requests 1 (cancelled 1)" in text
    assert "INVALID" in cli(db, "usage", "--since", "yesterday", ok=False).stderr
    assert since("2026-01-01T00:00:00") == since("2026-01-01T00:00:00+00:00") and since("90s", now=100.0) == 10.0
