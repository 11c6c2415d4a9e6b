"""The KV pool and its region allocator, without a model."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from tokenway_inference.engines.kvpool import KVPool, Region, RegionAllocator


def test_best_fit_and_coalescing():
    a = RegionAllocator(100)
    r1, r2, r3 = a.allocate(10), a.allocate(20), a.allocate(30)
    assert (r1.start, r2.start, r3.start) == (0, 10, 30) and a.free_blocks == 40
    a.free(r2)  # hole [10, 30) and [60, 100)
    small = a.allocate(15)  # best fit: the 20-block hole, not the 40-block one
    assert small.start == 10 and a.holes() == [(25, 5), (60, 40)]
    a.free(small)
    a.free(r1)
    a.free(r3)
    assert a.holes() == [(0, 100)] and a.free_blocks == 100
    assert a.allocate(101) is None


def test_double_free_is_caught():
    a = RegionAllocator(10)
    r = a.allocate(4)
    a.free(Region(r.start, r.blocks))
    with pytest.raises(AssertionError):
        a.free(Region(0, 2))


def test_extend_in_place_only_into_the_adjacent_hole():
    a = RegionAllocator(50)
    r1, r2 = a.allocate(10), a.allocate(10)
    assert not a.extend(r1, 1)  # r2 follows
    assert a.extend(r2, 30) and r2.blocks == 40 and a.free_blocks == 0
    assert not a.extend(r2, 1)


def test_random_churn_keeps_the_books():
    rng = random.Random(3)
    a = RegionAllocator(1000)
    live: list[Region] = []
    for _ in range(3000):
        if live and rng.random() < 0.5:
            a.free(live.pop(rng.randrange(len(live))))
        else:
            r = a.allocate(rng.randint(1, 60))
            if r is not None:
                live.append(r)
        used = sorted((r.start, r.start + r.blocks) for r in live)
        assert all(e <= s for (_, e), (s, _) in zip(used, used[1:]))  # no overlap
        assert a.free_blocks == 1000 - sum(r.blocks for r in live)
        assert a.free_blocks == sum(n for _, n in a.holes())


def _pool(tokens: int = 64 * 16) -> KVPool:
    return KVPool(layers=2, kv_heads=2, head_dim=4, tokens=tokens, dtype=torch.float32, block=16)


def _fill(pool: KVPool, region: Region, n: int, value: float) -> None:
    s = pool.slot(region)
    pool.k[:, :, s:s + n] = value
    pool.v[:, :, s:s + n] = -value


def _read(pool: KVPool, region: Region, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = pool.slot(region)
    return pool.k[:, :, s:s + n].clone(), pool.v[:, :, s:s + n].clone()


def test_pool_is_allocated_once_at_the_budget():
    pool = _pool(1000)
    assert pool.slots == 1008 and pool.blocks == 63  # whole blocks
    assert pool.nbytes == 2 * 2 * 2 * 1008 * 4 * 4
    assert pool.usage() == 0


def test_grow_in_place_keeps_the_data_and_moves_when_it_must():
    pool = _pool()
    r1 = pool.allocate(20)  # 2 blocks
    _fill(pool, r1, 20, 1.0)
    assert pool.grow(r1, 100, 20) and r1.start == 0 and r1.blocks == 7  # extended in place
    r2 = pool.allocate(16)  # right after r1
    before = _read(pool, r1, 20)
    assert pool.grow(r1, 200, 20) and r1.start != 0  # blocked by r2: moved
    after = _read(pool, r1, 20)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert pool.allocator.free_blocks == pool.blocks - r1.blocks - r2.blocks


def test_compact_slides_regions_together_with_their_data():
    pool = _pool()
    regions = [pool.allocate(16 * 5) for _ in range(8)]
    for i, r in enumerate(regions):
        _fill(pool, r, 70, float(i + 1))
    for r in regions[::2]:
        pool.free(r)
    live = regions[1::2]
    assert pool.allocate(16 * 30) is None  # 44 blocks free, but in 5-block holes and a 24-block tail
    snapshot = [_read(pool, r, 70) for r in live]
    pool.compact(live, [70] * len(live))
    assert [r.start for r in live] == [0, 5, 10, 15]
    for r, (k, v) in zip(live, snapshot):
        got = _read(pool, r, 70)
        assert torch.equal(got[0], k) and torch.equal(got[1], v)
    assert pool.allocate(16 * 44) is not None


def test_compact_can_put_one_region_last_to_grow_into_the_tail():
    pool = _pool()
    regions = [pool.allocate(16 * 4) for _ in range(6)]
    for i, r in enumerate(regions):
        _fill(pool, r, 60, float(i + 1))
    pool.free(regions[1])
    live = [regions[0]] + regions[2:]
    grower = regions[2]
    snapshot = {id(r): _read(pool, r, 60) for r in live}
    pool.compact(live, [60] * len(live), last=grower)
    assert grower.start == 16 and sorted(r.start for r in live) == [0, 4, 8, 12, 16]
    for r in live:
        k, v = snapshot[id(r)]
        got = _read(pool, r, 60)
        assert torch.equal(got[0], k) and torch.equal(got[1], v)
    assert pool.grow(grower, 16 * 40, 60) and grower.start == 16  # in place, into the free tail


def test_top_allocation_takes_the_end_of_the_highest_hole_and_take_carves_a_given_range():
    a = RegionAllocator(100)
    low = a.allocate(10)
    high = a.allocate(5, top=True)  # the end of the pool, away from where sequences are placed
    assert (low.start, high.start) == (0, 95) and a.holes() == [(10, 85)]
    mid = a.take(40, 10)
    assert mid.start == 40 and a.holes() == [(10, 30), (50, 45)] and a.free_blocks == 75
    with pytest.raises(AssertionError):
        a.take(45, 10)  # not free
    a.free(mid)
    assert a.holes() == [(10, 85)]


def test_clear_moves_only_the_small_regions_in_the_way_with_their_data():
    """Free blocks enough for 30 but no hole: the window holding the fewest live positions is emptied by
    moving its regions into holes elsewhere; every other region stays where it is."""
    pool = _pool()
    big = [pool.allocate(16 * 12) for _ in range(4)]  # blocks 0-47
    small = [pool.allocate(16 * 2) for _ in range(8)]  # blocks 48-63
    for i, r in enumerate(big + small):
        _fill(pool, r, r.blocks * 16, float(i + 1))
    for r in big[1::2] + small[1::2]:  # holes: 12-23, 36-47 and four of 2 blocks among the small ones
        pool.free(r)
    live = big[::2] + small[::2]
    used = [r.blocks * 16 for r in live]
    assert pool.allocate(16 * 14) is None and pool.allocator.free_blocks == 32
    snapshot = {id(r): _read(pool, r, r.blocks * 16) for r in live}
    before = {id(r): r.start for r in live}
    region = pool.clear(14, live, used)
    assert region is not None and region.blocks == 14
    moved = [r for r in live if r.start != before[id(r)]]
    assert moved and all(r.blocks == 2 for r in moved)  # only small regions were copied
    spans = sorted([(r.start, r.start + r.blocks) for r in live] + [(region.start, region.start + region.blocks)])
    assert all(e <= s for (_, e), (s, _) in itertools.pairwise(spans))  # nothing overlaps
    for r in live:
        k, v = snapshot[id(r)]
        got = _read(pool, r, r.blocks * 16)
        assert torch.equal(got[0], k) and torch.equal(got[1], v)
    # when the regions in the way fit nowhere else, clear gives up (the scheduler compacts instead)
    pool2 = _pool(16 * 10)
    rs = [pool2.allocate(16 * 3), pool2.allocate(16), pool2.allocate(16 * 3), pool2.allocate(16)]
    pool2.free(rs[1])
    pool2.free(rs[3])
    assert pool2.clear(5, [rs[0], rs[2]], [48, 48]) is None
