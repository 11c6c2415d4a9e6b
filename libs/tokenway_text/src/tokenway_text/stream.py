"""Streaming detokenization: token ids in, text deltas out, with stop strings.

Two layers, both O(1) amortised work per token:

* an incremental decoder turns one token id into the text it adds. For byte-level BPE tokenizers
  (GPT-2, Llama 3, Qwen, the embedded model) every token is a byte string and a UTF-8 incremental
  decoder with "replace" errors holds back at most the 3 bytes of an incomplete character: lone
  byte tokens come out as U+FFFD as they arrive, exactly like the one-shot decode. Other
  tokenizers (SentencePiece/Metaspace) use vLLM-style prefix/read offsets over a short window of
  ids seeded with the prompt's last ids, so the first token gets its leading space right.
* a stop matcher holds back only the longest suffix of the pending text that could still begin a
  stop string. The match that ends first wins (ties: the one that starts first), which is what
  cutting the one-shot text at its first stop gives, whatever the token boundaries were.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

from tokenway_common import errors

REPLACEMENT = "\ufffd"
# Window decoder: tokens of left context kept, and tokens an undecodable tail may be held.
_CONTEXT_TOKENS = 5
_MAX_HELD_TOKENS = 6


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """How one stream decodes; mirrors DetokenizeStreamStart."""

    prompt_token_ids: Sequence[int] = ()
    skip_special_tokens: bool = True
    stop: Sequence[str] = ()
    include_stop_str_in_output: bool = False


class StreamDelta(NamedTuple):
    """The answer to one chunk; mirrors DetokenizeStreamResponse (a tuple: made once per chunk, cheaply)."""

    text: str
    num_tokens: int
    matched_stop: str | None
    token_texts: list[str]


class ByteLevelDecoder:
    """Per-token bytes through an incremental UTF-8 decoder (at most 3 bytes held back).

    `texts[id]` is the token's text when its bytes are complete UTF-8 on their own (most tokens): with
    nothing held back, that text is exactly what the decoder would give, without calling it."""

    def __init__(self, token_bytes: Sequence[bytes], special_ids: frozenset[int], skip_special_tokens: bool,
                 texts: Sequence[str | None] | None = None) -> None:
        self._bytes = token_bytes
        self._texts = texts if texts is not None else complete_texts(token_bytes)
        self._skip = special_ids if skip_special_tokens else frozenset()
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._held = False  # the decoder holds the first bytes of a character

    def step(self, token_id: int) -> str:
        if token_id in self._skip:
            return ""
        if not self._held:
            text = self._texts[token_id]
            if text is not None:
                return text
        out = self._utf8.decode(self._bytes[token_id])
        self._held = bool(self._utf8.getstate()[0])
        return out

    def flush(self) -> str:
        self._held = False
        return self._utf8.decode(b"", final=True)


def complete_texts(token_bytes: Sequence[bytes]) -> list[str | None]:
    """Each token's text when its bytes are complete, valid UTF-8 on their own, else None."""
    out: list[str | None] = []
    for b in token_bytes:
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
    return out


class WindowDecoder:
    """vLLM-style offsets: decode a short window of ids and emit what grew past the read offset.

    Text ending in U+FFFD may be an incomplete character and waits, but for at most
    `_MAX_HELD_TOKENS` tokens; then it is emitted as is (bounded hold-back).
    """

    def __init__(self, decode: Callable[[list[int], bool], str], prompt_token_ids: Sequence[int],
                 skip_special_tokens: bool) -> None:
        self._decode = decode
        self._skip = skip_special_tokens
        self._ids: list[int] = list(prompt_token_ids[-_CONTEXT_TOKENS:])
        self._prefix = 0
        self._read = len(self._ids)
        self._prefix_text: str | None = None

    def _window_prefix_text(self) -> str:
        if self._prefix_text is None:
            self._prefix_text = self._decode(self._ids[self._prefix:self._read], self._skip)
        return self._prefix_text

    def step(self, token_id: int) -> str:
        self._ids.append(token_id)
        return self._advance(force=False)

    def flush(self) -> str:
        return self._advance(force=True) if self._read < len(self._ids) else ""

    def _advance(self, force: bool) -> str:
        prefix_text = self._window_prefix_text()
        new_text = self._decode(self._ids[self._prefix:], self._skip)
        held = len(self._ids) - self._read
        if new_text.endswith(REPLACEMENT) and not force and held < _MAX_HELD_TOKENS:
            return ""
        delta = new_text[len(prefix_text):]
        # Slide the window: the new prefix starts at the old read offset; keep it short.
        self._prefix, self._read = self._read, len(self._ids)
        if self._read - self._prefix > _CONTEXT_TOKENS:
            self._prefix = self._read - _CONTEXT_TOKENS
        self._prefix_text = None
        if self._prefix > 4 * _CONTEXT_TOKENS:  # drop ids no window can reach again
            del self._ids[:self._prefix]
            self._read -= self._prefix
            self._prefix = 0
        return delta


