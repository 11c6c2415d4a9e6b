"""Prompt-prefix reuse: the KV of full blocks already computed, found by block hashes, copied, not recomputed.

Like vLLM's automatic prefix caching, a sequence's tokens are cut into blocks of the pool's block size
and each full block gets a hash chained to the previous one, so one hash names a whole prefix. When a
block's KV is in the pool (its sequence fed it), its hash is indexed to that sequence. A new sequence
whose first m blocks match starts with those m blocks' KV copied from the holder's region into its own
(a memory copy per layer, far cheaper than running the model over them) and prefills only the rest.

Regions are contiguous per sequence, so a prefix is copied rather than shared; what this saves is the
compute, which is what a shared system prompt costs. A finished sequence's region is kept as a cache
entry (trimmed to its indexed blocks) until the memory is wanted: entries are evicted oldest-used first
before any admission waits, any sequence is preempted or the pool is compacted. A hit is checked
token by token against the holder, so a hash collision costs a miss, never a wrong answer.

Requests that arrive together with the same prompt (`n` > 1 is several such requests) would all prefill
it: `pending` indexes the blocks admitted sequences have yet to compute, and the scheduler holds back a
sequence whose prefix is being computed by another one until it can copy it.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from .kvpool import KVPool, Region


class _Entry:
    """A finished sequence's computed blocks, kept for reuse."""

    __slots__ = ("region", "tokens", "cached", "hashes")

    def __init__(self, region: Region, tokens: list[int], hashes: list[int]) -> None:
        self.region, self.tokens, self.hashes = region, tokens, hashes
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
        self._index: dict[int, object] = {}  # block hash -> the sequence or entry whose region holds it
        self._pending: dict[int, object] = {}  # block hash -> the admitted sequence that will compute it
        self._entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()  # LRU order
        self.hits = 0
        self.hit_tokens = 0

    # -- lookups -------------------------------------------------------------------------------

    def match(self, seq) -> tuple[object | None, int]:
        """The holder and the number of leading tokens of seq whose KV can be copied (whole blocks, at
        most all but the last known token: that one is fed to get logits)."""
        hashes = self._hashes(seq)
        limit = (len(seq.tokens) - 1) // self.block
        m = 0
        while m < min(limit, len(hashes)) and hashes[m] in self._index:
            m += 1
        while m:
            holder = self._index[hashes[m - 1]]
            n = m * self.block
            if holder.cached >= n and holder.tokens[:n] == seq.tokens[:n]:
                return holder, n
            m -= 1  # a collision or a stale entry: try a shorter prefix
        return None, 0

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

    def copy(self, holder, seq, n: int) -> None:
        """Copies the KV of holder's first n positions into seq's region; seq starts with them cached."""
        src, dst = self.pool.slot(holder.region), self.pool.slot(seq.region)
        for t in (self.pool.k, self.pool.v):
            t[:, :, dst:dst + n] = t[:, :, src:src + n]
        seq.cached = n
        self.hits += 1
        self.hit_tokens += n
        if isinstance(holder, _Entry):
            self._entries.move_to_end(id(holder))

    def computed(self, seq) -> None:
        """After a step: index the full blocks seq has cached."""
        hashes = block_hashes(seq.tokens, self.block, self._hashes(seq), seq.cached)
        done = getattr(seq, "indexed_blocks", 0)
        for h in hashes[done:seq.cached // self.block]:
            self._index.setdefault(h, seq)
            if self._pending.get(h) is seq:
                del self._pending[h]
        seq.indexed_blocks = max(done, seq.cached // self.block)

    def forget(self, seq) -> None:
        """seq's region is about to be freed: nothing may point into it any more."""
        seq.indexed_blocks = 0
        for h in getattr(seq, "block_hashes", None) or ():
            if self._index.get(h) is seq:
                del self._index[h]
            if self._pending.get(h) is seq:
                del self._pending[h]

    def retain(self, seq) -> bool:
        """Keeps the indexed blocks of a finished seq as a cache entry (its region trimmed to them) instead
        of freeing it; False when it has none (the caller frees the region)."""
        blocks = getattr(seq, "indexed_blocks", 0)
        if not blocks or seq.region is None:
            return False
        self.forget(seq)
        region = seq.region
        if region.blocks > blocks:
            self.pool.free(Region(region.start + blocks, region.blocks - blocks))
            region.blocks = blocks
        entry = _Entry(region, seq.tokens[:blocks * self.block], seq.block_hashes[:blocks])
        for h in entry.hashes:
            self._index.setdefault(h, entry)
        self._entries[id(entry)] = entry
        seq.region = None
        return True

    # -- memory --------------------------------------------------------------------------------

    @property
    def held_blocks(self) -> int:
        return sum(e.region.blocks for e in self._entries.values())

    def regions(self) -> list[tuple[Region, int]]:
        """Every entry's region and used positions (for compaction)."""
        return [(e.region, e.cached) for e in self._entries.values()]

    def evict(self, blocks: int, keep: object = None) -> int:
        """Frees entries, least recently used first (never `keep`), until `blocks` were freed or none is left."""
        freed = 0
        for key in list(self._entries):
            if freed >= blocks:
                break
            entry = self._entries[key]
            if entry is keep:
                continue
            del self._entries[key]
            for h in entry.hashes:
                if self._index.get(h) is entry:
                    del self._index[h]
            freed += entry.region.blocks
            self.pool.free(entry.region)
        return freed
