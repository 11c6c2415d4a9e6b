"""Prefix-cache-aware routing: send a prompt to the replica most likely to hold its prefix's KV cache.

Each orchestrator keeps its own approximate view, no coordination: for every replica, the hashes of the
prompt-prefix blocks (BLOCK tokens each, chained, so a block's hash names its whole prefix) it was sent
recently, in a bounded LRU. A prompt goes to the ready replica holding the longest run of its leading
blocks when that run is at least MIN_GAIN_BLOCKS longer than what the least busy replica holds (an opening
every prompt shares, like a chat template's, must not starve a replica that has not seen it yet), and
unless that replica is busier than the least busy one by more than the balance guard (`balanced`: so one
hot prefix cannot pile every request on one replica); otherwise it goes to the least busy, and among equally busy
replicas to the one holding the most of it, else the one this orchestrator filled least (new prefixes
spread over the replicas' caches instead of piling up where the first idle moment was, as SGLang's
cache-aware router places them by tree size). The engines evict
their caches on their own, so the view is a guess: a wrong guess costs a prefill, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

BLOCK = 16  # tokens per block, as the embedded engine's prefix cache
MAX_BLOCKS = 50_000  # remembered per replica (~a few MB at most)
MIN_GAIN_BLOCKS = 4  # blocks (64 tokens) more than the least busy replica holds, before the prefix decides


def block_hashes(tokens: Sequence[int], limit: int = 512) -> list[int]:
    """Chained hashes of the full blocks of `tokens` (at most `limit` blocks)."""
    out, h = [], 0
    for i in range(0, min(len(tokens) // BLOCK, limit) * BLOCK, BLOCK):
        h = hash((h, tuple(tokens[i:i + BLOCK])))
        out.append(h)
    return out


class PrefixIndex:
    def __init__(self, max_blocks: int = MAX_BLOCKS) -> None:
        self.max_blocks = max_blocks
        self._seen: dict[str, OrderedDict[int, None]] = {}

    def matched(self, address: str, hashes: Sequence[int]) -> int:
        """How many leading blocks of the prompt `address` was sent before."""
        seen = self._seen.get(address)
        n = 0
        if seen:
            for h in hashes:
                if h not in seen:
                    break
                n += 1
        return n

    def record(self, address: str, hashes: Sequence[int]) -> None:
        seen = self._seen.setdefault(address, OrderedDict())
        for h in hashes:
            seen[h] = None
            seen.move_to_end(h)
        while len(seen) > self.max_blocks:
            seen.popitem(last=False)

    def size(self, address: str) -> int:
        """Blocks remembered for `address`: how much of its cache this orchestrator filled."""
        seen = self._seen.get(address)
        return len(seen) if seen else 0

    def forget(self, address: str) -> None:
        """A replica restarted or was removed: its cache is gone."""
        self._seen.pop(address, None)


def balanced(load: float, least: float, max_batch: int = 0, slack: float = 0.5) -> bool:
    """The balance guard: may a replica with `load` in flight take more while the least busy has `least`?

    Up to 1.5x the least busy's load plus a quarter of its batch (at least 2): a cache hit saves a whole
    prefill, while one more sequence in a continuous batch costs a little of every step, so a prefix keeps
    its replica until that replica is clearly busier (SGLang's router tolerates a difference of 32)."""
    return load <= least * (1 + slack) + max(2, max_batch // 4)
