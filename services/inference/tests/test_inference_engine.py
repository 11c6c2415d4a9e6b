"""The transformers engine without gRPC: batching, sampling, stopping and validation."""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from tokenway_common.errors import InvalidArgument, ResourceExhausted
from tokenway_inference.engines.base import (FinishReason, ModelFacts, SamplingOptions, GenerateRequest, StoppingOptions,
                                             validate)

from conftest import LONG, MODEL_DIR, collect, request, wait_for_load

EOS = 1  # config.json eos_token_id [1, 4]
rng = random.Random(7)
PROMPTS = [[0] + [rng.randrange(5, 3645) for _ in range(n)] for n in (3, 17, 64, 150, 9, 300)]


async def test_greedy_batched_equals_alone(engine):
    alone = [(await collect(engine, request(f"alone-{i}", p, max_tokens=24, ignore_eos=True)))[0]
             for i, p in enumerate(PROMPTS)]
    batched = await asyncio.gather(*[collect(engine, request(f"batch-{i}", p, max_tokens=24, ignore_eos=True))
                                     for i, p in enumerate(PROMPTS)])
    assert [b[0] for b in batched] == alone
    assert all(len(a) == 24 for a in alone)


async def test_late_request_joins_running_batch_and_matches_alone(engine):
    # "long" runs to the context (~1980 tokens): it outlives the late one, which needs ~13 steps
    long_req = request("long", PROMPTS[2], max_tokens=LONG, ignore_eos=True)
    late_alone, _ = await collect(engine, request("late-alone", PROMPTS[3], max_tokens=12, ignore_eos=True))
    stream = engine.generate(long_req)
    first = await anext(stream)
    long_at_start = engine.generated_tokens("long")
    late_tokens, late_chunks = await collect(engine, request("late", PROMPTS[3], max_tokens=12, ignore_eos=True))
    # the late request came and went while the long one kept running: they shared decode steps
    long_at_end = engine.generated_tokens("long")
    assert long_at_start is not None and long_at_end is not None and long_at_end > long_at_start
    assert engine.load().running == 1
    assert late_tokens == late_alone and late_chunks[0].prompt_tokens == len(PROMPTS[3])
    assert first.prompt_tokens == len(PROMPTS[2])
    assert await engine.abort(["long"]) == ["long"]
    rest = [c async for c in stream]
    assert rest[-1].finish_reason is FinishReason.ABORT and rest[-1].completion_tokens >= long_at_end


async def test_seed_reproducible_whatever_the_batch(engine):
    s = SamplingOptions(temperature=1.0, seed=1234, top_k=0, top_p=1.0)
    alone, _ = await collect(engine, request("seed-a", PROMPTS[1], sampling=s, max_tokens=20, ignore_eos=True))
    others = [request(f"seed-o{i}", p, sampling=SamplingOptions(temperature=1.0), max_tokens=20, ignore_eos=True)
              for i, p in enumerate(PROMPTS[2:5])]
    results = await asyncio.gather(collect(engine, request("seed-b", PROMPTS[1], sampling=s, max_tokens=20,
                                                           ignore_eos=True)), *[collect(engine, o) for o in others])
    assert results[0][0] == alone
    other_seed, _ = await collect(engine, request("seed-c", PROMPTS[1], max_tokens=20, ignore_eos=True,
                                                  sampling=SamplingOptions(temperature=1.0, seed=99, top_k=0, top_p=1.0)))
    assert other_seed != alone


async def test_abort_ends_stream_and_frees_the_row(engine):
    stream = engine.generate(request("victim", PROMPTS[0], max_tokens=LONG, ignore_eos=True))
    await anext(stream)
    assert engine.load().running == 1
    assert await engine.abort(["victim", "nobody"]) == ["victim"]
    chunks = [c async for c in stream]
    assert chunks[-1].finish_reason is FinishReason.ABORT
    assert chunks[-1].completion_tokens < LONG
    await wait_for_load(engine, lambda load: load.running == 0 and load.kv_cache_usage == 0)
    assert await engine.abort(["victim"]) == []  # finished ones are unknown


