"""Turns validated public requests into generation jobs, and jobs into answers."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

from tokenway_common import errors

from .params import GenerationParams, Limits, Message, Violations, resolve_max_tokens, validate_generation, validate_messages
from .pipeline import ChoiceEvent, Job, Pipeline, TokenLogprob, Usage
from .ports import EngineSpec, InferencePort, ModelInfo, TokenizerPort

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


class Orchestrator:
    def __init__(self, tokenizer: TokenizerPort, inference: InferencePort, model: ModelInfo, *, max_n: int,
                 max_stop_strings: int, max_stop_string_chars: int, max_prompts: int) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.pipeline = Pipeline(tokenizer, inference, model)
        self.limits = Limits(max_n=max_n, max_stop_strings=max_stop_strings, max_stop_string_chars=max_stop_string_chars,
                             max_prompts=max_prompts, vocab_size=model.vocab_size, context_length=model.context_length)

    def check_model(self, name: str) -> None:
        if not name:
            raise errors.InvalidArgument("model is required", reason="INVALID_REQUEST",
                                         field_violations=[("model", "must name a served model")], metadata={"param": "model"})
        if name != self.model.name:
            raise errors.NotFound(f"The model '{name}' does not exist; this deployment serves '{self.model.name}'",
                                  reason="MODEL_NOT_FOUND", metadata={"model": name, "param": "model"})

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
                   include_stop=p.include_stop_str_in_output, skip_special_tokens=p.skip_special_tokens,
                   want_logprobs=p.logprobs is not None)

    async def prepare_chat(self, model: str, messages: list[Message], p: GenerationParams, *, max_tokens_field: str,
                           timeout: float | None) -> Prepared:
        self.check_model(model)
        v = Violations()
        validate_messages(messages, v)
        validate_generation(p, self.limits, v, max_tokens_field=max_tokens_field)
        v.raise_if_any()
        prompt, stop_ids = await self.tokenizer.render_chat(messages, timeout)
        job = self._job([prompt], p, self.model.default_max_tokens, max_tokens_field, stop_ids)
        return Prepared(dataclasses.replace(job, request_id=f"chatcmpl-{uuid.uuid4().hex}"), int(time.time()), [])

    async def prepare_completion(self, model: str, prompts: list[str], prompt_ids: list[int], p: GenerationParams, *,
                                 echo: bool, timeout: float | None) -> Prepared:
        self.check_model(model)
        v = Violations()
        validate_generation(p, self.limits, v, logprobs_field="logprobs", max_logprobs=20)
        if bool(prompts) == bool(prompt_ids):
            v.add("prompt", "exactly one of prompt and prompt_token_ids is required")
        if len(prompts) > self.limits.max_prompts:
            v.add("prompt", f"at most {self.limits.max_prompts} prompts, got {len(prompts)}")
        if len(prompts) * p.choices > self.limits.max_n * self.limits.max_prompts:
            v.add("n", "too many choices in all")
        for tid in prompt_ids:
            if not 0 <= tid < self.model.vocab_size:
                v.add("prompt_token_ids", f"token id {tid} is outside the vocabulary [0, {self.model.vocab_size})")
                break
        v.raise_if_any()
        if prompts:
            ids = await self.tokenizer.tokenize(prompts, timeout)
            empty = [i for i, t in enumerate(ids) if not t]
            if empty:
                raise errors.InvalidArgument("prompt must not be empty", reason="INVALID_REQUEST",
                                             field_violations=[(f"prompt[{i}]", "encodes to no tokens") for i in empty],
                                             metadata={"param": "prompt"})
            texts = list(prompts)
        else:
            ids = [list(prompt_ids)]
            texts = await self.tokenizer.detokenize(ids, False, timeout) if echo else [""]
        job = self._job(ids, p, COMPLETIONS_DEFAULT_MAX_TOKENS, "max_tokens", [])
        return Prepared(dataclasses.replace(job, request_id=f"cmpl-{uuid.uuid4().hex}"), int(time.time()), texts)

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
