"""KV storage written in place: one pool allocated once, a contiguous region of it per sequence.

The pool holds every layer's keys and values, `[layers, kv_heads, slots, head_dim]` each, allocated and
touched at start so the process's memory is what the budget says from the first request on. A sequence
owns one contiguous run of slots (a region, in blocks of `block` slots): position p of the sequence lives
in slot `start + p` of every layer. New tokens are written into their slots (`index_copy_`), and
attention reads each sequence's keys as a view of the pool, so nothing is copied per step, per admission
or per finish. A region grows in place when the blocks after it are free; otherwise it moves to a larger
region (one copy of that sequence; the scheduler grows regions by a quarter, so a copy is amortised over
a quarter as many new tokens as the sequence held). When the
free blocks suffice but no hole is large enough, `clear` moves just the regions in the way of one
(the window with the fewest live positions, into holes outside it), or `compact` slides every region
together; the scheduler does it only when an admission or a growth would otherwise wait.

`RegionAllocator` is the bookkeeping alone (no torch): best-fit over a sorted list of holes (or, for the
prefix cache's small entries, the top of the highest hole that fits).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools

import torch


@dataclasses.dataclass
class Region:
    start: int  # first block
    blocks: int


class RegionAllocator:
    """Contiguous runs of blocks out of `total`, best fit, holes coalesced on free."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._holes: list[list[int]] = [[0, total]] if total else []  # sorted [start, length], never adjacent
        self.free_blocks = total

    def allocate(self, blocks: int, top: bool = False) -> Region | None:
        """A region of `blocks` from the smallest hole that fits (the lowest such), or None. With `top`, the
        last blocks of the highest hole that fits instead: small long-lived regions (prefix-cache entries)
        gather at the end of the pool and leave the holes below whole for sequences."""
        best = None
        if top:
            best = next((i for i in range(len(self._holes) - 1, -1, -1) if self._holes[i][1] >= blocks), None)
        else:
            for i, (_, length) in enumerate(self._holes):
                if length >= blocks and (best is None or length < self._holes[best][1]):
                    best = i
                    if length == blocks:
                        break
        if best is None:
            return None
        start, length = self._holes[best]
        if length == blocks:
            del self._holes[best]
        elif top:
            self._holes[best][1] = length - blocks
            start += length - blocks
        else:
            self._holes[best] = [start + blocks, length - blocks]
        self.free_blocks -= blocks
        return Region(start, blocks)

    def take(self, start: int, blocks: int) -> Region:
        """The region [start, start + blocks), which must lie inside one hole."""
        i = bisect.bisect_right(self._holes, [start, self.total + 1]) - 1
        if i < 0 or self._holes[i][0] + self._holes[i][1] < start + blocks:
            raise AssertionError(f"blocks [{start}, {start + blocks}) are not free")
        hs, hn = self._holes[i]
        parts = [[hs, start - hs], [start + blocks, hs + hn - start - blocks]]
        self._holes[i:i + 1] = [h for h in parts if h[1]]
        self.free_blocks -= blocks
        return Region(start, blocks)

    def extend(self, region: Region, extra: int) -> bool:
        """Grows `region` in place by `extra` blocks when the hole right after it is large enough."""
        end = region.start + region.blocks
        i = bisect.bisect_left(self._holes, [end, -1])
        if i == len(self._holes) or self._holes[i][0] != end or self._holes[i][1] < extra:
            return False
        if self._holes[i][1] == extra:
            del self._holes[i]
        else:
            self._holes[i] = [end + extra, self._holes[i][1] - extra]
        region.blocks += extra
        self.free_blocks -= extra
        return True

    def free(self, region: Region) -> None:
        start, length = region.start, region.blocks
        if length == 0:
            return
        i = bisect.bisect_left(self._holes, [start, -1])
        if i < len(self._holes) and self._holes[i][0] < start + length or \
                i and self._holes[i - 1][0] + self._holes[i - 1][1] > start:
            raise AssertionError(f"double free of blocks [{start}, {start + length})")
        if i < len(self._holes) and self._holes[i][0] == start + length:  # merge with the hole after
            length += self._holes[i][1]
            del self._holes[i]
        if i and self._holes[i - 1][0] + self._holes[i - 1][1] == start:  # and the one before
            self._holes[i - 1][1] += length
        else:
            self._holes.insert(i, [start, length])
        self.free_blocks += region.blocks
        region.blocks = 0

    def holes(self) -> list[tuple[int, int]]:
        return [(s, n) for s, n in self._holes]


