"""The batch scheduler's policy, without a model: steps are simulated by advancing `cached`."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import random

import pytest
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


def run_step_writing(works, p: KVPool) -> None:
    """run_step, and each fed token's id written into its slot (layer 0's keys), so copies can be checked."""
    for w in works:
        s = p.slot(w.seq.region)
        for pos in range(w.seq.cached, w.seq.cached + w.n):
            p.k[0, 0, s + pos, 0] = float(w.seq.tokens[pos])
    run_step(works)


def slots_hold(p: KVPool, x: Seq, n: int) -> bool:
    s = p.slot(x.region)
    return p.k[0, 0, s:s + n, 0].tolist() == [float(t) for t in x.tokens[:n]]


def finish(s: BatchScheduler, x: Seq, waiting: collections.deque, p: KVPool) -> None:
    """Steps until x has generated what it may, then releases it keeping its blocks (as the engine does)."""
    while len(x.tokens) < x.reserve:
        works, _ = s.plan(waiting)
        run_step_writing(works, p)
        s.computed(works)
    s.release(x, keep=True)


def test_a_finished_request_keeps_only_the_blocks_the_cache_lacks_and_a_continuation_copies_both():
    """Two requests with one system prompt: the second keeps only its own turn (the prompt is cached once);
    the second's next turn copies the prompt from the first's entry and its turn from its own, intact."""
    p = pool(16 * 64)
    s = BatchScheduler(p, max_batch_size=8, max_batch_tokens=512)
    system = seq("system", 160).tokens  # 10 blocks
    a = Seq("a", system + [1] * 40, 200 + 8, 200)
    finish(s, a, collections.deque([a]), p)
    assert s.prefix.held_blocks == 12  # prompt and what was fed after it: 207 positions, 12 whole blocks
    b = Seq("b", system + [2] * 40, 200 + 8, 200)
    finish(s, b, collections.deque([b]), p)
    assert b.prefix_hit == 160
    assert s.prefix.held_blocks == 12 + 2  # only b's blocks 10 and 11: the system prompt is not kept twice
    # b's next turn: its prompt, what it generated and a new user turn
    c = Seq("c", list(b.tokens) + [3] * 20, len(b.tokens) + 28, len(b.tokens) + 20)
    runs, have = s.prefix.match(c)
    assert [(holder.tokens[160], b0, b1) for holder, b0, b1 in runs] == [(1, 0, 10), (2, 10, 12)] and have == 192
    works, _ = s.plan(collections.deque([c]))
    assert c.prefix_hit == 192 and works[0].n == len(c.tokens) - 192
    assert slots_hold(p, c, 192)  # the KV of every copied position is that of its token


def test_entries_nothing_can_reach_go_first():
    p = pool(16 * 64)
    s = BatchScheduler(p, max_batch_size=8, max_batch_tokens=512)
    system = seq("system", 160).tokens
    a = Seq("a", system + [1] * 40, 208, 200)
    finish(s, a, collections.deque([a]), p)
    b = Seq("b", system + [2] * 40, 208, 200)
    finish(s, b, collections.deque([b]), p)
    entry_a, entry_b = s.prefix._entries.values()
    assert s.prefix.last_use(entry_b) < s.prefix.last_use(entry_a)  # a request's own tail goes before its prompt
    assert s.prefix.evict_one() == 2 and s.prefix.held_blocks == 12  # b's turn
    finish(s, b2 := Seq("b2", system + [2] * 40, 208, 200), collections.deque([b2]), p)
    assert s.prefix.evict_one(keep=[entry_a]) == 2  # b2's turn again, never the kept entry
    finish(s, b3 := Seq("b3", system + [2] * 40, 208, 200), collections.deque([b3]), p)
    assert s.prefix.evict_one(lossless=True) == 0  # every entry would lose something
    entry_b3 = list(s.prefix._entries.values())[-1]
    assert s.prefix.evict_one(keep=[entry_b3]) == 12  # a's entry, with the system prompt...
    assert s.prefix.evict_one(lossless=True) == 2  # ...so nothing can reach b3's turn: dropped at no loss
    assert s.prefix.held_blocks == 0 and not s.prefix._index


def closed_loop(prompts: int, requests: int, clients: int, kv_tokens: int, seed: int) -> tuple[list, BatchScheduler]:
    """bench-routing's prefix measurement on one replica, steps simulated: `clients` closed-loop clients, each
    request one of `prompts` system prompts (~870 tokens) and a short unique user turn, max_tokens 16; a
    client sends its next request as soon as its last one ends. (prompt index, prefix_hit) per request."""
    rng = random.Random(seed)
    systems = [[0] + [rng.randrange(5, 3645) for _ in range(870)] for _ in range(prompts)]
    plan = [(k := rng.randrange(prompts), systems[k] + [rng.randrange(5, 3645) for _ in range(rng.randint(8, 20))])
            for _ in range(requests)]
    s = BatchScheduler(pool(kv_tokens), max_batch_size=32, max_batch_tokens=512)
    waiting: collections.deque = collections.deque()
    done: list = []

    def submit() -> None:
        i = len(done) + len(waiting) + len(s.running)
        if i < requests:
            k, tokens = plan[i]
            x = Seq(f"r{i}", list(tokens), len(tokens) + 16, len(tokens))
            x.prompt_index = k
            waiting.append(x)

    for _ in range(clients):
        submit()
    while waiting or s.running:
        works, _ = s.plan(waiting)
        run_step(works)
        s.computed(works)
        for w in works:
            if w.sample and len(w.seq.tokens) == w.seq.reserve:
                s.release(w.seq, keep=True)
                done.append((w.seq.prompt_index, w.seq.prefix_hit))
                submit()
    return done, s


@pytest.mark.parametrize("seed", [1, 12])
def test_three_system_prompts_in_an_8192_token_pool_hit_on_every_repeat(seed):
    """bench-routing's prefix regime on one replica (3 of its 9 system prompts, 4 clients, KV_CACHE_TOKENS=8192):
    the 3 prompts (~2600 tokens) fit beside 4 running sequences (~3650), so every request after its prompt's
    first one copies the whole prompt. (Copies of the prompt kept by every finished request used to crowd it
    out: ~1 request in 7 recomputed it.)"""
    done, s = closed_loop(prompts=3, requests=150, clients=4, kv_tokens=8192, seed=seed)
    assert len(done) == 150
    first = {k: i for i, (k, _) in reversed(list(enumerate(done)))}
    misses = [i for i, (_, hit) in enumerate(done) if hit < 864]  # 54 whole blocks of the 871-token prompt
    assert misses == sorted(first.values()) and len(misses) == 3
    assert s.preemptions == 0 and s.compactions <= 10


@pytest.mark.parametrize(("seed", "blocks"), [(2, 110), (3, 110), (1, 250), (3, 400)])
def test_random_churn_keeps_every_sequence_s_kv_its_own(seed, blocks):
    """Prompts sharing system prompts, next turns of recent conversations, sequences that grow, a pool too
    small for all of it (copies from several holders, suffix entries, clears, compactions, evictions and,
    in the smaller pool, preemptions): after every step each running sequence's region holds the KV of its
    own tokens, and no two regions overlap."""
    rng = random.Random(seed)
    p = pool(16 * blocks)
    s = BatchScheduler(p, max_batch_size=8, max_batch_tokens=256)
    systems = [[rng.randrange(5, 3645) for _ in range(rng.randint(20, 300))] for _ in range(4)]
    finished: list[Seq] = []
    waiting: collections.deque = collections.deque()
    for step in range(1500):
        if len(waiting) < 3 and rng.random() < 0.3:
            if finished and rng.random() < 0.5:
                base = rng.choice(finished[-4:]).tokens  # a recent conversation's next turn
            else:
                base = rng.choice(systems)
            tokens = base + [rng.randrange(5, 3645) for _ in range(rng.randint(1, 60))]
            if len(tokens) < 1200:
                waiting.append(Seq(f"s{step}", tokens, len(tokens) + rng.randint(1, 100), len(tokens)))
        works, _ = s.plan(waiting)
        for w in works:
            assert slots_hold(p, w.seq, w.seq.cached)  # what it copied, kept or had moved is its own
        run_step_writing(works, p)
        s.computed(works)
        for w in works:
            if w.sample and len(w.seq.tokens) >= w.seq.reserve:
                s.release(w.seq, keep=True)
                finished.append(w.seq)
        spans = sorted([(x.region.start, x.region.start + x.region.blocks) for x in s.running] +
                       [(r.start, r.start + r.blocks) for r, _ in s.prefix.regions()])
        assert all(e <= b for (_, e), (b, _) in itertools.pairwise(spans))
        assert p.allocator.free_blocks == p.blocks - sum(e - b for b, e in spans)
    assert s.prefix.hits > 50 and len(finished) > 100
