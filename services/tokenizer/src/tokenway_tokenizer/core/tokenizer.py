"""The model's Hugging Face tokenizer: loading (offline), batch encode/decode, chat, info, streams.

Batch calls go to the Rust tokenizer (`*_batch`, which release the GIL) on a small thread pool so
the event loop stays free. Encoding is bounded by a token limit and stops when its caller goes
away (`bounded`); chat contents cannot forge special tokens (`escape`). Nothing here imports gRPC;
errors are tokenway_common domain errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from tokenway_common import errors
from tokenway_common.modeldir import tokenizer_fingerprint
from tokenway_text import Detokenizer, DetokenizeStream, StreamOptions, spec_digest, vocab

from .bounded import Job, LimitExceeded, PieceEncoder, Segment, Stopped
from .escape import SpecialEscaper

log = logging.getLogger("tokenway.tokenizer")

ROLES = ("system", "developer", "user", "assistant", "tool")
_UINT64_MAX = 2**64 - 1
# The service's own bound when model_max_length is not a real context length (HF's 1e30 "unset").
SANE_MODEL_MAX_LENGTH = 10**7
FALLBACK_MAX_INPUT_TOKENS = 1_048_576


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
    max_chars_per_token: int
    max_input_tokens: int


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    token_bytes: list[bytes]
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """The served Rust tokenizer, serialized: what a peer needs to decode exactly as this service does."""

    tokenizer_json: str
    sha256: str
    fingerprint: str


def _too_long(limit: int, field: str, metadata: dict[str, object], what: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{what} is longer than {limit} tokens", reason="CONTEXT_LENGTH_EXCEEDED",
                                  metadata=metadata, field_violations=[(field, f"more than {limit} tokens")])


class Tokenizer:
    """The served tokenizer. Build with `Tokenizer.load(model_dir)` (blocking: call off the loop)."""

    def __init__(self, hf: Any, model_dir: str, workers: int = 2, max_input_tokens: int = 0) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        self.hf = hf
        self.rust = hf.backend_tokenizer
        self.model_dir = model_dir
        self.vocab_size = self.rust.get_vocab_size(with_added_tokens=True)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokenizer")
        added = self.rust.get_added_tokens_decoder()
        self.special_strings = sorted(tok.content for tok in added.values() if tok.special)
        self.bos_token_id: int | None = hf.bos_token_id
        self.stop_token_ids = self._stop_token_ids()
        self._prepends_bos = self.bos_token_id is not None and \
            self.rust.encode("a", add_special_tokens=True).ids[:1] == [self.bos_token_id]
        self._json = self.rust.to_str()
        spec = json.loads(self._json)
        self.detokenizer = Detokenizer(self.rust, spec)
        self.special_ids = self.detokenizer.special_ids
        self._token_bytes = self.detokenizer.token_bytes
        self._vocabulary: list[bytes] | None = self._token_bytes
        self._spec: TokenizerSpec | None = None
        self.fingerprint = tokenizer_fingerprint(model_dir)
        self.max_chars_per_token = vocab.max_chars_per_token(spec, self._token_bytes)
        mml = int(hf.model_max_length)
        self.max_input_tokens = max_input_tokens or (mml if 0 < mml < SANE_MODEL_MAX_LENGTH else FALLBACK_MAX_INPUT_TOKENS)
        # A second Rust tokenizer that reads special-token strings as text (no flag flipped on the shared one).
        plain = RustTokenizer.from_str(self._json)
        plain.encode_special_tokens = True
        self._affixes = self._special_affixes()
        self.pieces = PieceEncoder(self.rust, plain, exact_cuts=vocab.cuts_are_exact(spec),
                                   slack=max(16, *(len(s) for s in self.special_strings)) if self.special_strings else 16)
        self._escaper = SpecialEscaper(self.special_strings)

    @property
    def trace(self) -> Callable[[str, Job], None] | None:
        """A test hook called on a worker thread: ("piece", job) before each Rust encode call of a
        job, ("stopped", job) when a job stops because its caller went away."""
        return self.pieces.trace

    @trace.setter
    def trace(self, hook: Callable[[str, Job], None] | None) -> None:
        self.pieces.trace = hook

    @classmethod
    def load(cls, model_dir: str, workers: int = 2, max_input_tokens: int = 0) -> Tokenizer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer  # heavy import, only when loading

        hf = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if not getattr(hf, "is_fast", False):
            raise errors.FailedPrecondition(f"{model_dir}: a fast (Rust) tokenizer is required", reason="SLOW_TOKENIZER")
        tok = cls(hf, model_dir, workers, max_input_tokens)
        log.info("tokenizer loaded", extra={"fields": {
            "model": model_dir, "vocab_size": tok.vocab_size, "byte_level": tok.byte_level,
            "fingerprint": tok.fingerprint[:12], "max_input_tokens": tok.max_input_tokens,
            "max_chars_per_token": tok.max_chars_per_token}})
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

    def _special_affixes(self) -> tuple[list[int], list[int]] | None:
        """The ids add_special_tokens puts before and after a text, when that is all it does."""
        def split(text: str) -> tuple[list[int], list[int]] | None:
            bare = self.rust.encode(text, add_special_tokens=False).ids
            full = self.rust.encode(text, add_special_tokens=True).ids
            for k in range(len(full) - len(bare) + 1):
                if full[k:k + len(bare)] == bare:
                    return full[:k], full[k + len(bare):]
            return None

        first = split("a")
        return first if first is not None and split("Hello, world!\n  x") == first else None

    async def _run(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def _run_job(self, chars: int, fn, *args):
        """Runs fn(job, *args) on the pool; when the awaiting coroutine is cancelled (the caller went
        away) the job's stop event tells the worker to give up at its next piece."""
        job = Job(chars)
        try:
            return await self._run(fn, job, *args)
        finally:
            job.stop.set()

    def limit(self, requested: int | None) -> int:
        """The token limit of one text or prompt: the caller's, never above the service's own."""
        return self.max_input_tokens if requested is None else min(requested, self.max_input_tokens)

    def _over_chars(self, chars: int, limit: int) -> bool:
        """True when `chars` characters surely encode into more than `limit` tokens."""
        return self.max_chars_per_token > 0 and chars > limit * self.max_chars_per_token

    def check_ids(self, ids: Sequence[int], field: str) -> None:
        self.detokenizer.check_ids(ids, field)

    # -- the operations --------------------------------------------------------------------------

    async def encode(self, texts: Sequence[str], add_special_tokens: bool = False,
                     return_offsets: bool = False, max_tokens_per_text: int | None = None) -> list[Encoded]:
        """Raw-prompt semantics: special-token strings in the texts become special tokens."""
        if not texts:
            raise errors.InvalidArgument("texts must hold at least one text", reason="EMPTY_BATCH",
                                         field_violations=[("texts", "at least one text is required")])
        limit = self.limit(max_tokens_per_text)
        texts = list(texts)
        try:
            for i, text in enumerate(texts):
                if self._over_chars(len(text), limit):
                    raise LimitExceeded(i)
            return await self._run_job(sum(map(len, texts)), self._encode_texts, texts, limit,
                                       add_special_tokens, return_offsets)
        except LimitExceeded as exc:
            raise _too_long(limit, f"texts[{exc.index}]", {"max_tokens_per_text": limit},
                            f"texts[{exc.index}]") from None

    def _encode_texts(self, job: Job, texts: list[str], limit: int, add_special_tokens: bool,
                      offsets: bool) -> list[Encoded]:
        out: list[Encoded] = []
        piece_chars = self.pieces.piece_chars
        i = 0
        while i < len(texts):
            if len(texts[i]) > piece_chars:  # a long text: in pieces, counted against the limit
                out.append(self._encode_long(job, texts[i], limit, add_special_tokens, offsets, i))
                i += 1
                continue
            j, total = i, 0  # consecutive short texts: one Rust call for the lot
            while j < len(texts) and len(texts[j]) <= piece_chars and (j == i or total + len(texts[j]) <= piece_chars):
                total += len(texts[j])
                j += 1
            encs = self.pieces.call(job, self.rust, texts[i:j], add_special_tokens)
            for k, e in enumerate(encs):
                if len(e.ids) > limit:
                    raise LimitExceeded(i + k)
                out.append(Encoded(e.ids, [tuple(o) for o in e.offsets] if offsets else None))
            i = j
        return out

    def _encode_long(self, job: Job, text: str, limit: int, add_special_tokens: bool, offsets: bool,
                     index: int) -> Encoded:
        pre, post = self._affixes if add_special_tokens and self._affixes else ([], [])
        extra = self.rust.num_special_tokens_to_add(False) if add_special_tokens else 0
        try:
            ids, offs = self.pieces.encode(job, [Segment(text)], limit - extra, offsets)
        except LimitExceeded:
            raise LimitExceeded(index) from None
        if add_special_tokens and self._affixes is None:  # an unusual post-processor: let it run once
            e = self.pieces.call(job, self.rust, [text], True)[0]
            if len(e.ids) > limit:
                raise LimitExceeded(index)
            return Encoded(e.ids, [tuple(o) for o in e.offsets] if offsets else None)
        return Encoded([*pre, *ids, *post], [(0, 0)] * len(pre) + offs + [(0, 0)] * len(post) if offsets else None)

    async def decode(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        if not sequences:
            raise errors.InvalidArgument("sequences must hold at least one sequence", reason="EMPTY_BATCH",
                                         field_violations=[("sequences", "at least one sequence is required")])
        seqs = [list(s) for s in sequences]
        for i, s in enumerate(seqs):
            self.check_ids(s, f"sequences[{i}].token_ids")
        return await self._run(self.rust.decode_batch, seqs, skip_special_tokens=skip_special_tokens)

    def _render(self, job: Job, messages: list[dict[str, str]], add_generation_prompt: bool,
                limit: int) -> tuple[str, list[int]]:
        contents = [m["content"] for m in messages]
        escaped = self._escaper.escape(contents, [self.hf.chat_template or "", *(m.get("name", "") for m in messages),
                                                  *(str(getattr(self.hf, a, "") or "") for a in ("bos_token", "eos_token"))])
        if escaped is not None:
            messages = [{**m, "content": c} for m, c in zip(messages, escaped[0])]
        if job.stop.is_set():
            raise Stopped
        text = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        if self._over_chars(len(text), limit):
            raise LimitExceeded
        segments = [Segment(text)] if escaped is None else SpecialEscaper.segments(text, escaped[1])
        ids, _ = self.pieces.encode(job, segments, limit)
        if self._prepends_bos and ids[:1] != [self.bos_token_id]:  # the template wrote none: exactly one BOS
            if len(ids) + 1 > limit:
                raise LimitExceeded
            ids = [self.bos_token_id, *ids]
        if escaped is not None:
            text = SpecialEscaper.restore(text, escaped[1])
        return text, ids

    async def render_chat(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True,
                          max_prompt_tokens: int | None = None) -> RenderedChat:
        """Contents are data: special-token strings in them are encoded as text."""
        if not messages:
            raise errors.InvalidArgument("messages must hold at least one turn", reason="EMPTY_CONVERSATION",
                                         field_violations=[("messages", "at least one turn is required")])
        for i, m in enumerate(messages):
            if m.role not in ROLES:
                raise errors.InvalidArgument(f"unknown role {m.role!r}", reason="UNKNOWN_ROLE",
                                             field_violations=[(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")])
        if not self.hf.chat_template:
            raise errors.FailedPrecondition("the tokenizer has no chat template", reason="NO_CHAT_TEMPLATE")
        limit = self.limit(max_prompt_tokens)
        too_long = _too_long(limit, "messages", {"max_prompt_tokens": limit, "param": "messages"}, "the prompt")
        chars = sum(len(m.content) for m in messages)
        # Before rendering (Python work holding the GIL): contents alone already too long, or more
        # turns than tokens (every turn of a chat template writes at least one token of markup).
        if self._over_chars(chars, limit) or len(messages) > limit:
            raise too_long
        turns = [{"role": m.role, "content": m.content, **({"name": m.name} if m.name is not None else {})}
                 for m in messages]
        try:
            text, ids = await self._run_job(chars, self._render, turns, add_generation_prompt, limit)
        except LimitExceeded:
            raise too_long from None
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
            model_max_length=min(int(self.hf.model_max_length), _UINT64_MAX),
            max_chars_per_token=self.max_chars_per_token, max_input_tokens=self.max_input_tokens)

    async def vocabulary(self) -> Vocabulary:
        """The bytes of every id in [0, vocab_size) (computed once, off the loop, when not byte-level)."""
        if self._vocabulary is None:
            self._vocabulary = await self._run(vocab.decoded_table, self.rust, self.vocab_size)
        return Vocabulary(self._vocabulary, self.fingerprint)

    def spec(self) -> TokenizerSpec:
        """The served tokenizer as JSON, with its digest and the model files' fingerprint."""
        if self._spec is None:
            self._spec = TokenizerSpec(self._json, spec_digest(self._json), self.fingerprint)
        return self._spec

    def open_stream(self, options: StreamOptions) -> DetokenizeStream:
        """A streaming detokenizer for one generation (cheap; pure Python per token)."""
        return self.detokenizer.open(options)