class StopMatcher:
    """Finds stop strings across token boundaries, holding back as little text as possible.

    Work per fed piece is bounded by the stops' lengths, never by how much text came before: the
    held text is always a proper prefix of some stop (shorter than the longest stop), and the held
    suffix is found by checking only the last `longest - 1` positions that start like a stop.
    """

    def __init__(self, stops: Sequence[str], include_stop_str_in_output: bool) -> None:
        self.stops = tuple(dict.fromkeys(s for s in stops if s))
        self._include = include_stop_str_in_output
        self._pending = ""
        if self.stops:
            self._max_hold = max(len(s) for s in self.stops) - 1
            self._prefixes = frozenset(s[:k] for s in self.stops for k in range(1, len(s)))
            self._firsts = frozenset(s[0] for s in self.stops)
            self._inner = frozenset(c for s in self.stops for c in s[:-1])  # a held suffix ends with one of these

    def feed(self, text: str) -> tuple[str, str | None, int]:
        """Adds text; returns (text safe to emit, matched stop or None, length of held text before).

        On a match the emitted text ends at the cut point (end of the stop if included, else its
        start); the third value lets the caller locate that cut within the text it fed.
        """
        held_before = len(self._pending)
        stops = self.stops
        if not stops:
            return text, None, held_before
        pending = self._pending + text if held_before else text
        for s in stops:
            if s in pending:
                return self._cut(pending, held_before)
        n = len(pending)
        if not n or pending[-1] not in self._inner:  # no suffix can begin a stop: hold nothing
            self._pending = ""
            return pending, None, held_before
        firsts, prefixes = self._firsts, self._prefixes
        for i in range(max(0, n - self._max_hold), n):
            if pending[i] in firsts and pending[i:] in prefixes:
                self._pending = pending[i:]
                return pending[:i], None, held_before
        self._pending = ""
        return pending, None, held_before

    def _cut(self, pending: str, held_before: int) -> tuple[str, str | None, int]:
        """The text up to the stop that ends first (ties: the one that starts first)."""
        best: tuple[int, int, str] | None = None
        for s in self.stops:
            i = pending.find(s)
            if i >= 0:
                key = (i + len(s), i, s)
                if best is None or key[:2] < best[:2]:
                    best = key
        assert best is not None
        end, start, stop = best
        self._pending = ""
        return pending[:end if self._include else start], stop, held_before

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


class DetokenizeStream:
    """One generation's decoding state. `push` answers each chunk with exactly one StreamDelta."""

    def __init__(self, decoder: ByteLevelDecoder | WindowDecoder, options: StreamOptions,
                 check_ids: Callable[[Sequence[int], str], None]) -> None:
        self._decoder = decoder
        self._stops = StopMatcher(options.stop, options.include_stop_str_in_output)
        self._check_ids = check_ids
        self.num_tokens = 0
        self.matched_stop: str | None = None
        self.finished = False
        self._last_piece = ""  # text of the last token fed, for crediting the final flush

    def push(self, token_ids: Sequence[int], last: bool = False) -> StreamDelta:
        if self.matched_stop is not None:
            return StreamDelta("", self.num_tokens, self.matched_stop, [])
        if self.finished:
            raise errors.InvalidArgument("the stream already received its last chunk", reason="STREAM_FINISHED",
                                         field_violations=[("chunk", "no chunk may follow one with last=true")])
        if token_ids:
            self._check_ids(token_ids, "chunk.token_ids")
        out: list[str] = []
        token_texts: list[str] = []
        step = self._decoder.step
        if not self._stops.stops:  # no stop strings: every piece goes out as it is
            for tid in token_ids:
                piece = step(tid)
                out.append(piece)
                token_texts.append(piece)
            if token_texts:
                self.num_tokens += len(token_texts)
                self._last_piece = token_texts[-1]
        else:  # _feed inlined: this loop runs once per generated token
            feed = self._stops.feed
            for k, tid in enumerate(token_ids):
                piece = step(tid)
                emit, stop, held_before = feed(piece)
                out.append(emit)
                if stop is not None:
                    self.num_tokens += k + 1
                    self.matched_stop = stop
                    token_texts.append(piece[:max(0, len(emit) - held_before)])
                    return StreamDelta("".join(out), self.num_tokens, stop, token_texts)
                token_texts.append(piece)
            if token_texts:
                self.num_tokens += len(token_texts)
                self._last_piece = token_texts[-1]
        if last:
            self.finished = True
            tail = self._decoder.flush()
            if tail:
                if token_texts:  # the held-back bytes belong to this chunk's last token
                    token_texts.pop()
                    if self._feed(tail, out, token_texts, prior=self._last_piece):
                        return StreamDelta("".join(out), self.num_tokens, self.matched_stop, token_texts)
                elif self._feed(tail, out, None):
                    return StreamDelta("".join(out), self.num_tokens, self.matched_stop, token_texts)
            out.append(self._stops.flush())
        return StreamDelta("".join(out), self.num_tokens, None, token_texts)

    def _feed(self, piece: str, out: list[str], token_texts: list[str] | None, prior: str = "") -> bool:
        """Feeds one token's text to the stop matcher; True when a stop matched."""
        emit, stop, held_before = self._stops.feed(piece)
        out.append(emit)
        whole = prior + piece
        if stop is None:
            self._last_piece = whole
            if token_texts is not None:
                token_texts.append(whole)
            return False
        self.matched_stop = stop
        if token_texts is not None:
            # The cut lies at len(emit) within (held text + piece); keep the part of this token before it.
            keep = max(0, len(emit) - held_before) + len(prior)
            token_texts.append(whole[:keep])
        return True
