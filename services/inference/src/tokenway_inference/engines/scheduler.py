"""Which tokens of which sequences the next step runs, under a token budget and the KV pool's memory.

Every sequence is handled the same way: it knows `tokens` (prompt, then every generated token) and
how many of them are `cached` (their KV is in its pool region). A step feeds it the next slice of
`tokens[cached:]` and samples a new token when the slice reaches the end. A new prompt is therefore
prefilled in chunks, a running sequence feeds its one pending token, and a preempted sequence is
recomputed from its prompt plus what it already generated, without a separate code path.

Each step, in order:
  1. every running sequence that has finished its prefill gets its one decode token (streams keep
     flowing whatever else is queued); its region grows first if it is full;
  2. sequences admitted earlier and still prefilling get chunks, oldest first, from what is left of
     `max_batch_tokens`;
  3. waiting sequences are admitted, oldest first, while rows, budget and memory allow; admission
     allocates the region the sequence really needs now (its known tokens plus some headroom), not
     its worst case, and leaves a small watermark free so running sequences can grow.
When a running sequence cannot grow, the most recently admitted sequence is preempted (its region
freed, itself put back at the head of the queue to be recomputed later) rather than the batch failing.

With a `PrefixCache`, an admitted sequence starts from the longest cached prefix of its tokens (copied),
a sequence whose prefix another admitted one is computing waits for it, and finished sequences' regions
stay as cache entries (only the blocks no entry holds yet). When memory is wanted, entries that lose
nothing are dropped first; then, if the free blocks suffice but no hole fits, the regions in the way of
one are moved (`KVPool.clear`, else the pool is compacted); only then are entries evicted (the one whose
own blocks were used longest ago first, see `prefix`), and all of that before anything waits or is
preempted for memory.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Collection
from typing import Protocol

from .kvpool import KVPool, Region
from .prefix import PrefixCache


class SchedSeq(Protocol):
    tokens: list[int]
    prompt_len: int
    cached: int
    region: Region | None
    reserve: int  # the most positions it can ever need: min(prompt + max_tokens, context)
    aborted: bool


@dataclasses.dataclass
class Work:
    seq: SchedSeq
    n: int  # tokens to feed: tokens[cached:cached + n]
    sample: bool  # the slice reaches the end of tokens: sample the next token
    prompt: bool  # the slice is prompt tokens (a recomputed sequence's generated ones are not)


class BatchScheduler:
    def __init__(self, pool: KVPool, *, max_batch_size: int, max_batch_tokens: int,
                 watermark: float = 0.01, prefix_caching: bool = True) -> None:
        self.pool = pool
        self.prefix = PrefixCache(pool) if prefix_caching else None
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.watermark_blocks = int(pool.blocks * watermark)
        self.running: list[SchedSeq] = []  # hold a region, in admission order
        self.preemptions = 0
        self.compactions = 0
        self.clears = 0  # regions made by moving only what was in the way (`KVPool.clear`)

    def headroom(self, seq: SchedSeq) -> int:
        """Positions to hold for a sequence being admitted: its known tokens plus room for 64 more."""
        return min(seq.reserve, len(seq.tokens) + 64)

    def plan(self, waiting: collections.deque) -> tuple[list[Work], list[SchedSeq]]:
        """The next step's work and the sequences preempted back into `waiting` (at its head)."""
        works: list[Work] = []
        preempted: list[SchedSeq] = []
        planned: set[int] = set()
        # 1. decode tokens (a sequence is decoding when one token is left to feed)
        for seq in list(self.running):
            if seq not in self.running or len(seq.tokens) - seq.cached != 1:
                continue
            if not self._fit(seq, seq.cached + 1, preempted, planned):
                continue  # it was preempted itself
            works.append(Work(seq, 1, True, False))
            planned.add(id(seq))
        budget = max(self.max_batch_tokens - len(works), self.pool.block)
        # 2. chunks of prompts admitted before
        for seq in list(self.running):
            if budget <= 0:
                break
            if id(seq) in planned or seq not in self.running:
                continue
            budget -= self._chunk(seq, budget, works, preempted, planned)
        # 3. admissions
        for seq in reversed(preempted):  # the oldest ends up first
            waiting.appendleft(seq)
        for seq in list(waiting):
            if budget <= 0 or len(self.running) >= self.max_batch_size:
                break
            if seq.aborted:
                continue  # dropped by the engine before the next plan
            runs, have = self.prefix.match(seq) if self.prefix else ([], 0)
            if self.prefix and self.prefix.should_wait(seq, have):
                continue  # another admitted sequence is computing its prefix: copy it once it is there
            need = self.pool.blocks_for(self.headroom(seq))
            if self.running and self.available() - need < self.watermark_blocks:
                break
            region = self._allocate(need, keep=[holder for holder, _, _ in runs])
            if region is None:
                break
            waiting.remove(seq)
            seq.region, seq.cached = region, 0
            if runs:
                self.prefix.copy(runs, seq, have)
            seq.prefix_hit = have
            self.running.append(seq)
            if self.prefix:
                self.prefix.admitted(seq)
            budget -= self._chunk(seq, budget, works, preempted, planned)
        return works, preempted

    def available(self) -> int:
        """Blocks an allocation can get: free ones plus the prefix cache's (evictable) ones."""
        return self.pool.allocator.free_blocks + (self.prefix.held_blocks if self.prefix else 0)

    def held(self) -> int:
        """Blocks held by admitted sequences (not the prefix cache's entries)."""
        return self.pool.blocks - self.available()

    def computed(self, works: list[Work]) -> None:
        """After a step ran `works`: their newly cached full blocks become reusable."""
        if self.prefix:
            for w in works:
                if w.seq.region is not None:
                    self.prefix.computed(w.seq)

    def _chunk(self, seq: SchedSeq, budget: int, works: list[Work], preempted: list, planned: set) -> int:
        n = min(len(seq.tokens) - seq.cached, budget)
        if seq.cached < seq.prompt_len:  # a chunk is all prompt or all generated (a recompute), never both
            n = min(n, seq.prompt_len - seq.cached)
        if n <= 0:
            return 0
        if not self._fit(seq, seq.cached + n, preempted, planned):
            return 0
        works.append(Work(seq, n, seq.cached + n == len(seq.tokens), seq.cached < seq.prompt_len))
        planned.add(id(seq))
        return n

    def _fit(self, seq: SchedSeq, positions: int, preempted: list, planned: set) -> bool:
        """Makes seq's region hold `positions`, preempting the youngest other sequences not yet planned
        when memory runs out; False when seq itself had to go."""
        region = seq.region
        if positions <= region.blocks * self.pool.block:
            return True
        # grow by a quarter (at least 64 positions): a move copies the sequence once per quarter it grows
        want = min(seq.reserve, positions + max(64, positions // 4))
        while True:
            if self.pool.grow(region, want, seq.cached) or self.pool.grow(region, positions, seq.cached):
                return True
            if self.prefix and self.prefix.evict_one(lossless=True):
                continue
            if self.pool.allocator.free_blocks >= self.pool.blocks_for(positions) - region.blocks:
                self._compact(last=region)  # seq's region last: it grows into the free tail
                if self.pool.grow(region, positions, seq.cached):
                    return True
            if self.prefix and self.prefix.evict_one():
                continue
            victim = next((s for s in reversed(self.running) if id(s) not in planned), None)
            if victim is None:
                raise MemoryError("the KV pool cannot hold the sequences already planned for this step")
            self.preempt(victim)
            preempted.insert(0, victim)
            if victim is seq:
                return False

    def _allocate(self, blocks: int, keep: Collection[object] = ()) -> Region | None:
        """A region of `blocks`: from a hole; else after dropping prefix-cache entries that hold nothing no
        other region holds; else, when the free blocks suffice, by moving the regions in the way of one (or,
        when they fit nowhere else, compacting the pool): a copy of live KV costs less than recomputing a
        cached prefix later; else after evicting entries one at a time (never `keep`), each followed by the
        same checks. None when nothing is left to evict."""
        alloc = self.pool.allocator
        while True:
            region = alloc.allocate(blocks)
            if region is not None:
                return region
            if self.prefix and self.prefix.evict_one(keep, lossless=True):
                continue
            if alloc.free_blocks >= blocks:
                region = self._clear(blocks)
                if region is None:
                    self._compact()
                    region = alloc.allocate(blocks)
                return region
            if not (self.prefix and self.prefix.evict_one(keep)):
                return None

    def _regions(self) -> list[tuple[Region, int]]:
        """Every region of the pool and its used positions."""
        return [(s.region, s.cached) for s in self.running] + (self.prefix.regions() if self.prefix else [])

    def _clear(self, blocks: int) -> Region | None:
        pairs = self._regions()
        region = self.pool.clear(blocks, [r for r, _ in pairs], [n for _, n in pairs])
        if region is not None:
            self.clears += 1
        return region

    def _compact(self, last: Region | None = None) -> None:
        self.compactions += 1
        pairs = self._regions()
        self.pool.compact([r for r, _ in pairs], [n for _, n in pairs], last)

    def preempt(self, seq: SchedSeq) -> None:
        """Frees seq's memory; it will be recomputed from its tokens when admitted again."""
        self.preemptions += 1
        self.release(seq)
        seq.cached = 0

    def release(self, seq: SchedSeq, keep: bool = False) -> None:
        """Frees seq's region (or, with `keep` and a prefix cache, keeps its computed blocks as a cache
        entry) and removes it from the running set (finished, aborted or preempted)."""
        if seq.region is not None:
            if self.prefix is not None:
                if keep and self.prefix.retain(seq):
                    seq.region = None
                else:
                    self.prefix.forget(seq)
            if seq.region is not None:
                self.pool.free(seq.region)
                seq.region = None
        if seq in self.running:
            self.running.remove(seq)
