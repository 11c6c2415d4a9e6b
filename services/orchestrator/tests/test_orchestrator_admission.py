"""The orchestrator's admission queue: bounded, by priority class, shedding batch for interactive."""

from __future__ import annotations

import asyncio

import pytest

from tokenway_common import errors
from tokenway_orchestrator.policy.admission import Admission


async def _queued(adm: Admission, n: int) -> None:
    while adm.waiting < n:
        await asyncio.sleep(0)  # let the waiters run up to their queue entry


async def test_waiters_are_served_interactive_first_then_in_order():
    adm = Admission(max_running=1, max_queued=10, max_wait=30)
    assert await adm.acquire("interactive", 1) == 1
    order = []

    async def wait(name, priority):
        await adm.acquire(priority, 1)
        order.append(name)
        adm.release(1)
    tasks = [asyncio.create_task(wait(n, p)) for n, p in
             [("b1", "batch"), ("i1", "interactive"), ("b2", "batch"), ("i2", "interactive")]]
    await _queued(adm, 4)
    adm.release(1)
    await asyncio.gather(*tasks)
    assert order == ["i1", "i2", "b1", "b2"] and adm.running == 0


async def test_a_full_queue_sheds_the_newest_batch_request_for_an_interactive_one():
    adm = Admission(max_running=1, max_queued=2, max_wait=30)
    await adm.acquire("interactive", 1)
    b1 = asyncio.create_task(adm.acquire("batch", 1))
    b2 = asyncio.create_task(adm.acquire("batch", 1))
    await _queued(adm, 2)
    i1 = asyncio.create_task(adm.acquire("interactive", 1))
    with pytest.raises(errors.ResourceExhausted) as e:
        await b2
    assert e.value.reason == "SHED" and e.value.retry_after
    i2 = asyncio.create_task(adm.acquire("interactive", 1))
    with pytest.raises(errors.ResourceExhausted) as e:  # b1 shed too; then the queue holds only interactive
        await b1
    with pytest.raises(errors.ResourceExhausted) as e:
        await adm.acquire("interactive", 1)
    assert e.value.reason == "OVERLOADED"
    with pytest.raises(errors.ResourceExhausted):
        await adm.acquire("batch", 1)
    adm.release(1)
    await i1
    adm.release(1)
    await i2
    assert adm.shed == 2 and adm.refused == 2


async def test_waiting_is_bounded_and_a_caller_that_gives_up_takes_nothing():
    adm = Admission(max_running=2, max_queued=4, max_wait=0.05)
    await adm.acquire("interactive", 2)
    with pytest.raises(errors.ResourceExhausted) as e:
        await adm.acquire("interactive", 1)
    assert e.value.reason == "QUEUE_TIMEOUT" and adm.waiting == 0
    adm.max_wait = 30
    gone = asyncio.create_task(adm.acquire("batch", 1))
    await _queued(adm, 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    adm.release(2)
    assert adm.running == 0 and adm.waiting == 0
    assert await adm.acquire("batch", 5) == 2  # larger than the whole: runs alone