class KVPool:
    """Every layer's KV for `tokens` positions (rounded up to whole blocks), allocated once."""

    def __init__(self, *, layers: int, kv_heads: int, head_dim: int, tokens: int, dtype: torch.dtype,
                 block: int = 16) -> None:
        self.block = block
        blocks = -(-tokens // block)
        self.slots = blocks * block
        # zeros, not empty: the pages are touched now, so RSS is the budget from the start
        self.k = torch.zeros(layers, kv_heads, self.slots, head_dim, dtype=dtype)
        self.v = torch.zeros(layers, kv_heads, self.slots, head_dim, dtype=dtype)
        self.allocator = RegionAllocator(blocks)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @property
    def blocks(self) -> int:
        return self.allocator.total

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block)

    def usage(self) -> float:
        """Share of the pool held by regions (0..1)."""
        total = self.allocator.total
        return (total - self.allocator.free_blocks) / total if total else 0.0

    def allocate(self, tokens: int) -> Region | None:
        return self.allocator.allocate(self.blocks_for(tokens))

    def free(self, region: Region) -> None:
        self.allocator.free(region)

    def grow(self, region: Region, tokens: int, used: int) -> bool:
        """Makes `region` hold at least `tokens` positions, keeping its first `used` ones: in place when
        the blocks after it are free, else by moving it to a new region. False when neither fits."""
        need = self.blocks_for(tokens)
        if need <= region.blocks:
            return True
        if self.allocator.extend(region, need - region.blocks):
            return True
        new = self.allocator.allocate(need)
        if new is None:
            return False
        self._move(region.start, new.start, used)
        self.allocator.free(Region(region.start, region.blocks))
        region.start, region.blocks = new.start, new.blocks
        return True

    def compact(self, regions: list[Region], used: list[int], last: Region | None = None) -> None:
        """Slides every region (with its first `used` positions) toward the start of the pool, so the free
        blocks form one hole at the end; `last`, when given, is placed last, right before that hole, so it
        can then grow in place. Copies live KV: only when fragmentation blocks an allocation or a growth."""
        order = sorted(range(len(regions)), key=lambda i: (regions[i] is last, regions[i].start))
        saved = None
        if last is not None:  # others may slide over its place before it moves: keep a copy of it
            n = used[next(i for i, r in enumerate(regions) if r is last)]
            s = self.slot(last)
            saved = (n, self.k[:, :, s:s + n].clone(), self.v[:, :, s:s + n].clone())
        cursor = 0
        for i in order:
            r = regions[i]
            if r is last:
                n, k, v = saved
                self.k[:, :, cursor * self.block:cursor * self.block + n] = k
                self.v[:, :, cursor * self.block:cursor * self.block + n] = v
                r.start = cursor
            elif r.start != cursor:
                self._move(r.start, cursor, used[i])
                r.start = cursor
            cursor += r.blocks
        alloc = self.allocator
        alloc._holes = [[cursor, alloc.total - cursor]] if cursor < alloc.total else []

    def clear(self, blocks: int, regions: list[Region], used: list[int], tries: int = 8) -> Region | None:
        """A region of `blocks` when the free blocks would do but no hole is large enough, made by moving only
        the regions in the way: of the windows of `blocks` blocks (among free blocks and `regions`, which
        must be every region of the pool, with their used positions), the ones with the fewest live positions
        are tried (the cheapest `tries`), and the first whose regions all fit into holes outside it (best fit,
        largest first) is emptied that way. Copies those regions' KV only (often a few small cache entries),
        where `compact` copies every region; None when none of them can be emptied."""
        segs = sorted([(s, n, -1) for s, n in self.allocator.holes()] +
                      [(r.start, r.blocks, i) for i, r in enumerate(regions) if r.blocks])
        windows = []
        for i, (start, _, _) in enumerate(segs):
            cost, inside, end = 0, [], start
            for s, n, idx in itertools.islice(segs, i, None):
                if s != end:  # blocks that are neither free nor in `regions`: they cannot move
                    break
                if idx >= 0:
                    cost += used[idx]
                    inside.append(idx)
                end = s + n
                if end - start >= blocks:
                    windows.append((cost, len(inside), start, inside))
                    break
        for cost, _, start, inside in sorted(windows, key=lambda w: w[:3])[:tries]:
            if not inside:
                return self.allocator.take(start, blocks)  # a hole fits after all
            stop = start + blocks
            holes = [[a, b] for s, n in self.allocator.holes()
                     for a, b in ((s, min(s + n, start)), (max(s, stop), s + n)) if b > a]
            plan = []
            for idx in sorted(inside, key=lambda x: -regions[x].blocks):
                n = regions[idx].blocks
                fit = min((h for h in holes if h[1] - h[0] >= n), key=lambda h: h[1] - h[0], default=None)
                if fit is None:
                    break
                plan.append((idx, fit[0]))
                fit[0] += n
            if len(plan) < len(inside):
                continue
            for idx, dst in plan:  # from inside the window to holes outside it: no overlap
                r = regions[idx]
                self.allocator.take(dst, r.blocks)
                self._move(r.start, dst, used[idx])
                self.allocator.free(Region(r.start, r.blocks))
                r.start = dst
            return self.allocator.take(start, blocks)
        return None

    def _move(self, src_block: int, dst_block: int, used: int) -> None:
        if used == 0 or src_block == dst_block:
            return
        s, d = src_block * self.block, dst_block * self.block
        for t in (self.k, self.v):
            src = t[:, :, s:s + used]
            if abs(s - d) < used:  # overlapping ranges: go through a copy of this one sequence
                src = src.clone()
            t[:, :, d:d + used].copy_(src)

    def slot(self, region: Region) -> int:
        """The pool slot of position 0 of the sequence in `region`."""
        return region.start * self.block
