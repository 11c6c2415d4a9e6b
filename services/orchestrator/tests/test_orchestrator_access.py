"""API keys, model scopes and the per-key rate limit, without gRPC."""

import pytest

from tokenway_common import errors
from tokenway_orchestrator.core.access import Access


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_open_api_admits_anyone_without_a_key():
    access = Access((), rpm=0, burst=1)
    assert access.open
    access.authorize(access.authenticate(None, "ipv4:127.0.0.1:5555"), "any-model")


@pytest.mark.parametrize("header, reason", [(None, "MISSING_API_KEY"), ("Bearer ", "MISSING_API_KEY"),
                                            ("Basic abc", "MISSING_API_KEY"), ("Bearer wrong", "INVALID_API_KEY")])
def test_bad_or_missing_keys_are_unauthenticated(header, reason):
    access = Access(("sk-good",), rpm=0, burst=1)
    with pytest.raises(errors.Unauthenticated) as e:
        access.authenticate(header, "peer")
    assert e.value.reason == reason


def test_a_scoped_key_may_use_only_its_models():
    access = Access(("sk-all", "sk-tiny@tokenway-tiny|other"), rpm=0, burst=1)
    tiny = access.authenticate("Bearer sk-tiny", "peer")
    access.authorize(tiny, "tokenway-tiny")
    with pytest.raises(errors.PermissionDenied) as e:
        access.authorize(tiny, "big-model")
    assert e.value.reason == "MODEL_NOT_ALLOWED"
    access.authorize(access.authenticate("bearer sk-all", "peer"), "big-model")
    assert "sk-tiny" not in tiny.name  # the principal's name never carries the secret


def test_rate_limit_allows_a_burst_then_refills_at_rpm():
    clock = Clock()
    access = Access(("k1", "k2"), rpm=60, burst=2, clock=clock)
    k1, k2 = access.authenticate("Bearer k1", "p"), access.authenticate("Bearer k2", "p")
    access.admit(k1)
    access.admit(k1)
    with pytest.raises(errors.ResourceExhausted) as e:
        access.admit(k1)
    assert e.value.reason == "RATE_LIMITED" and 0 < e.value.retry_after <= 1.0
    access.admit(k2)  # buckets are per key
    clock.now += 1.0  # 60 rpm: one request a second
    access.admit(k1)
