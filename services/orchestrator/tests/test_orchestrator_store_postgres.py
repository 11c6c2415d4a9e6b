"""The PostgreSQL store against a real server (tests/pgserver.py): what only a shared store has to get right.
Several handles on one database stand for orchestrator replicas; their threads call the store at once.
No test sleeps to synchronise or assumes a speed: bounds come from the server clock each call read."""

from __future__ import annotations

import itertools
import threading
import time
import types

import psycopg
import pytest

from tests import pgserver
from tokenway_orchestrator import cli
from tokenway_orchestrator.store import Limits, SqliteStore, UsageRecord, open_store
from tokenway_orchestrator.store.migrations import MIGRATIONS
from tokenway_orchestrator.store.limits import request_tolerance
from tokenway_orchestrator.store import sql
from tokenway_orchestrator.store.postgres import PostgresStore
from tokenway_orchestrator.store.sql import Settlement

VERSIONS = [v for v, _, _ in MIGRATIONS]


@pytest.fixture
def url(pg_server):
    return pg_server.new_database()


@pytest.fixture
def opened():
    """Closes, at the end, the stores a test appends."""
    stores: list = []
    yield stores
    for s in stores:
        s.close()


class Clocked(PostgresStore):
    """Remembers, per thread, the meter clock its last transaction read (admit reads it once)."""

    def __init__(self, url: str) -> None:
        self.last = threading.local()
        super().__init__(url)

    def _now(self, tx):
        self.last.now = super()._now(tx)
        return self.last.now


