"""Per-key limit arithmetic (store/limits.py) on explicit clocks, and on a real SQLite store."""

from __future__ import annotations

import datetime as dt

import pytest
from tokenway_orchestrator.store import Limits, SqliteStore, UsageRecord
from tokenway_orchestrator.store import limits as lim
from tokenway_orchestrator.store.limits import MeterState
from tokenway_orchestrator.store.sql import Settlement

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC).timestamp()


def test_requests_per_minute_is_a_rate_and_a_burst_cannot_double_it():
    limits, st = Limits(requests_per_minute=600), MeterState()
    admitted, now = 0, T0
    while now < T0 + 120:  # a client hammering every 10 ms for two minutes
        admitted += lim.admit_request(limits, st, now, 0, 0).allowed
        now += 0.01
    assert 1200 <= admitted <= 1202  # 600 a minute, whatever the window: not 600 at once then 600 more
    refused = lim.admit_request(limits, st, st.request_tat - 0.25, 0, 0)  # 0.1 s of tolerance: 0.15 s to wait
    assert not refused.allowed and refused.limit == lim.REQUESTS and refused.retry_after == pytest.approx(0.15)
    hdr = dict(refused.headers)
    assert hdr["x-ratelimit-limit-requests"] == "600" and hdr["x-ratelimit-reset-requests"] == "250ms"


def test_tokens_are_reserved_at_admission_and_what_was_not_used_is_given_back():
    limits, st = Limits(tokens_per_minute=600), MeterState()  # 10 tokens a second
    assert lim.reserve_tokens(limits, st, T0, 100, 0).allowed  # prompt + max_tokens
    assert not lim.reserve_tokens(limits, st, T0 + 5, 10, 0).allowed  # 100 tokens = 10 s of meter
    lim.settle(limits, st, T0 + 5, reserved=100, used=40)  # 60 given back: the meter empties at T0 + 4
    assert lim.reserve_tokens(limits, st, T0 + 5, 10, 0).allowed
    d = lim.reserve_tokens(limits, st, T0 + 5, 10, 0)
    assert not d.allowed and d.limit == lim.TOKENS and d.retry_after == pytest.approx(1.0)
    assert dict(d.headers)["x-ratelimit-remaining-tokens"] == "590"


def test_a_quota_counts_settled_and_reserved_tokens_and_resets_with_its_period():
    limits, st = Limits(token_quota=100, quota_period="day"), MeterState()
    assert lim.reserve_tokens(limits, st, T0, 60, 0).allowed
    d = lim.reserve_tokens(limits, st, T0, 50, reserved_others=60)
    midnight = dt.datetime(2026, 12, 8, tzinfo=dt.UTC).timestamp()
    assert not d.allowed and d.limit == lim.QUOTA and d.retry_after == pytest.approx(midnight - T0)
    lim.settle(limits, st, T0, reserved=60, used=30)
    assert st.quota_used == 30 and lim.reserve_tokens(limits, st, T0, 50, 0).allowed
    lim.settle(limits, st, T0, reserved=50, used=70)
    assert not lim.admit_request(limits, st, T0, 0, 0).allowed  # spent: refused before any tokenizer work
    assert lim.admit_request(limits, st, midnight, 0, 0).allowed and st.quota_used == 0
    assert lim.period_start(T0, "month") == dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
    assert lim.period_end(lim.period_start(T0, "month"), "month") == dt.datetime(
        2027, 1, 1, tzinfo=dt.UTC).timestamp()


def test_concurrency_counts_live_requests():
    limits, st = Limits(concurrent_requests=2), MeterState()
    assert lim.admit_request(limits, st, T0, 1, 0).allowed
    d = lim.admit_request(limits, st, T0, 2, 0)
    assert not d.allowed and d.limit == lim.CONCURRENCY


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "tokenway.db")
    yield s
    s.close()


def _record(key, rid, prompt=0, completion=0, status="ok"):
    return UsageRecord(rid, key.id, key.name, "m", prompt, completion, "stop", status, T0)


def test_leases_hold_concurrency_until_the_request_settles_and_settling_twice_counts_once(store):
    key, _ = store.create_key("k", limits=Limits(concurrent_requests=1, tokens_per_minute=60_000, token_quota=1000))
    assert store.admit(key, "r1", "h", 30).allowed
    assert store.reserve(key, "r1", 300).allowed
    d = store.admit(key, "r2", "h", 30)
    assert not d.allowed and d.limit == lim.CONCURRENCY and store.leases(key.id) == 1
    assert store.settle([Settlement(_record(key, "r1", 10, 20), key)]) == [True]
    assert store.leases(key.id) == 0 and store.admit(key, "r2", "h", 30).allowed
    assert store.settle([Settlement(_record(key, "r1", 10, 20), key)]) == [False]  # a retried settlement
    d = store.reserve(key, "r2", 971)
    assert not d.allowed and d.limit == lim.QUOTA and "970 left" in d.message  # 1000 - 30: counted once


def test_an_expired_lease_frees_its_slot(store):
    key, _ = store.create_key("k", limits=Limits(concurrent_requests=1))
    assert store.admit(key, "r1", "crashed-holder", 0.0).allowed  # its holder never renews it
    assert store.admit(key, "r2", "h", 30).allowed
    assert store.renew_leases("h", 30) == 1 and store.renew_leases("crashed-holder", 30) == 0


def test_a_holder_renews_only_the_leases_of_requests_it_still_runs(store):
    key, _ = store.create_key("k", limits=Limits(concurrent_requests=2))
    assert store.admit(key, "running", "h", 1000).allowed and store.admit(key, "unsettled", "h", 1000).allowed
    assert store.renew_leases("h", -1, ["unsettled"]) == 1 and store.renew_leases("other", 30, ["running"]) == 0
    assert store.leases(key.id) == 1  # only the lease named was touched: it is past its time, its slot free
