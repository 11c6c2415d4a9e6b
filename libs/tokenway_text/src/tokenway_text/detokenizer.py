"""One tokenizer's streaming detokenizers, built from its Rust `tokenizers.Tokenizer`.

The tokenizer service builds one from the tokenizer it serves; the orchestrator builds the same one
from that tokenizer's serialized form (fetched once from the service and checked against its
fingerprint), so that every generated token is decoded in the orchestrator's own process, with no
call per chunk. Both then decode exactly alike: same ids, same text, same stop handling.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from tokenway_common import errors

from . import vocab
from .stream import ByteLevelDecoder, DetokenizeStream, StreamOptions, WindowDecoder, complete_texts

# Stop strings a stream may hold, and characters per stop string (matching costs per token what they hold).
MAX_STOPS = 64
MAX_STOP_CHARS = 1024


def spec_digest(tokenizer_json: str) -> str:
    """sha256 (hex) of a serialized tokenizer, to check it arrived whole."""
    return hashlib.sha256(tokenizer_json.encode()).hexdigest()


class Detokenizer:
    """Opens streaming detokenizers; cheap per stream, pure Python per token."""

    def __init__(self, rust: Any, spec: dict[str, Any] | None = None) -> None:
        self.rust = rust
        self.vocab_size: int = rust.get_vocab_size(with_added_tokens=True)
        self.special_ids = frozenset(i for i, tok in rust.get_added_tokens_decoder().items() if tok.special)
        spec = spec if spec is not None else json.loads(rust.to_str())
        self.token_bytes: list[bytes] | None = (vocab.byte_table(rust, self.vocab_size)
                                                if vocab.is_byte_level(spec.get("decoder")) else None)
        self._texts = complete_texts(self.token_bytes) if self.token_bytes is not None else None

    @classmethod
    def from_json(cls, tokenizer_json: str) -> Detokenizer:
        """From a serialized Rust tokenizer (`Tokenizer.to_str()`); blocking: call it off the event loop."""
        from tokenizers import Tokenizer  # noqa: PLC0415 - only where a detokenizer is built

        return cls(Tokenizer.from_str(tokenizer_json), json.loads(tokenizer_json))

    @property
    def byte_level(self) -> bool:
        return self.token_bytes is not None

    def check_ids(self, ids: Sequence[int], field: str) -> None:
        vocab_size = self.vocab_size
        if not ids or (min(ids) >= 0 and max(ids) < vocab_size):
            return
        for j, tid in enumerate(ids):
            if not 0 <= tid < vocab_size:
                raise errors.InvalidArgument(
                    f"token id {tid} is out of range [0, {vocab_size})", reason="TOKEN_ID_OUT_OF_RANGE",
                    metadata={"token_id": tid, "vocab_size": vocab_size},
                    field_violations=[(f"{field}[{j}]", f"{tid} is not in [0, {vocab_size})")])

    def open(self, options: StreamOptions) -> DetokenizeStream:
        """A streaming detokenizer for one generation."""
        self.check_ids(options.prompt_token_ids, "start.prompt_token_ids")
        if len(options.stop) > MAX_STOPS:
            raise errors.InvalidArgument(f"at most {MAX_STOPS} stop strings are allowed", reason="TOO_MANY_STOPS",
                                         metadata={"max_stops": MAX_STOPS},
                                         field_violations=[("start.stop", f"at most {MAX_STOPS} entries")])
        for i, stop in enumerate(options.stop):
            if len(stop) > MAX_STOP_CHARS:
                raise errors.InvalidArgument(f"stop strings may hold at most {MAX_STOP_CHARS} characters",
                                             reason="STOP_TOO_LONG", metadata={"max_stop_chars": MAX_STOP_CHARS},
                                             field_violations=[(f"start.stop[{i}]", f"at most {MAX_STOP_CHARS} characters")])
        if self.token_bytes is not None:
            decoder: ByteLevelDecoder | WindowDecoder = ByteLevelDecoder(
                self.token_bytes, self.special_ids, options.skip_special_tokens, self._texts)
        else:
            rust = self.rust
            decoder = WindowDecoder(lambda ids, skip: rust.decode(ids, skip_special_tokens=skip),
                                    options.prompt_token_ids, options.skip_special_tokens)
        return DetokenizeStream(decoder, options, self.check_ids)