def _together(n: int, work) -> list:
    """Runs work(i) on n threads released at once; their results (an exception fails the test)."""
    barrier, out, errors = threading.Barrier(n), [None] * n, []

    def run(i: int) -> None:
        try:
            barrier.wait()
            out[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def _record(rid: str, key, tokens: int = 0) -> UsageRecord:
    return UsageRecord(rid, key.id, key.name, "tokenway-tiny", tokens, 0, "stop", "ok", time.time())


def _server_now(pg_server) -> float:
    return float(pg_server.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())")[0][0])


def test_open_store_picks_the_backend_by_its_spec(url, tmp_path, opened):
    for spec in (url, url.replace("postgresql://", "postgres://", 1)):
        opened.append(open_store(spec))
        assert isinstance(opened[-1], PostgresStore) and opened[-1].schema_version() == VERSIONS[-1]
    opened.append(open_store(str(tmp_path / "x.db")))
    assert isinstance(opened[-1], SqliteStore)


def test_the_cli_manages_keys_in_a_postgresql_store(url, opened, capsys):
    assert cli.run(["--store", url, "keys", "create", "ci-bot", "--rpm", "30", "--format", "json"]) == 0
    capsys.readouterr()
    assert cli.run(["--store", url, "keys", "list"]) == 0 and "ci-bot" in capsys.readouterr().out
    assert cli.run(["--store", url, "keys", "create", "ci-bot"]) == 1  # a duplicate name: refused, said why
    assert "ALREADY_EXISTS" in capsys.readouterr().err
    opened.append(PostgresStore(url))
    assert opened[-1].get_key("ci-bot").limits.requests_per_minute == 30


def test_concurrent_migrators_apply_each_migration_once(url, pg_server, opened):
    applied: list[int] = []

    class Counting(PostgresStore):
        def migrate(self):
            got = super().migrate()
            applied.extend(got)
            return got

    opened.extend(_together(6, lambda i: Counting(url)))
    assert sorted(applied) == VERSIONS  # each version by exactly one of the six
    rows = pg_server.execute("SELECT version FROM schema_migrations ORDER BY version", url.rsplit("/", 1)[1])
    assert [v for v, in rows] == VERSIONS
    assert all(s.migrate() == [] and s.schema_version() == VERSIONS[-1] for s in opened)


def test_two_replicas_share_one_request_rate(url, opened):
    """Four threads on two replicas hammer one key. GCRA: an admission needs a meter at most tau from empty
    (tat <= now + tau) and then fills it for T = 60/rpm seconds, so on the one server clock k admissions span
    at least k*T - tau, a refusal only happens less than T after the last admission, and the count is within
    the window's budget."""
    rpm, calls = 1200, 120
    period = 60.0 / rpm
    tau = request_tolerance(rpm)
    a, b = Clocked(url), Clocked(url)
    opened += [a, b]
    key, _ = a.create_key("shared", limits=Limits(requests_per_minute=rpm))

    def hammer(i: int) -> list[tuple[float, bool]]:
        store, out = (a, b)[i % 2], []
        for n in range(calls):
            d = store.admit(key, f"r{i}-{n}", f"replica-{i % 2}", 60.0)
            out.append((store.last.now, d.allowed))
        return out

    seen = sorted(x for xs in _together(4, hammer) for x in xs)
    nows = [t for t, _ in seen]
    assert len(set(nows)) == len(nows)  # the row lock ordered every admission: no two read the same instant
    admitted = [t for t, ok in seen if ok]
    assert admitted[0] == nows[0]  # an empty meter admits the first
    for i in range(len(admitted)):  # never more than the rate plus the tolerance, over any stretch
        for j in range(i + 1, min(i + 40, len(admitted))):
            assert admitted[j] - admitted[i] >= (j - i) * period - tau - 1e-6
    last = None
    for t, ok in seen:  # no refusal while the meter was empty
        if ok:
            last = t
        else:
            assert t < last + period + 1e-6
    span = nows[-1] - nows[0]
    assert len(admitted) <= (span + tau) / period + 1 + 1e-9
    # the lower bound from the same data: after the meter empties, the next call is admitted, and it comes
    # at most the longest pause between two calls later
    slack = max(y - x for x, y in itertools.pairwise(nows))
    assert len(admitted) >= int((nows[-1] - admitted[0]) / (period + slack))
    assert a.leases(key.id) == len(admitted) == b.leases(key.id)


def test_two_replicas_share_one_concurrency_limit(url, opened):
    a, b = PostgresStore(url), PostgresStore(url)
    opened += [a, b]
    key, _ = a.create_key("conc", limits=Limits(concurrent_requests=3))
    decisions = _together(8, lambda i: (a, b)[i % 2].admit(key, f"r{i}", f"replica-{i % 2}", 60.0))
    assert sum(d.allowed for d in decisions) == 3
    assert {d.limit for d in decisions if not d.allowed} == {"concurrent_requests"}
    winners = [i for i, d in enumerate(decisions) if d.allowed]
    assert b.leases(key.id) == 3 and not a.admit(key, "late", "replica-0", 60.0).allowed
    assert b.settle([Settlement(_record(f"r{winners[0]}", key), key)]) == [True]  # one ends on the other replica
    assert a.admit(key, "late", "replica-0", 60.0).allowed and not b.admit(key, "later", "replica-1", 60.0).allowed

    # churn: threads admit and settle on both replicas; running requests never exceed the limit. A request
    # counts as running from its admission's commit to its settlement's start, within its lease's life.
    for s, rid in ((a, "late"), *((a, f"r{i}") for i in winners[1:])):
        s.settle([Settlement(_record(rid, key), key)])
    running, most, lock = [0], [0], threading.Lock()

    def churn(i: int) -> int:
        store, ok = (a, b)[i % 2], 0
        for n in range(40):
            rid = f"c{i}-{n}"
            if store.admit(key, rid, f"replica-{i % 2}", 60.0).allowed:
                ok += 1
                with lock:
                    running[0] += 1
                    most[0] = max(most[0], running[0])
                assert store.leases(key.id) <= 3  # the store's own count, while this one runs
                with lock:
                    running[0] -= 1
                store.settle([Settlement(_record(rid, key), key)])
        return ok

    assert sum(_together(6, churn)) > 0 and most[0] <= 3
    assert a.leases(key.id) == 0


def test_settling_a_request_twice_counts_it_once(url, pg_server, opened):
    a, b = PostgresStore(url), PostgresStore(url)
    opened += [a, b]
    key, _ = a.create_key("quota", limits=Limits(token_quota=1000, tokens_per_minute=600_000))
    assert a.admit(key, "r1", "replica-0", 60.0).allowed and a.reserve(key, "r1", 300).allowed
    # both replicas settle r1 at once (a retried settlement): exactly one counts
    results = _together(2, lambda i: (a, b)[i].settle([Settlement(_record("r1", key, tokens=120), key)]))
    assert sorted(r[0] for r in results) == [False, True]
    assert b.settle([Settlement(_record("r1", key, tokens=120), key)]) == [False]
    used = pg_server.execute("SELECT quota_used FROM limiter_state WHERE key_id = %s", url.rsplit("/", 1)[1],
                             (key.id,))
    assert used == [(120,)] and a.leases(key.id) == 0 and len(b.usage_records()) == 1


def test_meters_read_the_servers_clock(url, pg_server, opened, monkeypatch):
    store = PostgresStore(url)
    opened.append(store)
    key, _ = store.create_key("clock")
    monkeypatch.setattr(sql, "time", types.SimpleNamespace(time=lambda: 1.0e9))  # this host's clock, wrong
    before = _server_now(pg_server)
    assert store.admit(key, "r1", "h", 100.0).allowed
    after = _server_now(pg_server)
    (expires,), = pg_server.execute("SELECT expires_at FROM leases", url.rsplit("/", 1)[1])
    assert before + 100.0 <= expires <= after + 100.0
    assert store.leases(key.id) == 1 and store.renew_leases("h", 200.0) == 1


def _terminate(pg_server, url: str) -> int:
    """Ends every backend of the store's database (waiting until they are gone); how many there were."""
    rows = pg_server.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", args=(url.rsplit("/", 1)[1],))
    assert all(ok for ok, in rows)
    return len(rows)


def test_a_lost_connection_is_replaced(url, pg_server, opened):
    store = PostgresStore(url)
    opened.append(store)
    key, secret = store.create_key("k", limits=Limits(concurrent_requests=100))
    assert store.admit(key, "r0", "h", 60.0).allowed and store.authenticate(secret) == key
    assert _terminate(pg_server, url) >= 3  # the idle read, write and meter connections
    # each kind finds its idle connection dead at BEGIN, before doing anything: it opens another and goes on
    assert store.authenticate(secret) == key and store.admit(key, "r1", "h", 60.0).allowed
    assert store.create_key("k2")[0].name == "k2"

    # lost in the middle of a transaction: that call fails, the next ones work
    with pytest.raises(psycopg.OperationalError):
        with store._tx("write") as tx:
            pid = tx.one("SELECT pg_backend_pid()")[0]
            pg_server.execute("SELECT pg_terminate_backend(%s, 10000)", args=(pid,))
            tx.run("SELECT 1")
    for n in range(5):  # more calls than the pool has connections: none was leaked
        assert store.settle([Settlement(_record(f"r{n}", key), key)]) == [True]
    assert store.leases(key.id) == 0


def test_a_missing_server_fails_loudly_with_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(pgserver, "DEBIAN", tmp_path / "none")
    monkeypatch.setenv("TOKENWAY_PG_BIN", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pgserver.PostgresMissing, match="apt-get install postgresql"):
        pgserver.find_bindir()