async def test_closing_the_stream_cancels_the_sequence(engine):
    stream = engine.generate(request("gone", PROMPTS[1], max_tokens=LONG, ignore_eos=True))
    await anext(stream)
    await stream.aclose()  # what a cancelled gRPC call does
    await wait_for_load(engine, lambda load: load.running == 0)
    tokens, _ = await collect(engine, request("gone", PROMPTS[1], max_tokens=3))  # the id is free again
    assert len(tokens) <= 3


async def test_max_tokens_gives_length(engine):
    tokens, chunks = await collect(engine, request("len", PROMPTS[0], max_tokens=7, ignore_eos=True))
    assert len(tokens) == 7
    assert chunks[-1].finish_reason is FinishReason.LENGTH and chunks[-1].stop_token_id is None
    assert [c.completion_tokens for c in chunks][-1] == 7


async def test_context_length_gives_length(engine):
    context = engine.model_info().max_context_length
    prompt = [5 + (i % 3000) for i in range(context - 3)]
    tokens, chunks = await collect(engine, request("ctx", prompt, max_tokens=100, ignore_eos=True))
    assert len(tokens) == 3 and chunks[-1].finish_reason is FinishReason.LENGTH


async def test_logit_bias_forces_eos_and_ignore_eos_keeps_going(engine):
    force_eos = SamplingOptions(temperature=0.0, logit_bias={EOS: 100.0})
    tokens, chunks = await collect(engine, request("eos", PROMPTS[1], sampling=force_eos, max_tokens=10))
    assert tokens == [EOS]
    assert chunks[-1].finish_reason is FinishReason.STOP and chunks[-1].stop_token_id == EOS
    tokens, chunks = await collect(engine, request("eos-ign", PROMPTS[1], sampling=force_eos, max_tokens=10,
                                                   ignore_eos=True))
    assert tokens == [EOS] * 10 and chunks[-1].finish_reason is FinishReason.LENGTH


async def test_min_tokens_masks_stops(engine):
    force_eos = SamplingOptions(temperature=0.0, logit_bias={EOS: 100.0})
    tokens, chunks = await collect(engine, request("min", PROMPTS[1], sampling=force_eos, max_tokens=10,
                                                   min_tokens=4))
    assert EOS not in tokens[:4] and tokens[4] == EOS and len(tokens) == 5
    assert chunks[-1].finish_reason is FinishReason.STOP


async def test_stop_token_ids_end_the_sequence(engine):
    greedy, _ = await collect(engine, request("g", PROMPTS[4], max_tokens=5, ignore_eos=True))
    tokens, chunks = await collect(engine, request("stop", PROMPTS[4], max_tokens=5, stop_token_ids=[greedy[0]]))
    assert tokens == greedy[:1]
    assert chunks[-1].finish_reason is FinishReason.STOP and chunks[-1].stop_token_id == greedy[0]
    tokens, _ = await collect(engine, request("stop-min", PROMPTS[4], max_tokens=5, min_tokens=2,
                                              stop_token_ids=[greedy[0]]))
    assert greedy[0] not in tokens[:2]


async def test_penalties_change_the_output(engine):
    plain, _ = await collect(engine, request("p0", PROMPTS[2], max_tokens=20, ignore_eos=True))
    assert len(set(plain)) < 20  # the random tiny model repeats itself
    for i, s in enumerate([SamplingOptions(temperature=0.0, repetition_penalty=2.0),
                           SamplingOptions(temperature=0.0, frequency_penalty=2.0),
                           SamplingOptions(temperature=0.0, presence_penalty=2.0)]):
        penalised, _ = await collect(engine, request(f"p{i + 1}", PROMPTS[2], sampling=s, max_tokens=20,
                                                     ignore_eos=True))
        assert penalised != plain
        assert len(set(penalised)) > len(set(plain))


