"""The model's Hugging Face tokenizer: loading (offline), batch encode/decode, chat, info, streams.

Batch calls go to the Rust tokenizer (they release the GIL) on a small thread pool so the event
loop stays free. Nothing here imports gRPC; errors are tokenway_common domain errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from tokenway_common import errors
from tokenway_common.modeldir import tokenizer_fingerprint

from .stream import ByteLevelDecoder, DetokenizeStream, StreamOptions, WindowDecoder

log = logging.getLogger("tokenway.tokenizer")

ROLES = ("system", "developer", "user", "assistant", "tool")
_UINT64_MAX = 2**64 - 1


@dataclasses.dataclass(frozen=True)
class Encoded:
    token_ids: list[int]
    offsets: list[tuple[int, int]] | None = None


@dataclasses.dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class RenderedChat:
    prompt_token_ids: list[int]
    prompt_text: str
    stop_token_ids: list[int]


@dataclasses.dataclass(frozen=True)
class SpecialToken:
    name: str
    content: str
    id: int


@dataclasses.dataclass(frozen=True)
class TokenizerInfo:
    name: str
    vocab_size: int
    special_tokens: list[SpecialToken]
    all_special_ids: list[int]
    chat_template: str
    fingerprint: str
    model_max_length: int


def _bytes_to_unicode() -> dict[int, str]:
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


def _is_byte_level(decoder_spec: dict[str, Any] | None) -> bool:
    if not decoder_spec:
        return False
    if decoder_spec.get("type") == "ByteLevel":
        return True
    if decoder_spec.get("type") == "Sequence":
        return bool(decoder_spec.get("decoders")) and all(_is_byte_level(d) for d in decoder_spec["decoders"])
    return False


class Tokenizer:
    """The served tokenizer. Build with `Tokenizer.load(model_dir)` (blocking: call off the loop)."""

    def __init__(self, hf: Any, model_dir: str, workers: int = 2) -> None:
        self.hf = hf
        self.rust = hf.backend_tokenizer
        self.model_dir = model_dir
        self.vocab_size = self.rust.get_vocab_size(with_added_tokens=True)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokenizer")
        added = self.rust.get_added_tokens_decoder()
        self.special_ids = frozenset(i for i, tok in added.items() if tok.special)
        self.bos_token_id: int | None = hf.bos_token_id
        self.stop_token_ids = self._stop_token_ids()
        self._prepends_bos = self.bos_token_id is not None and \
            self.rust.encode("a", add_special_tokens=True).ids[:1] == [self.bos_token_id]
        self._token_bytes = self._byte_table() if _is_byte_level(json.loads(self.rust.to_str()).get("decoder")) else None
        self.fingerprint = tokenizer_fingerprint(model_dir)

    @classmethod
    def load(cls, model_dir: str, workers: int = 2) -> Tokenizer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer  # heavy import, only when loading

        hf = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if not getattr(hf, "is_fast", False):
            raise errors.FailedPrecondition(f"{model_dir}: a fast (Rust) tokenizer is required", reason="SLOW_TOKENIZER")
        tok = cls(hf, model_dir, workers)
        log.info("tokenizer loaded", extra={"fields": {"model": model_dir, "vocab_size": tok.vocab_size,
                                                       "byte_level": tok.byte_level, "fingerprint": tok.fingerprint[:12]}})
        return tok

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def byte_level(self) -> bool:
        return self._token_bytes is not None

    # -- helpers ---------------------------------------------------------------------------------

    def _stop_token_ids(self) -> list[int]:
        ids: list[int] = []
        gen = Path(self.model_dir) / "generation_config.json"
        if gen.is_file():
            eos = json.loads(gen.read_text()).get("eos_token_id")
            ids += eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else []
        if self.hf.eos_token_id is not None:
            ids.append(self.hf.eos_token_id)
        return list(dict.fromkeys(i for i in ids if isinstance(i, int)))

    def _byte_table(self) -> list[bytes]:
        """The bytes each id decodes to (as the Rust ByteLevel decoder does, token by token)."""
        char_bytes = {c: b for b, c in _bytes_to_unicode().items()}
        table: list[bytes] = []
        for i in range(self.vocab_size):
            token = self.rust.id_to_token(i) or ""
            try:
                table.append(bytes(char_bytes[c] for c in token))
            except KeyError:  # e.g. an added token with characters outside the table: its own UTF-8
                table.append(token.encode())
        return table

    async def _run(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def check_ids(self, ids: Sequence[int], field: str) -> None:
        for j, tid in enumerate(ids):
            if not 0 <= tid < self.vocab_size:
                raise errors.InvalidArgument(
                    f"token id {tid} is out of range [0, {self.vocab_size})", reason="TOKEN_ID_OUT_OF_RANGE",
                    metadata={"token_id": tid, "vocab_size": self.vocab_size},
                    field_violations=[(f"{field}[{j}]", f"{tid} is not in [0, {self.vocab_size})")])

    # -- the operations --------------------------------------------------------------------------

    async def encode(self, texts: Sequence[str], add_special_tokens: bool = False,
                     return_offsets: bool = False) -> list[Encoded]:
        if not texts:
            raise errors.InvalidArgument("texts must hold at least one text", reason="EMPTY_BATCH",
                                         field_violations=[("texts", "at least one text is required")])
        encs = await self._run(self.rust.encode_batch, list(texts), add_special_tokens=add_special_tokens)
        return [Encoded(list(e.ids), [tuple(o) for o in e.offsets] if return_offsets else None) for e in encs]

    async def decode(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        if not sequences:
            raise errors.InvalidArgument("sequences must hold at least one sequence", reason="EMPTY_BATCH",
                                         field_violations=[("sequences", "at least one sequence is required")])
        seqs = [list(s) for s in sequences]
        for i, s in enumerate(seqs):
            self.check_ids(s, f"sequences[{i}].token_ids")
        return await self._run(self.rust.decode_batch, seqs, skip_special_tokens=skip_special_tokens)

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> tuple[str, list[int]]:
        text = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        ids = self.rust.encode(text, add_special_tokens=False).ids
        if self._prepends_bos and ids[:1] != [self.bos_token_id]:
            ids = [self.bos_token_id, *ids]
        return text, list(ids)

    async def render_chat(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> RenderedChat:
        if not messages:
            raise errors.InvalidArgument("messages must hold at least one turn", reason="EMPTY_CONVERSATION",
                                         field_violations=[("messages", "at least one turn is required")])
        for i, m in enumerate(messages):
            if m.role not in ROLES:
                raise errors.InvalidArgument(f"unknown role {m.role!r}", reason="UNKNOWN_ROLE",
                                             field_violations=[(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")])
        if not self.hf.chat_template:
            raise errors.FailedPrecondition("the tokenizer has no chat template", reason="NO_CHAT_TEMPLATE")
        turns = [{"role": m.role, "content": m.content, **({"name": m.name} if m.name is not None else {})}
                 for m in messages]
        try:
            text, ids = await self._run(self._render, turns, add_generation_prompt)
        except Exception as exc:  # jinja raise_exception() in templates: the conversation is refused
            if type(exc).__name__ in ("TemplateError", "TemplateSyntaxError", "UndefinedError"):
                raise errors.InvalidArgument(f"the chat template rejected the conversation: {exc}",
                                             reason="CHAT_TEMPLATE_ERROR") from exc
            raise
        return RenderedChat(ids, text, list(self.stop_token_ids))

    def info(self) -> TokenizerInfo:
        specials = []
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            content = getattr(self.hf, name, None)
            if content:
                tid = self.rust.token_to_id(str(content))
                if tid is not None:
                    specials.append(SpecialToken(name, str(content), tid))
        return TokenizerInfo(
            name=self.model_dir, vocab_size=self.vocab_size, special_tokens=specials,
            all_special_ids=sorted(set(self.hf.all_special_ids) | self.special_ids),
            chat_template=self.hf.chat_template or "", fingerprint=self.fingerprint,
            model_max_length=min(int(self.hf.model_max_length), _UINT64_MAX))

    def open_stream(self, options: StreamOptions) -> DetokenizeStream:
        """A streaming detokenizer for one generation (cheap; pure Python per token)."""
        self.check_ids(options.prompt_token_ids, "start.prompt_token_ids")
        if self._token_bytes is not None:
            decoder: ByteLevelDecoder | WindowDecoder = ByteLevelDecoder(
                self._token_bytes, self.special_ids, options.skip_special_tokens)
        else:
            decoder = WindowDecoder(lambda ids, skip: self.rust.decode(ids, skip_special_tokens=skip),
                                    options.prompt_token_ids, options.skip_special_tokens)
        return DetokenizeStream(decoder, options, self.check_ids)
