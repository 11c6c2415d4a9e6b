"""The orchestrator's admission: bounded, interactive never queued by default, batch queued within its
share, batch shed for interactive."""

from __future__ import annotations

import asyncio

import pytest

from tokenway_common import errors
from tokenway_orchestrator.policy.admission import Admission

WAIT = {"interactive": 30.0, "batch": 30.0}


async def _queued(adm: Admission, n: int) -> None:
    while adm.waiting < n:
        await asyncio.sleep(0)  # let the waiters run up to their queue entry


async def test_by_default_an_interactive_request_is_refused_at_once_and_a_batch_one_waits():
    adm = Admission(max_running=2, max_queued=4, max_wait={"interactive": 0.0, "batch": 30.0}, batch_share=1.0)
    assert await adm.acquire("interactive", 2) == 2
    with pytest.raises(errors.ResourceExhausted) as e:
        await adm.acquire("interactive", 1)
    assert e.value.reason == "OVERLOADED" and e.value.retry_after and adm.waiting == 0
    batch = asyncio.create_task(adm.acquire("batch", 1))
    await _queued(adm, 1)
    adm.release(1, "interactive")
    assert await batch == 1 and adm.running == 2


async def test_batch_holds_at_most_its_share_so_interactive_finds_room():
    adm = Admission(max_running=4, max_queued=4, max_wait={"interactive": 0.0, "batch": 30.0}, batch_share=0.75)
    for _ in range(3):
        await adm.acquire("batch", 1)
    waiting = asyncio.create_task(adm.acquire("batch", 1))  # over batch's 3 of 4
    await _queued(adm, 1)
    assert await adm.acquire("interactive", 1) == 1  # the fourth slot was kept for it
    adm.release(1, "interactive")
    assert adm.waiting == 1 and not waiting.done()  # still over batch's share
    adm.release(1, "batch")
    assert await waiting == 1 and (adm.running, adm.running_batch) == (3, 3)


async def test_waiters_are_served_interactive_first_then_in_order():
    adm = Admission(max_running=1, max_queued=10, max_wait=WAIT, batch_share=1.0)
    assert await adm.acquire("interactive", 1) == 1
    order = []

    async def wait(name, priority):
        await adm.acquire(priority, 1)
        order.append(name)
        adm.release(1, priority)
    tasks = [asyncio.create_task(wait(n, p)) for n, p in
             [("b1", "batch"), ("i1", "interactive"), ("b2", "batch"), ("i2", "interactive")]]
    await _queued(adm, 4)
    adm.release(1, "interactive")
    await asyncio.gather(*tasks)
    assert order == ["i1", "i2", "b1", "b2"] and adm.running == adm.running_batch == 0


async def test_a_full_queue_sheds_the_newest_batch_request_for_an_interactive_one():
    adm = Admission(max_running=1, max_queued=2, max_wait=WAIT, batch_share=1.0)
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
    adm.release(1, "interactive")
    await i1
    adm.release(1, "interactive")
    await i2
    assert adm.shed == 2 and adm.refused == 2


async def test_waiting_is_bounded_and_a_caller_that_gives_up_takes_nothing():
    adm = Admission(max_running=2, max_queued=4, max_wait={"interactive": 0.05, "batch": 30.0}, batch_share=1.0)
    await adm.acquire("interactive", 2)
    with pytest.raises(errors.ResourceExhausted) as e:
        await adm.acquire("interactive", 1)
    assert e.value.reason == "QUEUE_TIMEOUT" and adm.waiting == 0
    gone = asyncio.create_task(adm.acquire("batch", 1))
    await _queued(adm, 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    adm.release(2, "interactive")
    assert adm.running == 0 and adm.waiting == 0
    assert await adm.acquire("batch", 5) == 2  # larger than the whole: runs alone
