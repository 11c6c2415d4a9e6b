"""Turns validated public requests into generation jobs, and jobs into answers."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

from tokenway_common import errors

from .params import GenerationParams, Limits, Message, Violations, resolve_max_tokens, validate_generation, validate_messages
from .pipeline import ChoiceEvent, Job, Pipeline, TokenLogprob, Usage
from .ports import DetokenizerPort, EngineSpec, InferencePort, ModelInfo, TokenizerPort

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy completions API


@dataclasses.dataclass
class CollectedChoice:
    index: int
    text: str = ""
    finish_reason: str | None = None
    stop_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclasses.dataclass
class Collected:
    choices: list[CollectedChoice]
    usage: Usage


@dataclasses.dataclass(frozen=True)
class Prepared:
    job: Job
    created: int
    prompt_texts: list[str]  # for echo


def new_request_id(kind: str) -> str:
    """OpenAI-shaped ids: chatcmpl-... for chat, cmpl-... for completions."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


class Orchestrator:
    def __init__(self, tokenizer: TokenizerPort, inference: InferencePort, model: ModelInfo, *, limits: Limits | None = None,
                 max_n: int = 16, max_stop_strings: int = 16, max_stop_string_chars: int = 256, max_prompts: int = 64,
                 token_bytes: list[bytes] | None = None, detokenizer: DetokenizerPort | None = None) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.pipeline = Pipeline(tokenizer, inference, model, token_bytes or (), detokenizer)
        self.limits = limits or self.make_limits(model, max_n=max_n, max_stop_strings=max_stop_strings,
                                                 max_stop_string_chars=max_stop_string_chars, max_prompts=max_prompts)

    @staticmethod
    def make_limits(model: ModelInfo, *, max_n: int, max_stop_strings: int, max_stop_string_chars: int,
                    max_prompts: int) -> Limits:
        return Limits(max_n=max_n, max_stop_strings=max_stop_strings, max_stop_string_chars=max_stop_string_chars,
                      max_prompts=max_prompts, vocab_size=model.vocab_size, context_length=model.context_length)

    def check_model(self, name: str) -> None:
        if not name:
            raise errors.InvalidArgument("model is required", reason="INVALID_REQUEST",
                                         field_violations=[("model", "must name a served model")], metadata={"param": "model"})
        if name != self.model.name:
            raise errors.NotFound(f"The model '{errors.clip(name, 100)}' does not exist; this deployment serves "
                                  f"'{self.model.name}'", reason="MODEL_NOT_FOUND", metadata={"model": name, "param": "model"})

    def check_prompt_bytes(self, nbytes: int, field: str) -> None:
        """`check_prompt_size` from the UTF-8 size (a character is at most 4 bytes), so that a huge prompt
        is refused before its text is even decoded."""
        self.check_prompt_size(nbytes // 4, field)

    def check_prompt_size(self, chars: int, field: str) -> None:
        """Refuses, before any tokenization, a prompt whose length alone proves it cannot fit the context:
        no token spans more than `max_chars_per_token` characters (0: no such bound is known)."""
        bound = self.model.context_length * self.model.max_chars_per_token
        if self.model.max_chars_per_token and chars > bound:
            raise errors.InvalidArgument(
                f"This model's maximum context length is {self.model.context_length} tokens, but the prompt "
                f"(at least {chars} characters) is longer than that", reason="CONTEXT_LENGTH_EXCEEDED",
                field_violations=[(field, f"{chars}+ characters cannot fit in {self.model.context_length} tokens")],
                metadata={"param": field, "context_length": str(self.model.context_length)})

    def _spec(self, p: GenerationParams, max_tokens: int, extra_stop_ids: list[int]) -> EngineSpec:
        stop_ids = tuple(dict.fromkeys([*p.stop_token_ids, *extra_stop_ids]))
        return EngineSpec(
            max_tokens=max_tokens, min_tokens=p.min_tokens or 0, ignore_eos=p.ignore_eos, stop_token_ids=stop_ids,
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, min_p=p.min_p, seed=p.seed,
            presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
            repetition_penalty=p.repetition_penalty, logit_bias=tuple(sorted(p.logit_bias.items())), logprobs=p.logprobs)

    def _job(self, prompts: list[list[int]], p: GenerationParams, default_cap: int, field: str,
             extra_stop_ids: list[int]) -> Job:
        specs = [self._spec(p, resolve_max_tokens(p.max_tokens, len(ids), self.model.context_length, default_cap, field),
                            extra_stop_ids) for ids in prompts]
        return Job(request_id="", prompts=prompts, specs=specs, n=p.choices, stop=p.stop,
                   affinity=p.session or p.user or "",
                   include_stop=p.include_stop_str_in_output, skip_special_tokens=p.skip_special_tokens,
                   want_logprobs=p.logprobs is not None)

    async def prepare_chat(self, model: str, messages: list[Message], p: GenerationParams, *, max_tokens_field: str,
                           timeout: float | None, request_id: str = "") -> Prepared:
        self.check_model(model)
        v = Violations()
        validate_messages(messages, v)
        validate_generation(p, self.limits, v, max_tokens_field=max_tokens_field)
        v.raise_if_any()
        self.check_prompt_size(sum(len(m.content) for m in messages), "messages")
        prompt, stop_ids = await self.tokenizer.render_chat(messages, self.model.context_length, timeout)
        job = self._job([prompt], p, self.model.default_max_tokens, max_tokens_field, stop_ids)
        return Prepared(dataclasses.replace(job, request_id=request_id or new_request_id("chat")), int(time.time()), [])

    async def prepare_completion(self, model: str, prompts: list[str], prompt_ids: list[list[int]], p: GenerationParams,
                                 *, echo: bool, timeout: float | None, request_id: str = "") -> Prepared:
        """`prompts` (texts, encoded as raw prompts: special-token text is the special token) or
        `prompt_ids` (token-id lists), exactly one of them."""
        self.check_model(model)
        v = Violations()
        validate_generation(p, self.limits, v, logprobs_field="logprobs", max_logprobs=20)
        count = len(prompts) + len(prompt_ids)
        if count > self.limits.max_prompts:
            v.add("prompt", f"at most {self.limits.max_prompts} prompts, got {count}")
        if count * p.choices > self.limits.max_n * self.limits.max_prompts:
            v.add("n", "too many choices in all")
        for i, ids in enumerate(prompt_ids):
            field = "prompt" if len(prompt_ids) == 1 else f"prompt[{i}]"
            if not ids:
                v.add(field, "must not be empty")
            bad = next((t for t in ids if not 0 <= t < self.model.vocab_size), None)
            if bad is not None:
                v.add(field, f"token id {bad} is outside the vocabulary [0, {self.model.vocab_size})")
        v.raise_if_any()
        for i, text in enumerate(prompts):
            self.check_prompt_size(len(text), "prompt" if len(prompts) == 1 else f"prompt[{i}]")
        if prompts:
            ids = await self.tokenizer.tokenize(prompts, self.model.context_length, timeout)
            empty = [i for i, t in enumerate(ids) if not t]
            if empty:
                raise errors.InvalidArgument("prompt must not be empty", reason="INVALID_REQUEST",
                                             field_violations=[(f"prompt[{i}]", "encodes to no tokens") for i in empty],
                                             metadata={"param": "prompt"})
            texts = list(prompts)
        else:
            ids = [list(x) for x in prompt_ids]
            texts = await self.tokenizer.detokenize(ids, False, timeout) if echo else [""] * len(ids)
        job = self._job(ids, p, COMPLETIONS_DEFAULT_MAX_TOKENS, "max_tokens", [])
        return Prepared(dataclasses.replace(job, request_id=request_id or new_request_id("completion")), int(time.time()),
                        texts)

    @staticmethod
    def most_tokens(prepared: Prepared) -> tuple[int, int]:
        """(prompt tokens, the most completion tokens the job may generate): what a token limit reserves."""
        job = prepared.job
        return sum(len(p) for p in job.prompts), sum(s.max_tokens for s in job.specs) * job.n

    def interrupt_all(self, exc: BaseException) -> int:
        """Ends every request in flight with `exc`; returns how many there were."""
        return self.pipeline.interrupt_all(exc)

    def stream(self, prepared: Prepared, timeout: float | None) -> AsyncIterator[ChoiceEvent | Usage]:
        return self.pipeline.run(prepared.job, timeout)

    async def collect(self, prepared: Prepared, timeout: float | None) -> Collected:
        job = prepared.job
        choices = [CollectedChoice(i, logprobs=[] if job.want_logprobs else None) for i in range(len(job.prompts) * job.n)]
        parts: list[list[str]] = [[] for _ in choices]
        usage = Usage(0, 0)
        async for ev in self.pipeline.run(job, timeout):
            if isinstance(ev, Usage):
                usage = ev
                continue
            c = choices[ev.index]
            parts[ev.index].append(ev.text)
            if ev.logprobs and c.logprobs is not None:
                c.logprobs.extend(ev.logprobs)
            if ev.finish_reason is not None:
                c.finish_reason, c.stop_reason = ev.finish_reason, ev.stop_reason
        for c, p in zip(choices, parts):
            c.text = "".join(p)
        return Collected(choices, usage)
