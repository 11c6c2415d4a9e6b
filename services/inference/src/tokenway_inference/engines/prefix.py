"""Prompt-prefix reuse: the KV of full blocks already computed, found by block hashes, copied, not recomputed.

Like vLLM's automatic prefix caching, a sequence's tokens are cut into blocks of the pool's block size
and each full block gets a hash chained to the previous one, so one hash names a whole prefix. When a
block's KV is in the pool (a sequence fed it), its hash is indexed to every region that holds it. A new
sequence whose first m blocks match starts with those m blocks' KV copied into its own region (a memory
copy per layer, far cheaper than running the model over them) and prefills only the rest. The m blocks
may come from several holders, one run of blocks each (`match` returns the runs).

Regions are contiguous per sequence, so a prefix is copied rather than shared; what this saves is the
compute, which is what a shared system prompt costs. A hit is checked token by token against every
holder it copies from, so a hash collision costs a miss, never a wrong answer.

A finished sequence's computed blocks stay as a cache entry until the memory is wanted, but only the
blocks no other entry holds already: a request that copied a cached system prompt keeps just its own
user turn and answer (a suffix entry, a few blocks, placed at the top of the pool where it does not
split the holes that new sequences need), not another copy of the prompt. So the cache holds each
prompt once and its memory goes to distinct prefixes, as vLLM's shared blocks do.

Eviction is least recently used, block by block as in vLLM, applied to whole entries: every block
remembers when it was last used (computed, copied, or held by a sequence that finished), and when one
sequence uses a run of blocks the deeper ones count as older, so a request's own tail goes before the
prompt it shares. An entry is as recent as the most recently used block only it holds (dropping it
loses exactly those); one that holds none, or whose earlier blocks no region holds any more (a suffix
that nothing can reach), costs nothing to drop. The scheduler drops those first; when the free blocks
then suffice but no hole fits, it moves the regions in the way (`KVPool.clear`, else `compact`: a copy of
live KV, far cheaper than recomputing a prefix); only then does it evict entries that lose something.

Requests that arrive together with the same prompt (`n` > 1 is several such requests) would all prefill
it: `pending` indexes the blocks admitted sequences have yet to compute, and the scheduler holds back a
sequence whose prefix is being computed by another one until it can copy it. The hold-back is per block,
so requests that share a system prompt but differ after it wait only for the shared blocks.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Sequence

from .kvpool import KVPool, Region

#: `last_use` of an entry that loses nothing when dropped.
LOSSLESS = (-1, 0)


class _Entry:
    """Computed blocks [first, len(hashes)) of a finished sequence, kept for reuse; its region's first slot is
    position first * block of `tokens`."""

    __slots__ = ("cached", "first", "hashes", "region", "tokens")

    def __init__(self, region: Region, tokens: list[int], hashes: list[int], first: int) -> None:
        self.region, self.tokens, self.hashes, self.first = region, tokens, hashes, first
        self.cached = len(tokens)


def block_hashes(tokens: Sequence[int], block: int, known: list[int], upto: int) -> list[int]:
    """Extends `known` (the chained hashes of the first len(known) blocks) to every full block of
    tokens[:upto]; returns it."""
    prev = known[-1] if known else 0
    for b in range(len(known), upto // block):
        prev = hash((prev, tuple(tokens[b * block:(b + 1) * block])))
        known.append(prev)
    return known


class PrefixCache:
    def __init__(self, pool: KVPool) -> None:
        self.pool = pool
        self.block = pool.block
        self._index: dict[int, list] = {}  # block hash -> every sequence or entry whose region holds it
        self._used: dict[int, tuple[int, int]] = {}  # block hash -> (clock, -block number) of its last use
        self._clock = 0
        self._pending: dict[int, object] = {}  # block hash -> the admitted sequence that will compute it
        self._entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()  # in retain order
        self.hits = 0
        self.hit_tokens = 0

    # -- lookups -------------------------------------------------------------------------------

    def match(self, seq) -> tuple[list[tuple[object, int, int]], int]:
        """The runs of blocks to copy, (holder, first block, end block) each, and the number of leading tokens
        of seq they cover (whole blocks, at most all but the last known token: that one is fed to get
        logits). Each run comes from the holder that reaches furthest, checked token by token up to its end."""
        hashes = self._hashes(seq)
        limit = min((len(seq.tokens) - 1) // self.block, len(hashes))
        m = 0
        while m < limit and hashes[m] in self._index:
            m += 1
        runs: list[tuple[object, int, int]] = []
        b = 0
        while b < m:
            best, reach = None, b
            for holder in self._index[hashes[b]]:
                if getattr(holder, "first", 0) > b:
                    continue  # only a collision indexes a holder under a block it lacks
                theirs = holder.hashes if isinstance(holder, _Entry) else holder.block_hashes
                end, stop = b, min(holder.cached // self.block, m)
                while end < stop and theirs[end] == hashes[end]:  # chained: equal so far means the same prefix
                    end += 1
                if end > reach and holder.tokens[:end * self.block] == seq.tokens[:end * self.block]:
                    best, reach = holder, end
            if best is None:
                break  # a collision: the prefix stops here
            runs.append((best, b, reach))
            b = reach
        return runs, b * self.block

    def should_wait(self, seq, have: int) -> bool:
        """True when an admitted sequence is computing more of seq's prefix than `have` tokens."""
        hashes = self._hashes(seq)
        b = have // self.block
        return b < len(hashes) and b < (len(seq.tokens) - 1) // self.block and hashes[b] in self._pending

    def _hashes(self, seq) -> list[int]:
        known = getattr(seq, "block_hashes", None)
        if known is None:
            known = seq.block_hashes = []
        return block_hashes(seq.tokens, self.block, known, len(seq.tokens))

    # -- bookkeeping ---------------------------------------------------------------------------

    def admitted(self, seq) -> None:
        """seq holds a region now: the blocks it will compute are pending."""
        for h in self._hashes(seq)[seq.cached // self.block:]:
            self._pending.setdefault(h, seq)

    def copy(self, runs: list[tuple[object, int, int]], seq, n: int) -> None:
        """Copies the KV of the runs (from `match`) into seq's region; seq starts with its first n positions cached."""
        k, v, blk = self.pool.k, self.pool.v, self.block
        dst = self.pool.slot(seq.region)
        for holder, b0, b1 in runs:
            src = self.pool.slot(holder.region) + (b0 - getattr(holder, "first", 0)) * blk
            d, length = dst + b0 * blk, (b1 - b0) * blk
            for t in (k, v):
                t[:, :, d:d + length] = t[:, :, src:src + length]
        seq.cached = n
        self.hits += 1
        self.hit_tokens += n
        self._touch(self._hashes(seq)[:n // blk])

    def computed(self, seq) -> None:
        """After a step: index the full blocks seq has cached."""
        hashes = block_hashes(seq.tokens, self.block, self._hashes(seq), seq.cached)
        done = getattr(seq, "indexed_blocks", 0)
        fresh = hashes[done:seq.cached // self.block]
        for h in fresh:
            self._add(h, seq)
            if self._pending.get(h) is seq:
                del self._pending[h]
        self._touch(fresh, done)
        seq.indexed_blocks = max(done, seq.cached // self.block)

    def forget(self, seq) -> None:
        """seq's region is about to be freed: nothing may point into it any more."""
        seq.indexed_blocks = 0
        for h in getattr(seq, "block_hashes", None) or ():
            self._remove(h, seq)
            if self._pending.get(h) is seq:
                del self._pending[h]

    def retain(self, seq) -> bool:
        """Keeps the indexed blocks of a finished seq that no entry holds yet as a cache entry, instead of
        freeing them; False when there are none (the caller frees the region). Its region is trimmed to
        those blocks, or, when they follow blocks another entry holds, they move to a region of their own
        at the top of the pool and the whole region is freed (the cache keeps one copy of a shared prompt)."""
        blocks = getattr(seq, "indexed_blocks", 0)
        if not blocks or seq.region is None:
            return False
        hashes = seq.block_hashes[:blocks]
        self._touch(hashes)  # held until now: a prompt is as recent as the last sequence that used it
        first = 0
        while first < blocks and any(isinstance(x, _Entry) for x in self._index.get(hashes[first], ())):
            first += 1
        if first == blocks:
            return False  # every block is cached already
        region, own = seq.region, blocks - first
        if first:
            new = self.pool.allocator.allocate(own, top=True)
            if new is not None:
                s, d = self.pool.slot(region) + first * self.block, self.pool.slot(new)
                for t in (self.pool.k, self.pool.v):
                    t[:, :, d:d + own * self.block] = t[:, :, s:s + own * self.block]
                self.pool.free(region)
                region = new
            else:  # no hole for it: keep it where it is, the blocks before and after it freed
                self.pool.free(Region(region.start, first))
                region.start += first
                region.blocks -= first
        if region.blocks > own:
            self.pool.free(Region(region.start + own, region.blocks - own))
            region.blocks = own
        entry = _Entry(region, seq.tokens[:blocks * self.block], hashes, first)
        for h in hashes[first:]:
            self._add(h, entry)
        self.forget(seq)
        self._entries[id(entry)] = entry
        seq.region = None
        return True

    def _add(self, h: int, holder: object) -> None:
        holders = self._index.setdefault(h, [])
        if not any(x is holder for x in holders):
            holders.append(holder)

    def _remove(self, h: int, holder: object) -> None:
        holders = self._index.get(h)
        if holders is None:
            return
        holders[:] = [x for x in holders if x is not holder]
        if not holders:  # no region holds this block any more
            del self._index[h]
            self._used.pop(h, None)

    def _touch(self, hashes: Sequence[int], start: int = 0) -> None:
        """hashes (blocks start, start + 1, ...) are used now; the deeper a block, the older it counts."""
        self._clock += 1
        for b, h in enumerate(hashes, start):
            if h in self._index:
                self._used[h] = (self._clock, -b)

    # -- memory --------------------------------------------------------------------------------

    @property
    def held_blocks(self) -> int:
        return sum(e.region.blocks for e in self._entries.values())

    def regions(self) -> list[tuple[Region, int]]:
        """Every entry's region and used positions (for compaction)."""
        return [(e.region, e.region.blocks * self.block) for e in self._entries.values()]

    def last_use(self, entry: _Entry) -> tuple[int, int]:
        """The last use of the most recently used block only entry holds; LOSSLESS when it has none, or when
        the block before its first one is held nowhere (nothing can reach it): dropping it loses nothing."""
        if entry.first and entry.hashes[entry.first - 1] not in self._index:
            return LOSSLESS
        last = LOSSLESS
        for h in entry.hashes[entry.first:]:
            holders = self._index.get(h)
            if holders is not None and len(holders) == 1:
                last = max(last, self._used.get(h, LOSSLESS))
        return last

    def evict_one(self, keep: Collection[object] = (), lossless: bool = False) -> int:
        """Frees the entry (never one in `keep`) whose own blocks were used longest ago, those that lose
        nothing first; with `lossless`, only such an entry. Returns the blocks freed (0: no such entry)."""
        victim, oldest = None, None
        for entry in self._entries.values():  # retain order breaks ties: the older entry goes
            if any(entry is k for k in keep):
                continue
            last = self.last_use(entry)
            if oldest is None or last < oldest:
                victim, oldest = entry, last
                if last == LOSSLESS:
                    break
        if victim is None or lossless and oldest != LOSSLESS:
            return 0
        del self._entries[id(victim)]
        for h in victim.hashes[victim.first:]:
            self._remove(h, victim)
        freed = victim.region.blocks
        self.pool.free(victim.region)
        return freed
