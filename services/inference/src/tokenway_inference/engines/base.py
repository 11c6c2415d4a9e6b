"""The engine interface and its plain data types. No gRPC here: the servicer translates.

An engine takes a `GenerateRequest` of token ids and yields `Chunk`s of new token ids. A chunk
holds every token that was ready when the consumer asked, so a slow reader gets several tokens
per chunk rather than a backlog of one-token chunks.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import json
import logging
import math
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from pathlib import Path

from tokenway_common.errors import InvalidArgument, ResourceExhausted
from tokenway_common.modeldir import served_name, tokenizer_fingerprint

log = logging.getLogger("tokenway.inference.engine")

#: Most alternatives per token a request may ask for (OpenAI's top_logprobs limit).
MAX_LOGPROBS = 20


class FinishReason(enum.Enum):
    STOP = "stop"  # an EOS or stop token id was generated
    LENGTH = "length"  # max_tokens or the context length was reached
    ABORT = "abort"  # aborted by the caller


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """Sampling knobs; None means "the model's default" (generation_config.json)."""

    temperature: float | None = None  # 0 is greedy
    top_p: float | None = None
    top_k: int | None = None  # 0 or -1 disables
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: Mapping[int, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StoppingOptions:
    max_tokens: int = 0  # 0: the model's default_max_tokens (bounded by the context either way)
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingOptions = SamplingOptions()
    stopping: StoppingOptions = StoppingOptions()
    logprobs: int | None = None  # None: no logprobs; 0: the chosen token's only; n: plus n alternatives


@dataclasses.dataclass(frozen=True)
class TokenLogprob:
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), best first


@dataclasses.dataclass
class Chunk:
    """New tokens of one sequence. `completion_tokens` is cumulative, this chunk included."""

    token_ids: list[int]
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    stop_token_id: int | None = None  # with FinishReason.STOP: the id that ended it
    prompt_tokens: int | None = None  # set on the sequence's first chunk only
    cached_tokens: int = 0

    def merge(self, later: Chunk) -> Chunk:
        """This chunk followed by `later`, as one chunk."""
        logprobs = None
        if self.logprobs is not None or later.logprobs is not None:
            logprobs = list(self.logprobs or ()) + list(later.logprobs or ())
        return Chunk(token_ids=self.token_ids + later.token_ids, completion_tokens=later.completion_tokens,
                     logprobs=logprobs, finish_reason=later.finish_reason, stop_token_id=later.stop_token_id,
                     prompt_tokens=self.prompt_tokens if self.prompt_tokens is not None else later.prompt_tokens,
                     cached_tokens=max(self.cached_tokens, later.cached_tokens))


def merge_chunks(chunks: Iterable[Chunk]) -> Chunk:
    it = iter(chunks)
    out = next(it)
    for c in it:
        out = out.merge(c)
    return out


@dataclasses.dataclass(frozen=True)
class Load:
    running: int
    waiting: int
    kv_cache_usage: float  # 0..1
    max_batch_size: int
    steps: int = 0  # scheduler iterations so far (monotonic)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    model_name: str
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    pad_token_id: int | None
    max_context_length: int
    default_sampling: SamplingOptions
    tokenizer_fingerprint: str
    engine: str
    vocab_size: int  # the decodable vocabulary, ModelFacts.vocab_size
    default_max_tokens: int


def tokenizer_vocab_size(model_dir: str) -> int | None:
    """How many ids the model directory's tokenizer knows, added tokens included: `len(tokenizer)`,
    the bound the tokenizer service checks decode ids against. None when the directory holds no
    tokenizer. Reads tokenizer.json with the `tokenizers` library (no transformers import); only a
    directory without one (sentencepiece / vocab.json only) goes through transformers' AutoTokenizer."""
    root = Path(model_dir)
    path = root / "tokenizer.json"
    if path.is_file():
        from tokenizers import Tokenizer  # noqa: PLC0415 - only the engines need it

        vocab = Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)
        # transformers adds tokenizer_config.json's added_tokens_decoder entries the file lacks
        cfg_path = root / "tokenizer_config.json"
        added = json.loads(cfg_path.read_text()).get("added_tokens_decoder") if cfg_path.is_file() else None
        for tid, tok in (added or {}).items():
            vocab.setdefault(tok["content"], int(tid))
        return len(vocab)
    if any((root / f).is_file() for f in ("tokenizer.model", "vocab.json")):
        from transformers import AutoTokenizer  # noqa: PLC0415 - rare: no tokenizer.json

        return len(AutoTokenizer.from_pretrained(model_dir, local_files_only=True))
    return None


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What config.json, generation_config.json and the tokenizer say, read without importing transformers.

    `vocab_size` is the *decodable* vocabulary: ids in [0, vocab_size) are what requests may name and
    what the engines may generate. It is min(tokenizer size with added tokens, the model's logit rows):
    checkpoints often pad the embedding past the tokenizer (Qwen2.5: 152064 rows for 151665 tokens), and
    a padded row's id cannot be decoded. `logit_rows` is config.json's vocab_size, the logits' width.
    """

    vocab_size: int
    max_context_length: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    pad_token_id: int | None
    default_sampling: SamplingOptions
    default_max_tokens: int
    logit_rows: int = 0  # 0: the same as vocab_size

    @classmethod
    def read(cls, model_dir: str, max_model_len: int = 0) -> ModelFacts:
        root = Path(model_dir)
        cfg = json.loads((root / "config.json").read_text())
        cfg = cfg.get("text_config", cfg)
        gen_path = root / "generation_config.json"
        gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}

        def ids(value) -> tuple[int, ...]:
            if value is None:
                return ()
            return tuple(value) if isinstance(value, list) else (int(value),)

        eos = ids(gen.get("eos_token_id", cfg.get("eos_token_id")))
        context = int(cfg.get("max_position_embeddings") or 2048)
        if max_model_len:
            context = min(context, max_model_len) if cfg.get("max_position_embeddings") else max_model_len
        do_sample = bool(gen.get("do_sample", False))
        sampling = SamplingOptions(
            temperature=float(gen.get("temperature", 1.0)) if do_sample else 0.0,
            top_p=float(gen.get("top_p", 1.0)),
            top_k=int(gen.get("top_k", 0) or 0),
            min_p=float(gen.get("min_p") or 0.0),
            presence_penalty=0.0,
            frequency_penalty=0.0,
            repetition_penalty=float(gen.get("repetition_penalty") or 1.0),
        )
        default_max = int(gen.get("max_new_tokens") or 0)
        rows = int(cfg["vocab_size"])
        tokens = tokenizer_vocab_size(model_dir)
        if tokens is None:
            log.warning("no tokenizer in the model directory: the vocabulary is the model's %d logit rows", rows)
        vocab = rows if tokens is None else min(tokens, rows)
        if vocab < rows:
            log.info("the model has %d logit rows for %d tokenizer ids: the %d padded rows are never sampled",
                     rows, vocab, rows - vocab)
        return cls(vocab_size=vocab, max_context_length=context, eos_token_ids=eos,
                   bos_token_id=gen.get("bos_token_id", cfg.get("bos_token_id")),
                   pad_token_id=gen.get("pad_token_id", cfg.get("pad_token_id")),
                   default_sampling=sampling, default_max_tokens=default_max, logit_rows=rows)

    @property
    def padded(self) -> bool:
        """The model has logit rows past the decodable vocabulary."""
        return self.logit_rows > self.vocab_size

    def model_info(self, model_dir: str, model_name: str, engine: str) -> ModelInfo:
        """What GetModelInfo reports for this model served by `engine`."""
        return ModelInfo(
            model_name=served_name(model_dir, model_name), eos_token_ids=self.eos_token_ids,
            bos_token_id=self.bos_token_id, pad_token_id=self.pad_token_id,
            max_context_length=self.max_context_length, default_sampling=self.default_sampling,
            tokenizer_fingerprint=tokenizer_fingerprint(model_dir), engine=engine,
            vocab_size=self.vocab_size, default_max_tokens=self.default_max_tokens)


@dataclasses.dataclass(frozen=True)
class ResolvedParams:
    """A request's sampling and stopping with every default filled in."""

    temperature: float
    top_p: float
    top_k: int  # 0: disabled
    min_p: float
    seed: int | None
    presence_penalty: float
    frequency_penalty: float
    repetition_penalty: float
    logit_bias: Mapping[int, float]
    max_tokens: int  # already bounded by the context
    min_tokens: int
    ignore_eos: bool
    stop_token_ids: tuple[int, ...]
    logprobs: int | None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def validate(req: GenerateRequest, facts: ModelFacts) -> ResolvedParams:
    """Checks a request against the model and fills in defaults; raises InvalidArgument."""
    if not req.request_id:
        raise InvalidArgument("request_id is required", reason="MISSING_REQUEST_ID",
                              field_violations=[("request_id", "must not be empty")])
    n = len(req.prompt_token_ids)
    if n == 0:
        raise InvalidArgument("prompt_token_ids is empty", reason="EMPTY_PROMPT",
                              field_violations=[("prompt_token_ids", "at least one id is required")])
    if n >= facts.max_context_length:
        raise InvalidArgument(
            f"the prompt has {n} tokens; the model's context is {facts.max_context_length} "
            "(prompt plus at least one generated token)", reason="CONTEXT_LENGTH_EXCEEDED",
            metadata={"prompt_tokens": n, "max_context_length": facts.max_context_length},
            field_violations=[("prompt_token_ids", f"at most {facts.max_context_length - 1} ids")])
    vocab = facts.vocab_size

    def check_ids(field: str, ids: Iterable[int]) -> None:
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise InvalidArgument(f"{field} holds ids outside the vocabulary [0, {vocab}): {bad[:5]}",
                                  reason="TOKEN_ID_OUT_OF_RANGE", metadata={"vocab_size": vocab},
                                  field_violations=[(field, f"ids must be in [0, {vocab})")])

    check_ids("prompt_token_ids", req.prompt_token_ids)
    check_ids("stopping.stop_token_ids", req.stopping.stop_token_ids)
    check_ids("sampling.logit_bias", req.sampling.logit_bias.keys())
    d, s = facts.default_sampling, req.sampling

    def pick(value, default):
        return default if value is None else value

    p = ResolvedParams(
        temperature=float(pick(s.temperature, d.temperature)), top_p=float(pick(s.top_p, d.top_p)),
        top_k=int(pick(s.top_k, d.top_k)), min_p=float(pick(s.min_p, d.min_p)), seed=s.seed,
        presence_penalty=float(pick(s.presence_penalty, 0.0)), frequency_penalty=float(pick(s.frequency_penalty, 0.0)),
        repetition_penalty=float(pick(s.repetition_penalty, d.repetition_penalty)),
        logit_bias=dict(s.logit_bias),
        max_tokens=min(req.stopping.max_tokens or facts.default_max_tokens or facts.max_context_length,
                       facts.max_context_length - n),
        min_tokens=req.stopping.min_tokens, ignore_eos=req.stopping.ignore_eos,
        stop_token_ids=tuple(req.stopping.stop_token_ids), logprobs=req.logprobs)
    violations = []
    if not (math.isfinite(p.temperature) and p.temperature >= 0):
        violations.append(("sampling.temperature", "must be >= 0"))
    if not 0 < p.top_p <= 1:
        violations.append(("sampling.top_p", "must be in (0, 1]"))
    if p.top_k < -1:
        violations.append(("sampling.top_k", "must be >= 1, or 0 / -1 to disable"))
    if not 0 <= p.min_p <= 1:
        violations.append(("sampling.min_p", "must be in [0, 1]"))
    if not -2 <= p.presence_penalty <= 2:
        violations.append(("sampling.presence_penalty", "must be in [-2, 2]"))
    if not -2 <= p.frequency_penalty <= 2:
        violations.append(("sampling.frequency_penalty", "must be in [-2, 2]"))
    if not (math.isfinite(p.repetition_penalty) and p.repetition_penalty > 0):
        violations.append(("sampling.repetition_penalty", "must be > 0"))
    if any(math.isnan(v) for v in p.logit_bias.values()):
        violations.append(("sampling.logit_bias", "values must be numbers"))
    if p.logprobs is not None and not 0 <= p.logprobs <= MAX_LOGPROBS:
        violations.append(("logprobs", f"must be in [0, {MAX_LOGPROBS}]"))
    if violations:
        raise InvalidArgument("invalid parameters: " + "; ".join(f"{f} {d}" for f, d in violations),
                              reason="INVALID_PARAMETER", field_violations=violations)
    return p


def check_admission(request_id: str, in_flight: Collection[str], max_batch_size: int, max_waiting: int) -> None:
    """Refuses a request whose id is already running or waiting, and one beyond the queue (running + waiting)."""
    if request_id in in_flight:
        raise InvalidArgument(f"request_id {request_id!r} is already running", reason="DUPLICATE_REQUEST_ID",
                              metadata={"request_id": request_id},
                              field_violations=[("request_id", "must be unique among running requests")])
    if len(in_flight) >= max_batch_size + max_waiting:
        raise ResourceExhausted("the inference queue is full", reason="QUEUE_FULL", retry_after=1.0,
                                metadata={"max_batch_size": max_batch_size, "max_waiting": max_waiting})


class Engine(abc.ABC):
    """Runs one model for many concurrent sequences."""

    #: Engine kind reported by GetModelInfo, e.g. "transformers" or "vllm".
    name: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Loads the model and warms it up; the service turns SERVING after this returns."""

    @abc.abstractmethod
    def generate(self, request: GenerateRequest) -> AsyncIterator[Chunk]:
        """Streams the sequence's tokens. Raises a TokenwayError (before the first chunk) on bad input
        or overload. Closing the iterator early (the caller went away) aborts the sequence."""

    @abc.abstractmethod
    async def abort(self, request_ids: Iterable[str]) -> list[str]:
        """Removes these sequences at the next step; returns the ids that were running or waiting.
        Their streams end with FinishReason.ABORT."""

    @abc.abstractmethod
    def load(self) -> Load:
        """How busy the engine is right now."""

    @abc.abstractmethod
    def model_info(self) -> ModelInfo:
        """Describes the served model."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stops scheduling, ends every open stream with ABORT and frees the model."""


_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def kv_bytes_per_token(model_dir: str, dtype: str) -> int:
    """KV-cache bytes one token takes: K and V for every layer's KV heads, at the cache's dtype."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    heads = cfg.get("num_attention_heads", 1)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    kv_heads = cfg.get("num_key_value_heads") or heads
    if dtype == "auto":
        dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return 2 * cfg["num_hidden_layers"] * kv_heads * head_dim * _DTYPE_BYTES.get(dtype, 4)
