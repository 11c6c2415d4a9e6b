"""What the tokenizer's files say about its tokens: their bytes, and the bounds that follow.

Pure functions over the tokenizer.json spec (a dict) and the Rust tokenizer; no gRPC.
"""

from __future__ import annotations

import re
from typing import Any

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# Pre-tokenizers that only cut the text (they drop and add nothing).
_CUTTING_PRE_TOKENIZERS = {"ByteLevel", "Digits", "Punctuation", "UnicodeScripts"}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def is_byte_level(decoder_spec: dict[str, Any] | None) -> bool:
    if not decoder_spec:
        return False
    if decoder_spec.get("type") == "ByteLevel":
        return True
    if decoder_spec.get("type") == "Sequence":
        return bool(decoder_spec.get("decoders")) and all(is_byte_level(d) for d in decoder_spec["decoders"])
    return False


def byte_table(rust: Any, vocab_size: int) -> list[bytes]:
    """The bytes each id decodes to, as the Rust ByteLevel decoder does token by token: every
    character through GPT-2's table, or the token's own UTF-8 when one is outside it (added tokens
    like `日本語` — the decoder treats added tokens the same way)."""
    char_bytes = {c: b for b, c in bytes_to_unicode().items()}
    table: list[bytes] = []
    for i in range(vocab_size):
        token = rust.id_to_token(i) or ""
        try:
            table.append(bytes(char_bytes[c] for c in token))
        except KeyError:
            table.append(token.encode())
    return table


def decoded_table(rust: Any, vocab_size: int) -> list[bytes]:
    """Best available bytes per id for tokenizers that are not byte-level: SentencePiece byte
    fallback tokens (`<0xE2>`) are their one byte; others the UTF-8 of the id decoded alone, with the
    leading space a decoder strips from a lone `▁word` put back."""
    table: list[bytes] = []
    for i in range(vocab_size):
        token = rust.id_to_token(i) or ""
        if m := _BYTE_FALLBACK.fullmatch(token):
            table.append(bytes([int(m.group(1), 16)]))
            continue
        text = rust.decode([i], skip_special_tokens=False)
        if token.startswith("▁") and not text.startswith(" "):
            text = " " + text
        table.append(text.encode())
    return table


def _pre_tokenizer_only_cuts(spec: dict[str, Any] | None) -> bool:
    if spec is None:
        return True
    kind = spec.get("type")
    if kind == "Sequence":
        return all(_pre_tokenizer_only_cuts(p) for p in spec.get("pretokenizers", ()))
    if kind == "Split":
        return spec.get("behavior") != "Removed" and not spec.get("invert", False)
    return kind in _CUTTING_PRE_TOKENIZERS


def _added_tokens_plain(spec: dict[str, Any]) -> bool:
    """No added token swallows whitespace around it (lstrip/rstrip)."""
    return not any(t.get("lstrip") or t.get("rstrip") for t in spec.get("added_tokens", ()))


def max_chars_per_token(spec: dict[str, Any], table: list[bytes] | None) -> int:
    """The most characters one token can stand for, 0 when no bound is known.

    Sound for byte-level BPE that keeps every byte of the text (no normalizer, pre-tokenizers that
    only cut, the 256 byte tokens present, no added token stripping whitespace): the tokens then
    partition the text's UTF-8, and a character is counted by the token holding its first byte, so
    a token stands for at most as many characters as it has non-continuation bytes.
    """
    if table is None or spec.get("normalizer") is not None or not _pre_tokenizer_only_cuts(spec.get("pre_tokenizer")):
        return 0
    if not _added_tokens_plain(spec):
        return 0
    model = spec.get("model") or {}
    vocab = model.get("vocab") or {}
    if model.get("type") != "BPE" or not all(c in vocab for c in bytes_to_unicode().values()):
        return 0
    longest = max((sum(1 for b in t if not 0x80 <= b < 0xC0) for t in table), default=0)
    added = max((len(t.get("content", "")) for t in spec.get("added_tokens", ())), default=0)
    return max(longest, added, 1)


def cuts_are_exact(spec: dict[str, Any]) -> bool:
    """Whitespace cuts (see bounded.next_cut) leave the ids unchanged: GPT-2's byte-level regex
    pre-tokenizer without a prefix space, no normalizer, BPE, no added token holding whitespace."""
    pre = spec.get("pre_tokenizer") or {}
    return (spec.get("normalizer") is None and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False) and (spec.get("model") or {}).get("type") == "BPE"
            and not (spec.get("model") or {}).get("dropout")
            and _added_tokens_plain(spec)
            and not any(re.search(r"\s", t.get("content", "")) for t in spec.get("added_tokens", ())))