@pytest.mark.parametrize("sampling", [
    SamplingOptions(temperature=0.9, top_p=0.9, top_k=0, seed=4321),
    SamplingOptions(temperature=0.0, frequency_penalty=1.5, presence_penalty=0.5),
], ids=["seeded", "penalties"])
async def test_a_resumed_sequence_continues_what_the_unbroken_run_generates(engine, sampling):
    """A stream migrated after k tokens: another request with prompt + those k tokens, resumed_tokens=k and the
    remaining budget generates exactly the unbroken run's tokens after the first k."""
    n, k = 24, 10
    whole, _ = await collect(engine, request("unbroken", PROMPTS[1], sampling=sampling, max_tokens=n,
                                             ignore_eos=True))
    assert len(whole) == n and len(set(whole[k:])) > 3
    resumed = GenerateRequest("resumed", tuple(PROMPTS[1]) + tuple(whole[:k]), sampling,
                              StoppingOptions(max_tokens=n - k, ignore_eos=True), resumed_tokens=k)
    rest, chunks = await collect(engine, resumed)
    assert rest == whole[k:]
    assert chunks[-1].completion_tokens == n - k and chunks[0].prompt_tokens == len(PROMPTS[1]) + k


async def test_logprobs_chosen_and_alternatives(engine):
    tokens, chunks = await collect(engine, request("lp", PROMPTS[1], max_tokens=5, ignore_eos=True, logprobs=3))
    lps = [lp for c in chunks for lp in c.logprobs]
    assert len(lps) == 5
    for tid, lp in zip(tokens, lps):
        assert len(lp.top) == 3 and lp.top[0][0] == tid  # greedy picks the best raw logit
        assert lp.logprob == pytest.approx(lp.top[0][1]) and lp.logprob <= 0
        assert lp.top[0][1] >= lp.top[1][1] >= lp.top[2][1]
    _, chunks = await collect(engine, request("lp0", PROMPTS[1], max_tokens=2, logprobs=0))
    assert all(lp.top == () for c in chunks for lp in c.logprobs)
    _, chunks = await collect(engine, request("nolp", PROMPTS[1], max_tokens=2))
    assert all(c.logprobs is None for c in chunks)


async def test_sampling_defaults_come_from_generation_config():
    facts = ModelFacts.read(MODEL_DIR)
    unset = validate(request("d", [1]), facts)
    assert unset.temperature == 0.0 and unset.greedy  # GREEDY sets 0 explicitly
    defaults = validate(GenerateRequest("d", (1,)), facts)
    assert (defaults.temperature, defaults.top_p, defaults.top_k) == pytest.approx((0.8, 0.95, 50))
    assert not defaults.greedy
    assert defaults.max_tokens == 256  # generation_config max_new_tokens
    assert facts.eos_token_ids == (1, 4) and facts.max_context_length == 2048


@pytest.mark.parametrize("req, reason", [
    (request("e1", []), "EMPTY_PROMPT"),
    (request("e2", [5] * 2048), "CONTEXT_LENGTH_EXCEEDED"),
    (request("e3", [5, 999_999]), "TOKEN_ID_OUT_OF_RANGE"),
    (request("e4", [5, -1]), "TOKEN_ID_OUT_OF_RANGE"),
    (request("e5", [5], stop_token_ids=[10**6]), "TOKEN_ID_OUT_OF_RANGE"),
    (request("e6", [5], sampling=SamplingOptions(top_p=0.0)), "INVALID_PARAMETER"),
    (request("e7", [5], sampling=SamplingOptions(temperature=-1.0)), "INVALID_PARAMETER"),
    (GenerateRequest("e8", (5, 6), resumed_tokens=2), "INVALID_PARAMETER"),  # no real prompt token left
    (GenerateRequest("e9", (5, 6), resumed_tokens=3), "INVALID_PARAMETER"),
])
async def test_invalid_requests(engine, req, reason):
    with pytest.raises(InvalidArgument) as e:
        await collect(engine, req)
    assert e.value.reason == reason


async def test_duplicate_request_id(engine):
    stream = engine.generate(request("dup", PROMPTS[0], max_tokens=LONG, ignore_eos=True))
    await anext(stream)
    with pytest.raises(InvalidArgument) as e:
        await collect(engine, request("dup", PROMPTS[0]))
    assert e.value.reason == "DUPLICATE_REQUEST_ID"
    await stream.aclose()
    await wait_for_load(engine, lambda load: load.running == 0 and load.waiting == 0)
    assert engine.generated_tokens("dup") is None


