"""The batch scheduler's policy, without a model: steps are simulated by advancing `cached`."""

from __future__ import annotations

import collections
import dataclasses

import torch

from tokenway_inference.engines.kvpool import KVPool, Region
from tokenway_inference.engines.scheduler import BatchScheduler


@dataclasses.dataclass(eq=False)
class Seq:
    name: str
    tokens: list[int]
    reserve: int
    prompt_len: int = 0
    cached: int = 0
    region: Region | None = None
    aborted: bool = False


def seq(name: str, prompt: int, max_tokens: int = 64) -> Seq:
    """A sequence whose prompt shares no block with another name's."""
    return Seq(name, [hash(name) % 1000 * 10_000 + i for i in range(prompt)], prompt + max_tokens, prompt)


def pool(tokens: int) -> KVPool:
    return KVPool(layers=1, kv_heads=1, head_dim=1, tokens=tokens, dtype=torch.float32, block=16)


def run_step(works) -> None:
    """What the engine does with a plan: the fed tokens become cached; a sampling work gains a token."""
    for w in works:
        w.seq.cached += w.n
        assert w.seq.cached <= w.seq.region.blocks * 16  # the region holds what was written
        if w.sample:
            w.seq.tokens.append(9)


def test_decodes_first_then_chunks_under_the_budget():
    s = BatchScheduler(pool(4096), max_batch_size=8, max_batch_tokens=64, prefix_caching=False)
    waiting = collections.deque([seq("a", 10), seq("b", 150), seq("c", 20)])
    works, _ = s.plan(waiting)
    assert [(w.seq.name, w.n, w.sample) for w in works] == [("a", 10, True), ("b", 54, False)]
    run_step(works)
    works, _ = s.plan(waiting)
    # a decodes; b's prefill continues with what the budget leaves; c waits for room in the budget
    assert [(w.seq.name, w.n, w.sample) for w in works] == [("a", 1, True), ("b", 63, False)]
    run_step(works)
    works, _ = s.plan(waiting)
    assert [(w.seq.name, w.n, w.sample) for w in works] == [("a", 1, True), ("b", 33, True), ("c", 20, True)]
    run_step(works)
    works, _ = s.plan(waiting)
    assert [(w.seq.name, w.n) for w in works] == [("a", 1), ("b", 1), ("c", 1)] and not waiting


def test_admission_holds_what_a_sequence_needs_now_not_its_worst_case():
    p = pool(16 * 64)
    s = BatchScheduler(p, max_batch_size=64, max_batch_tokens=4096, prefix_caching=False)
    # each may generate 900 tokens, but holds its prompt plus 64 positions of headroom: 5 blocks
    waiting = collections.deque(seq(f"s{i}", 16, max_tokens=900) for i in range(20))
    works, _ = s.plan(waiting)
    assert len(works) == 12 and len(waiting) == 8  # 12 x 5 blocks of 64; the watermark is 0 here
    assert p.allocator.free_blocks == 4


def test_row_limit():
    s = BatchScheduler(pool(4096), max_batch_size=2, max_batch_tokens=512)
    waiting = collections.deque([seq("a", 5), seq("b", 5), seq("c", 5)])
    works, _ = s.plan(waiting)
    assert [w.seq.name for w in works] == ["a", "b"] and [x.name for x in waiting] == ["c"]


def test_running_sequences_grow_and_the_youngest_is_preempted_when_memory_runs_out():
    p = pool(16 * 24)
    s = BatchScheduler(p, max_batch_size=8, max_batch_tokens=512, prefix_caching=False)
    old, young = seq("old", 100, max_tokens=250), seq("young", 100, max_tokens=250)
    waiting = collections.deque([old, young])
    for _ in range(200):
        works, preempted = s.plan(waiting)
        if preempted:
            break
        run_step(works)
    else:
        raise AssertionError("no preemption although both cannot fit")
    assert preempted == [young] and young.region is None and young.cached == 0
    assert list(waiting) == [young]  # back at the head of the queue, with what it generated
    assert len(young.tokens) > 100
    assert [w.seq.name for w in works] == ["old"] and old.region.blocks * 16 >= old.cached + 1
    # once old finishes, young is admitted again and recomputes its prompt, then what it generated
    s.release(old)
    works, _ = s.plan(waiting)
    assert [(w.seq.name, w.n, w.sample, w.prompt) for w in works] == [("young", 100, False, True)]
    run_step(works)
    works, _ = s.plan(waiting)
    assert [(w.seq.name, w.n, w.sample, w.prompt) for w in works] == [("young", len(young.tokens) - 100, True, False)]


def test_release_frees_the_memory():
    p = pool(4096)
    s = BatchScheduler(p, max_batch_size=8, max_batch_tokens=512)
    waiting = collections.deque([seq("a", 100), seq("b", 300)])
    run_step(s.plan(waiting)[0])
    assert p.usage() > 0
    for x in list(s.running):
        s.release(x)
    assert p.usage() == 0 and not s.running


def test_prefix_cache_copies_computed_blocks_and_holds_back_a_twin():
    p = pool(4096)
    s = BatchScheduler(p, max_batch_size=8, max_batch_tokens=64)
    a = seq("a", 100)
    twin = Seq("twin", list(a.tokens), a.reserve, a.prompt_len)
    waiting = collections.deque([a, twin])
    works, _ = s.plan(waiting)
    # twin's prefix is being computed by a: it waits rather than computing it again
    assert [w.seq.name for w in works] == ["a"] and list(waiting) == [twin]
    run_step(works)
    s.computed(works)
    works, _ = s.plan(waiting)
    assert [w.seq.name for w in works] == ["a"]  # a's second chunk; twin still waits for blocks 4-6
    run_step(works)
    s.computed(works)
    works, _ = s.plan(waiting)
    # a decodes; twin starts from the 96 positions (6 whole blocks) a computed and feeds the rest
    assert [(w.seq.name, w.n, w.sample) for w in works] == [("a", 1, True), ("twin", 4, True)]
    assert twin.prefix_hit == 96 and twin.cached == 96 and s.prefix.hits == 1


def test_finished_prompts_stay_cached_until_the_memory_is_wanted():
    p = pool(16 * 40)
    s = BatchScheduler(p, max_batch_size=8, max_batch_tokens=512)
    a = seq("a", 200)
    works, _ = s.plan(collections.deque([a]))
    run_step(works)
    s.computed(works)
    s.release(a, keep=True)  # finished: its 12 computed blocks stay as a cache entry
    assert s.held() == 0 and s.prefix.held_blocks == 12 and a.region is None
    again = Seq("again", a.tokens[:200] + [1, 2, 3], 300, 203)
    works, _ = s.plan(collections.deque([again]))
    assert again.prefix_hit == 192 and works[0].n == 11
    # a sequence that needs the whole pool evicts the entry instead of waiting
    s.release(again)
    big = Seq("big", seq("big", 16 * 39).tokens, 16 * 39 + 10, 16 * 39)  # needs all 40 blocks
    waiting = collections.deque([big])
    works, _ = s.plan(waiting)
    assert not waiting and s.prefix.held_blocks == 0 and works[0].seq is big
