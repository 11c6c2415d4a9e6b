"""Encoding bounded by a token limit: in pieces, off the event loop, stoppable.

A text is encoded in pieces of at most `piece_chars` characters, cut where BPE pre-tokenization
is unaffected when that can be shown (see `next_cut`), each piece by the Rust `encode_batch`
(which releases the GIL, unlike `encode` on one string). Tokens are counted as pieces finish;
the work stops as soon as the count proves the limit exceeded, or when the job's `stop` event is
set (the caller went away). Only a text that fits gets its exact ids, so work and memory are
bounded by the limit, not by the request.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

PIECE_CHARS = 16384


class LimitExceeded(Exception):
    """The text (or prompt) at `index` encodes into more tokens than allowed."""

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        self.index = index


class Stopped(Exception):
    """The job's stop event was set: nobody waits for the result any more."""


@dataclasses.dataclass
class Job:
    """One call's work on a worker thread; `stop` is set when its caller is gone."""

    chars: int
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    pieces: int = 0


@dataclasses.dataclass(frozen=True)
class Segment:
    """A stretch of text encoded on its own; `plain` ones encode special-token strings as text."""

    text: str
    plain: bool = False


def next_cut(text: str, start: int, piece_chars: int) -> tuple[int, bool]:
    """The end of the piece starting at `start`, and whether that cut is at a pre-token boundary.

    The preferred cut is before a space or newline that follows a non-space character: with GPT-2's
    pre-tokenization regex no pre-token spans that point (words take a space only in front; a
    whitespace run never ends in a non-space), so encoding both sides apart gives the same ids.
    Without one in the second half of the window the cut is hard (at the window's end).
    """
    end = start + piece_chars
    if end >= len(text):
        return len(text), True
    lo = start + piece_chars // 2
    for ch in "\n ":
        i = text.rfind(ch, lo + 1, end + 1)
        while i > lo:
            if not text[i - 1].isspace():
                return i, True
            i = text.rfind(ch, lo + 1, i)
    return end, False


class PieceEncoder:
    """Counts and encodes segments piece by piece against a token budget.

    `exact_cuts`: the tokenizer's pre-tokenization is known to keep `next_cut`'s whitespace cuts
    exact (GPT-2 byte-level regex, no normalizer, no added token holding whitespace), so piece ids
    concatenate into the whole text's ids. Otherwise each cut counts with `slack` tokens of doubt
    and a segment that was cut is encoded again whole (bounded: its pieces fit the budget).
    """

    def __init__(self, rust: Any, plain: Any, *, exact_cuts: bool, slack: int, piece_chars: int = PIECE_CHARS,
                 trace: Callable[[str, Job], None] | None = None) -> None:
        self.rust = rust
        self.plain = plain
        self.exact_cuts = exact_cuts
        self.slack = slack
        self.piece_chars = piece_chars
        self.trace = trace
        self._plain_ids: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.pieces_encoded = 0  # Rust encode calls made by jobs, all jobs together

    def call(self, job: Job, encoder: Any, texts: list[str], add_special_tokens: bool = False) -> list[Any]:
        if job.stop.is_set():
            if self.trace:
                self.trace("stopped", job)
            raise Stopped
        if self.trace:
            self.trace("piece", job)
        encs = encoder.encode_batch(texts, add_special_tokens=add_special_tokens)
        job.pieces += 1
        with self._lock:
            self.pieces_encoded += 1
        return encs

    def plain_ids(self, text: str) -> list[int]:
        ids = self._plain_ids.get(text)
        if ids is None:  # special-token strings only: a handful, each encoded once
            ids = self._plain_ids[text] = list(self.plain.encode(text, add_special_tokens=False).ids)
        return ids

    def _pieces(self, segments: Sequence[Segment]) -> Iterator[tuple[int, int, int, bool]]:
        for si, seg in enumerate(segments):
            if seg.plain:
                yield si, 0, len(seg.text), True
                continue
            start, n = 0, len(seg.text)
            while start < n:
                end, exact = next_cut(seg.text, start, self.piece_chars)
                yield si, start, end, exact and self.exact_cuts
                start = end

    def encode(self, job: Job, segments: Sequence[Segment], budget: int,
               offsets: bool = False) -> tuple[list[int], list[tuple[int, int]] | None]:
        """The ids of the segments, one after the other (no special tokens added); raises
        LimitExceeded once more than `budget` tokens are certain, Stopped when the job is stopped.
        Offsets are characters within the one segment (Tokenize has one)."""
        if budget < 0:
            raise LimitExceeded
        parts: list[list[tuple[list[int], list[tuple[int, int]] | None, int]]] = [[] for _ in segments]
        cut: set[int] = set()  # segments with an inexact cut: encoded again whole at the end
        count = doubt = 0
        batch: list[tuple[int, int, int]] = []
        batch_chars = 0

        def flush() -> None:
            nonlocal count, batch_chars
            encs = self.call(job, self.rust, [segments[si].text[s:e] for si, s, e in batch])
            for (si, s, _), enc in zip(batch, encs):
                ids = enc.ids
                parts[si].append((ids, enc.offsets if offsets else None, s))
                count += len(ids)
            batch.clear()
            batch_chars = 0
            if count - doubt > budget:
                raise LimitExceeded

        for si, s, e, exact in self._pieces(segments):
            if segments[si].plain:
                ids = self.plain_ids(segments[si].text)
                parts[si].append((ids, None, 0))
                count += len(ids)
                if count - doubt > budget:
                    raise LimitExceeded
                continue
            if not exact:
                doubt += self.slack
                cut.add(si)
            if batch and batch_chars + (e - s) > self.piece_chars:
                flush()
            batch.append((si, s, e))
            batch_chars += e - s
        if batch:
            flush()
        if cut:
            for si in sorted(cut):
                enc = self.call(job, self.rust, [segments[si].text])[0]
                parts[si] = [(enc.ids, enc.offsets if offsets else None, 0)]
            count = sum(len(ids) for seg_parts in parts for ids, _, _ in seg_parts)
            if count > budget:
                raise LimitExceeded
        ids_out = [i for seg_parts in parts for ids, _, _ in seg_parts for i in ids]
        if not offsets:
            return ids_out, None
        offs_out = [(a + s, b + s) for seg_parts in parts for _, offs, s in seg_parts for a, b in offs or ()]
        return ids_out, offs_out