async def test_queue_full(engine, monkeypatch):
    monkeypatch.setattr(engine, "max_batch_size", 1)
    monkeypatch.setattr(engine, "max_waiting", 1)
    streams = [engine.generate(request(f"q{i}", PROMPTS[0], max_tokens=LONG, ignore_eos=True)) for i in range(2)]
    await anext(streams[0])
    waiting = asyncio.ensure_future(anext(streams[1]))
    await wait_for_load(engine, lambda load: load.waiting == 1)
    with pytest.raises(ResourceExhausted) as e:
        await collect(engine, request("q-over", PROMPTS[0]))
    assert e.value.reason == "QUEUE_FULL" and e.value.retry_after
    await engine.abort(["q0", "q1"])
    await waiting
    for s in streams:
        await s.aclose()
    await wait_for_load(engine, lambda load: load.running == 0 and load.waiting == 0)


async def test_a_repeated_prompt_reuses_its_computed_prefix(engine):
    prompt = [0] + [rng.randrange(5, 3645) for _ in range(200)]
    first, chunks = await collect(engine, request("pfx-1", prompt, max_tokens=8, ignore_eos=True))
    assert chunks[0].cached_tokens == 0
    again, chunks = await collect(engine, request("pfx-2", prompt, max_tokens=8, ignore_eos=True))
    assert again == first
    assert chunks[0].cached_tokens == 192 and chunks[0].prompt_tokens == 201  # 12 whole blocks of 16
    longer, chunks = await collect(engine, request("pfx-3", prompt + [7, 8, 9], max_tokens=4))
    assert chunks[0].cached_tokens == 192


async def test_twin_requests_compute_their_prompt_once(engine):
    """n > 1 is several requests with one prompt: the later ones copy what the first computes."""
    prompt = [0] + [rng.randrange(5, 3645) for _ in range(300)]
    results = await asyncio.gather(*[collect(engine, request(f"twin-{i}", prompt, max_tokens=6, ignore_eos=True))
                                     for i in range(3)])
    assert results[0][0] == results[1][0] == results[2][0]
    cached = sorted(chunks[0].cached_tokens for _, chunks in results)
    assert cached == [0, 288, 288]


