"""The store on both backends (a real SQLite file, a real PostgreSQL server): keys hashed, never stored in
clear; revocation; migrations; usage records. SQLite's own (the file's bytes, WAL) are SQLite only;
PostgreSQL's own (concurrent replicas, the server's clock, lost connections) are in
test_orchestrator_store_postgres.py."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from tokenway_orchestrator.store import Limits, SqliteStore, StoreError, UsageRecord, open_store
from tokenway_orchestrator.store.migrations import MIGRATIONS


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """Opens stores on one fresh database of one backend: each call another handle on the same state (a
    reopened file, a second replica); all are closed at the end."""
    if request.param == "sqlite":
        spec = str(tmp_path / "state" / "tokenway.db")
    else:
        spec = request.getfixturevalue("pg_server").new_database()
    opened = []

    def open_again():
        opened.append(open_store(spec))
        return opened[-1]

    yield open_again
    for s in opened:
        s.close()


@pytest.fixture
def store(backend):
    return backend()


@pytest.fixture
def sqlite_store(tmp_path):
    s = SqliteStore(tmp_path / "state" / "tokenway.db")
    yield s
    s.close()


def test_a_key_authenticates_and_its_secret_is_nowhere_in_the_file(sqlite_store):
    store = sqlite_store
    key, secret = store.create_key("alice-dev", owner="alice", models=("tokenway-tiny",),
                                   limits=Limits(requests_per_minute=60, tokens_per_minute=10_000))
    assert secret.startswith(f"tw-{key.id}-") and len(secret) > 40
    got = store.authenticate(secret)
    assert got == key and got.allows("tokenway-tiny") and not got.allows("other")
    assert store.authenticate(secret + "x") is None and store.authenticate("") is None
    store.close()
    raw = b"".join(p.read_bytes() for p in store.path.parent.iterdir())  # the db, its WAL and shm
    random_part = secret[len(f"tw-{key.id}-"):]  # (it may itself contain "-")
    assert secret.encode() not in raw and random_part.encode() not in raw
    assert key.id.encode() in raw  # what is stored is findable: the check above can fail


def test_revoked_keys_are_known_but_revoked(store):
    key, secret = store.create_key("bob")
    assert not store.authenticate(secret).revoked
    revoked = store.revoke_key("bob")
    assert revoked.revoked and store.authenticate(secret).revoked
    assert store.list_keys() == [] and [k.name for k in store.list_keys(include_revoked=True)] == ["bob"]
    assert store.revoke_key(key.id).revoked_at == revoked.revoked_at  # by id too; revoking twice changes nothing


def test_update_by_name_or_id(store):
    key, secret = store.create_key("carol", priority="batch")
    store.update_key("carol", models=("a", "b"), limits=Limits(concurrent_requests=4), priority="interactive")
    store.update_key(key.id, name="carol-2")
    got = store.get_key("carol-2")
    assert got.models == ("a", "b") and got.limits.concurrent_requests == 4 and got.priority == "interactive"
    assert store.authenticate(secret).name == "carol-2"


@pytest.mark.parametrize("call, reason", [
    (lambda s: s.create_key("dup"), "ALREADY_EXISTS"),
    (lambda s: s.update_key("other", name="dup"), "ALREADY_EXISTS"),
    (lambda s: s.get_key("nobody"), "NOT_FOUND"),
    (lambda s: s.revoke_key("nobody"), "NOT_FOUND"),
    (lambda s: s.create_key("has space"), "INVALID"),
    (lambda s: s.create_key("p", priority="urgent"), "INVALID"),
    (lambda s: s.create_key("m", models=("a,b",)), "INVALID"),
    (lambda s: s.create_key("l", limits=Limits(quota_period="year")), "INVALID"),
])
def test_refusals_say_why(store, call, reason):
    store.create_key("dup")
    store.create_key("other")
    with pytest.raises(StoreError) as e:
        call(store)
    assert e.value.reason == reason


def test_migrations_apply_once_and_the_file_is_wal(tmp_path):
    path = tmp_path / "tokenway.db"
    first = SqliteStore(path)
    assert first.schema_version() == MIGRATIONS[-1][0]
    key, _ = first.create_key("kept")
    first.close()
    again = SqliteStore(path)
    assert again.migrate() == [] and again.get_key("kept") == key
    again.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [v for v, in db.execute("SELECT version FROM schema_migrations")] == [v for v, _, _ in MIGRATIONS]


def test_concurrent_openers_apply_each_migration_once(tmp_path):
    path = tmp_path / "tokenway.db"
    stores, errors = [], []

    def open_one() -> None:
        try:
            stores.append(SqliteStore(path))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(stores) == 4
    assert sum(len(s.migrate()) for s in stores) == 0
    for s in stores:
        s.close()


def _rec(rid: str, key: str = "alice", status: str = "ok", at: float = 1000.0, **kw) -> UsageRecord:
    base = dict(request_id=rid, key_id="k1", key_name=key, model="tokenway-tiny", prompt_tokens=10,
                completion_tokens=5, finish_reason="stop", status=status, created_at=at)
    return UsageRecord(**{**base, **kw})


def test_one_usage_record_per_request_and_it_survives_reopening(backend):
    store = backend()
    assert store.record_usage(_rec("r1", ttft_ms=12.5, total_ms=40.0))
    assert not store.record_usage(_rec("r1", completion_tokens=99))  # a second write of r1 keeps the first
    store.record_usage(_rec("r2", status="cancelled", finish_reason="cancelled", completion_tokens=2, at=2000.0))
    store.record_usage(_rec("r3", key="bob", status="rejected", finish_reason="", prompt_tokens=0,
                            completion_tokens=0, at=3000.0))
    store.close()
    again = backend()  # what was committed is stored (durably: before record_usage returned)
    recs = again.usage_records()
    assert [r.request_id for r in recs] == ["r1", "r2", "r3"] and recs[0].completion_tokens == 5
    assert recs[0].ttft_ms == 12.5 and recs[0].queue_ms is None
    assert [r.request_id for r in again.usage_records(since=1500.0)] == ["r2", "r3"]
    assert [r.request_id for r in again.usage_records(key="bob")] == ["r3"]
    totals = {t.key_name: t for t in again.usage_totals()}
    assert totals["alice"].requests == 2 and totals["alice"].completion_tokens == 7
    assert totals["alice"].by_status == {"ok": 1, "cancelled": 1} and totals["bob"].by_status == {"rejected": 1}
    with pytest.raises(StoreError):
        again.record_usage(_rec("r4", status="weird"))
    again.close()
