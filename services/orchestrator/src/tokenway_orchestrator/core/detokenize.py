"""Streaming detokenization in the orchestrator's own process: no call to the tokenizer per chunk.

The decoder is `tokenway_text`'s, built from the tokenizer the tokenizer service serves (its serialized
form, fetched once at startup and checked against the served model's fingerprint), so the text and the
stop handling are exactly those of the service's DetokenizeStream.
"""

from __future__ import annotations

import logging

from tokenway_common import errors
from tokenway_text import Detokenizer, StreamOptions
from tokenway_text.stream import DetokenizeStream

from .ports import Detokenized

log = logging.getLogger("tokenway.orchestrator.detokenize")


class LocalDetokenizer:
    """Opens in-process streams; the same `detokenize_stream` the tokenizer client offers."""

    def __init__(self, detokenizer: Detokenizer) -> None:
        self.detokenizer = detokenizer

    def detokenize_stream(self, prompt_tail: list[int], skip_special_tokens: bool, stop: tuple[str, ...],
                          include_stop: bool, timeout: float | None) -> LocalStream:
        return LocalStream(self.detokenizer.open(StreamOptions(
            prompt_token_ids=prompt_tail, skip_special_tokens=skip_special_tokens, stop=stop,
            include_stop_str_in_output=include_stop)))


class LocalStream:
    def __init__(self, stream: DetokenizeStream) -> None:
        self._stream = stream

    async def push(self, token_ids: tuple[int, ...], last: bool) -> Detokenized:
        try:
            d = self._stream.push(token_ids, last)
        except errors.TokenwayError as exc:  # ids the engine made that the tokenizer cannot decode: our fault
            log.error("detokenizing the engine's tokens failed: %s %s", exc.reason, exc)
            raise errors.Internal("internal error; see the server log", reason="INTERNAL") from exc
        return Detokenized(d.text, d.num_tokens, d.matched_stop, d.token_texts)

    async def aclose(self) -> None:
        return None