async def test_shared_system_prompts_are_copied_on_every_repeat_in_a_small_kv_budget(engine):
    """bench-routing's prefix regime on one replica: KV_CACHE_TOKENS=8192, 4 closed-loop clients, 3 system
    prompts of 871 tokens with short distinct user turns, max_tokens 16 (ignore_eos). Every request after its
    prompt's first one copies the whole prompt (54 blocks), whatever the interleaving: the prompts fit beside
    the running batch, each is kept once, and one arriving while its prompt is computed waits for it. A next
    turn of a conversation then copies the prompt from one entry and its own turn from another, and gets
    the tokens it gets uncached (`engine`, which never saw these prompts, computes the reference)."""
    from tokenway_inference.config import InferenceSettings  # noqa: PLC0415
    from tokenway_inference.engines.transformers_engine import TransformersEngine  # noqa: PLC0415

    r = random.Random(21)
    systems = [[0] + [r.randrange(5, 3645) for _ in range(870)] for _ in range(3)]
    plan = [(k := r.randrange(3), systems[k] + [r.randrange(5, 3645) for _ in range(r.randint(8, 20))])
            for _ in range(48)]
    eng = TransformersEngine.from_settings(InferenceSettings(port=0, model=MODEL_DIR, kv_cache_tokens=8192))
    await eng.start()
    try:
        got: dict[int, tuple[list[int], int]] = {}
        queue = iter(range(len(plan)))

        async def client():
            for i in queue:
                tokens, chunks = await collect(eng, request(f"sys-{i}", plan[i][1], max_tokens=16, ignore_eos=True))
                got[i] = tokens, chunks[0].cached_tokens

        await asyncio.gather(*(client() for _ in range(4)))
        firsts = sorted({k: i for i, (k, _) in reversed(list(enumerate(plan)))}.values())
        assert [i for i in range(len(plan)) if got[i][1] < 54 * 16] == firsts
        assert eng.memory()["preemptions"] == 0
        # the last conversation's next turn: its prompt, its answer and a new user turn
        last = max(i for i in range(len(plan)) if i not in firsts)
        turn = plan[last][1] + got[last][0] + [r.randrange(5, 3645) for _ in range(12)]
        tokens, chunks = await collect(eng, request("sys-turn", turn, max_tokens=8, ignore_eos=True))
        assert chunks[0].cached_tokens == 16 * ((len(plan[last][1]) + 15) // 16)  # all it fed, whole blocks
        reference, chunks = await collect(engine, request("sys-turn-ref", turn, max_tokens=8, ignore_eos=True))
        assert chunks[0].cached_tokens == 0 and tokens == reference
    finally:
        await eng.close()


async def test_memory_held_is_what_the_sequences_need(engine):
    stream = engine.generate(request("mem", PROMPTS[5], max_tokens=LONG, ignore_eos=True))
    await anext(stream)
    mem = engine.memory()
    # the prompt plus headroom, in whole blocks; not its 2000-token worst case
    assert len(PROMPTS[5]) <= mem["held_tokens"] <= len(PROMPTS[5]) + 128
    assert mem["pool_bytes"] == mem["pool_tokens"] * 4096  # tiny: 4 layers x 2 KV heads x 64 x fp32 x K,V
    await stream.aclose()
    await wait_for_load(engine, lambda load: load.running == 0 and load.kv_cache_usage == 0)


async def test_out_of_kv_memory_preempts_and_recomputes_instead_of_failing():
    """A pool of one context (2048 tokens) for three sequences that need ~1100 each: the youngest are
    preempted and recomputed later; every stream still gets exactly the tokens it gets alone."""
    from tokenway_inference.config import InferenceSettings  # noqa: PLC0415
    from tokenway_inference.engines.transformers_engine import TransformersEngine  # noqa: PLC0415

    eng = TransformersEngine.from_settings(InferenceSettings(port=0, model=MODEL_DIR, kv_cache_tokens=2048,
                                                             max_batch_size=4, prefix_caching=False))
    await eng.start()
    try:
        prompts = [[0] + [rng.randrange(5, 3645) for _ in range(600)] for _ in range(3)]
        alone = [(await collect(eng, request(f"pre-alone-{i}", p, max_tokens=500, ignore_eos=True)))[0]
                 for i, p in enumerate(prompts)]
        together = await asyncio.gather(*[collect(eng, request(f"pre-{i}", p, max_tokens=500, ignore_eos=True),
                                                  timeout=300) for i, p in enumerate(prompts)])
        assert [t for t, _ in together] == alone
        assert eng.memory()["preemptions"] > 0
        assert eng.memory()["held_tokens"] == 0
    finally:
        await eng.close()


async def test_bfloat16_prefill_keeps_greedy_output_batch_invariant():
    """Prompt chunks through a bfloat16 copy of the model, decode and the KV pool in float32: a sequence's
    tokens still do not depend on what shares its steps."""
    from tokenway_inference.config import InferenceSettings  # noqa: PLC0415
    from tokenway_inference.engines.transformers_engine import TransformersEngine  # noqa: PLC0415

    eng = TransformersEngine.from_settings(InferenceSettings(port=0, model=MODEL_DIR, prefill_dtype="bfloat16",
                                                             max_batch_size=8, prefix_caching=False))
    await eng.start()
    try:
        assert eng.prefill_dtype == torch.bfloat16 and eng.memory()["pool_bytes"] == eng.memory()["pool_tokens"] * 4096
        alone = [(await collect(eng, request(f"bf-alone-{i}", p, max_tokens=16, ignore_eos=True)))[0]
                 for i, p in enumerate(PROMPTS)]
        batched = await asyncio.gather(*[collect(eng, request(f"bf-{i}", p, max_tokens=16, ignore_eos=True))
                                         for i, p in enumerate(PROMPTS)])
        assert [b[0] for b in batched] == alone
    finally:
        await eng.close()
