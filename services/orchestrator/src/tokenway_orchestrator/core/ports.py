"""What the pipeline needs from the tokenizer and inference tiers, as plain Python.

The gRPC adapters in `tokenway_orchestrator.clients` implement these; tests may too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    context_length: int
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    default_max_tokens: int
    tokenizer_fingerprint: str
    engine: str
    max_chars_per_token: int = 0  # no token spans more characters (0: unknown); bounds prompts before tokenizing


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """One sequence's sampling and stopping, as sent to the engine."""

    max_tokens: int
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None


@dataclasses.dataclass(frozen=True)
class EngineChunk:
    token_ids: tuple[int, ...]
    completion_tokens: int
    finish_reason: str | None = None  # "stop", "length", "abort"
    stop_token_id: int | None = None
    logprobs: tuple[tuple[float, tuple[tuple[int, float], ...]], ...] = ()  # (chosen, ((id, logprob), ...))
    cached_tokens: int | None = None  # on the first chunk: prompt tokens the engine reused (prefix cache)


@dataclasses.dataclass(frozen=True)
class Detokenized:
    text: str
    num_tokens: int
    matched_stop: str | None = None
    token_texts: Sequence[str] = ()  # per token of the chunk (up to a stop), the text it added


class DetokenizerStream(Protocol):
    async def push(self, token_ids: tuple[int, ...], last: bool) -> Detokenized: ...

    async def aclose(self) -> None: ...


class DetokenizerPort(Protocol):
    def detokenize_stream(self, prompt_tail: list[int], skip_special_tokens: bool, stop: tuple[str, ...],
                          include_stop: bool, timeout: float | None) -> DetokenizerStream: ...


class TokenizerPort(Protocol):
    async def render_chat(self, messages: list, max_prompt_tokens: int,
                          timeout: float | None) -> tuple[list[int], list[int]]:
        """Prompt ids and stop ids; raises CONTEXT_LENGTH_EXCEEDED (param "messages") beyond max_prompt_tokens."""

    async def tokenize(self, texts: list[str], max_tokens_per_text: int, timeout: float | None) -> list[list[int]]:
        """Ids per text; raises CONTEXT_LENGTH_EXCEEDED (param "prompt") beyond max_tokens_per_text."""

    async def detokenize(self, sequences: list[list[int]], skip_special_tokens: bool, timeout: float | None) -> list[str]: ...

    async def vocabulary(self, timeout: float | None) -> list[bytes]:
        """Every token id's real bytes, index = id."""

    def detokenize_stream(self, prompt_tail: list[int], skip_special_tokens: bool, stop: tuple[str, ...],
                          include_stop: bool, timeout: float | None) -> DetokenizerStream: ...


class InferencePort(Protocol):
    def generate(self, request_id: str, prompt: list[int], spec: EngineSpec,
                 timeout: float | None, affinity: str = "") -> AsyncIterator[EngineChunk]: ...
