"""Request parameters as the public API received them, and their validation.

Unset (None) always means "the model's default", never 0. Validation collects every bad field
and raises one InvalidArgument with a BadRequest field violation per field.
"""

from __future__ import annotations

import dataclasses
import math

from tokenway_common import errors

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    content: str
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class GenerationParams:
    """Knobs shared by chat and completions, as received."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    n: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] = dataclasses.field(default_factory=dict)
    logprobs: int | None = None  # None: none; k: chosen token plus k alternatives
    ignore_eos: bool = False
    min_tokens: int | None = None
    include_usage: bool = False
    include_stop_str_in_output: bool = False
    stop_token_ids: tuple[int, ...] = ()
    skip_special_tokens: bool = True
    user: str | None = None
    session: str | None = None  # x-session-id: requests of one session go to one replica (with `user`: routing)

    @property
    def choices(self) -> int:
        return 1 if self.n is None else self.n


@dataclasses.dataclass(frozen=True)
class Limits:
    max_n: int
    max_stop_strings: int
    max_stop_string_chars: int
    max_prompts: int
    vocab_size: int
    context_length: int


class Violations:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.items.append((field, description))

    def raise_if_any(self, reason: str = "INVALID_REQUEST") -> None:
        """One InvalidArgument for every violation (the error itself keeps only the first few)."""
        if self.items:
            shown = self.items[:errors.MAX_FIELD_VIOLATIONS]
            msg = "; ".join(f"{f}: {d}" for f, d in shown)
            if len(self.items) > len(shown):
                msg += f"; and {len(self.items) - len(shown)} more"
            raise errors.InvalidArgument(msg, reason=reason, field_violations=self.items,
                                         metadata={"param": self.items[0][0]})


def _range(v: Violations, field: str, value: float | None, lo: float, hi: float, *, lo_open: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
        bracket = "(" if lo_open else "["
        v.add(field, f"must be in {bracket}{lo:g}, {hi:g}], got {value:g}")


def validate_generation(p: GenerationParams, limits: Limits, v: Violations, *, max_tokens_field: str = "max_tokens",
                        logprobs_field: str = "top_logprobs", max_logprobs: int = 20) -> None:
    """Checks every knob against its range and the served model's limits."""
    _range(v, "temperature", p.temperature, 0, 2)
    _range(v, "top_p", p.top_p, 0, 1, lo_open=True)
    _range(v, "min_p", p.min_p, 0, 1)
    _range(v, "presence_penalty", p.presence_penalty, -2, 2)
    _range(v, "frequency_penalty", p.frequency_penalty, -2, 2)
    _range(v, "repetition_penalty", p.repetition_penalty, 0, 2, lo_open=True)
    if p.top_k is not None and p.top_k < -1:
        v.add("top_k", f"must be -1, 0 (disabled) or positive, got {p.top_k}")
    if p.n is not None and not 1 <= p.n <= limits.max_n:
        v.add("n", f"must be in [1, {limits.max_n}], got {p.n}")
    if p.max_tokens is not None:
        if p.max_tokens < 1:
            v.add(max_tokens_field, f"must be at least 1, got {p.max_tokens}")
        elif p.max_tokens >= limits.context_length:
            v.add(max_tokens_field, f"must be below the model's context length {limits.context_length}, got {p.max_tokens}")
    if p.min_tokens is not None:
        if p.min_tokens < 0:
            v.add("min_tokens", f"must be at least 0, got {p.min_tokens}")
        elif p.max_tokens is not None and p.min_tokens > p.max_tokens:
            v.add("min_tokens", f"must not exceed {max_tokens_field} ({p.max_tokens}), got {p.min_tokens}")
    if len(p.stop) > limits.max_stop_strings:
        v.add("stop", f"at most {limits.max_stop_strings} stop strings, got {len(p.stop)}")
    for i, s in enumerate(p.stop):
        if not s:
            v.add(f"stop[{i}]", "must not be empty")
        elif len(s) > limits.max_stop_string_chars:
            v.add(f"stop[{i}]", f"at most {limits.max_stop_string_chars} characters, got {len(s)}")
    for tid in p.stop_token_ids:
        if not 0 <= tid < limits.vocab_size:
            v.add("stop_token_ids", f"token id {tid} is outside the vocabulary [0, {limits.vocab_size})")
    for tid, bias in p.logit_bias.items():
        if not 0 <= tid < limits.vocab_size:
            v.add("logit_bias", f"token id {tid} is outside the vocabulary [0, {limits.vocab_size})")
        if not math.isfinite(bias) or not -100 <= bias <= 100:
            v.add("logit_bias", f"bias for token {tid} must be in [-100, 100], got {bias:g}")
    if p.logprobs is not None and not 0 <= p.logprobs <= max_logprobs:
        v.add(logprobs_field, f"must be in [0, {max_logprobs}], got {p.logprobs}")


def validate_messages(messages: list[Message], v: Violations) -> None:
    if not messages:
        v.add("messages", "at least one message is required")
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            v.add(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}, got {m.role!r}")


def resolve_max_tokens(requested: int | None, prompt_len: int, context: int, default_cap: int, field: str) -> int:
    """The max_tokens to generate; raises CONTEXT_LENGTH_EXCEEDED when the prompt leaves no room."""
    room = context - prompt_len
    if room < 1:
        raise errors.InvalidArgument(
            f"This model's maximum context length is {context} tokens, but the prompt has {prompt_len} tokens",
            reason="CONTEXT_LENGTH_EXCEEDED", field_violations=[("messages" if field != "max_tokens" else "prompt",
                                                                  f"prompt of {prompt_len} tokens leaves no room in a context of {context}")],
            metadata={"param": "messages" if field != "max_tokens" else "prompt", "prompt_tokens": str(prompt_len),
                      "context_length": str(context)})
    if requested is None:
        return min(room, default_cap) if default_cap > 0 else room
    if requested > room:
        raise errors.InvalidArgument(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_len + requested} tokens ({prompt_len} in the prompt, {requested} for the completion)",
            reason="CONTEXT_LENGTH_EXCEEDED",
            field_violations=[(field, f"at most {room} for a prompt of {prompt_len} tokens")],
            metadata={"param": field, "prompt_tokens": str(prompt_len), "context_length": str(context)})
    return requested
