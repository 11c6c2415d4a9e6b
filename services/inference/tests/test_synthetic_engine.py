"""The synthetic (benchmarking) engine: made-up tokens at a fixed step time, batched like a real engine.

No assertion here depends on wall time: the engine's `steps` counter tells how many scheduler steps a
piece of work took, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from tokenizers import Tokenizer

from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc
from tokenway_common.errors import InvalidArgument, ResourceExhausted, Unavailable
from tokenway_common.server import start_server
from tokenway_inference.app import InferenceApp
from tokenway_inference.engines import create_engine
from tokenway_inference.engines.base import FinishReason, ModelFacts, SamplingOptions
from tokenway_inference.engines.synthetic_engine import SyntheticEngine

from conftest import LONG, MODEL_DIR, collect, request, settings

PROMPT = [0, 17, 230, 999, 42, 7, 3000, 12]
TOKENIZER = Tokenizer.from_file(str(Path(MODEL_DIR) / "tokenizer.json"))
SPECIAL = {i for i, t in TOKENIZER.get_added_tokens_decoder().items() if t.special}  # EOS, BOS, PAD among them


def synthetic_settings(**kw):
    kw.setdefault("synthetic_step_ms", 1.0)  # fast tests; nothing below depends on the step time
    return settings(engine="synthetic", max_batch_size=8, max_waiting=8, **kw)


@pytest.fixture(scope="module")
async def synth():
    eng = create_engine(synthetic_settings())
    assert isinstance(eng, SyntheticEngine)
    await eng.start()
    yield eng
    await eng.close()


async def test_answer_runs_to_max_tokens_with_cumulative_counts(synth):
    tokens, chunks = await collect(synth, request("len", PROMPT, max_tokens=20))  # EOS allowed, never drawn
    assert len(tokens) == 20
    assert chunks[-1].finish_reason is FinishReason.LENGTH and chunks[-1].stop_token_id is None
    assert chunks[0].prompt_tokens == len(PROMPT) and all(c.prompt_tokens is None for c in chunks[1:])
    total = 0
    for c in chunks:
        total += len(c.token_ids)
        assert c.completion_tokens == total
    assert all(c.finish_reason is None for c in chunks[:-1])
    tokens, _ = await collect(synth, request("default-len", PROMPT, max_tokens=0))
    assert len(tokens) == synth.model_info().default_max_tokens == 256


async def test_context_length_bounds_the_answer(synth):
    context = synth.model_info().max_context_length
    tokens, chunks = await collect(synth, request("ctx", [5] * (context - 3), max_tokens=100))
    assert len(tokens) == 3 and chunks[-1].finish_reason is FinishReason.LENGTH


async def test_concurrent_requests_share_steps(synth):
    """8 requests of 16 tokens, sent together, take about 16 steps, not 8 x 16: they were batched."""
    before = synth.load().steps
    results = await asyncio.gather(*[collect(synth, request(f"b{i}", PROMPT + [i], max_tokens=16))
                                     for i in range(8)])
    assert [len(tokens) for tokens, _ in results] == [16] * 8
    assert 16 <= synth.load().steps - before <= 16 + 2
    assert synth.load().running == 0 and synth.load().kv_cache_usage == 0.0


async def test_kv_budget_holds_back_admission(synth, monkeypatch):
    """Two requests whose reserved prompt + max_tokens exceed the KV budget together run one after the other."""
    monkeypatch.setattr(synth, "kv_cache_tokens", 2 * (len(PROMPT) + 10) - 1)
    before = synth.load().steps
    first = synth.generate(request("kv-a", PROMPT, max_tokens=10))
    await anext(first)
    second = asyncio.ensure_future(collect(synth, request("kv-b", PROMPT, max_tokens=10)))
    assert await synth.wait_until(lambda load: load.waiting == 1, 10), synth.load()
    assert synth.load().running == 1
    rest = [c async for c in first]
    tokens, _ = await second
    assert rest[-1].completion_tokens == 10 and len(tokens) == 10
    assert synth.load().steps - before >= 20  # no step was shared


async def test_tokens_are_ordinary_text(synth):
    facts = ModelFacts.read(MODEL_DIR)
    results = await asyncio.gather(*[collect(synth, request(f"txt{i}", PROMPT, max_tokens=200)) for i in range(4)])
    ids = [t for tokens, _ in results for t in tokens]
    assert all(0 <= t < facts.vocab_size for t in ids)
    assert not set(ids) & (SPECIAL | set(facts.eos_token_ids))
    for t in set(ids):
        text = TOKENIZER.decode([t], skip_special_tokens=False)
        assert text and "\ufffd" not in text, (t, text)
    assert "\ufffd" not in TOKENIZER.decode(ids)
    assert len(set(ids)) > 400  # drawn from the whole ordinary vocabulary, not a handful of ids


async def test_same_seed_same_tokens(synth):
    seeded = SamplingOptions(seed=1234)
    a, _ = await collect(synth, request("seed-a", PROMPT, sampling=seeded, max_tokens=30))
    b, _ = await collect(synth, request("seed-b", [5, 6, 7], sampling=seeded, max_tokens=30))
    c, _ = await collect(synth, request("seed-c", PROMPT, sampling=SamplingOptions(seed=99), max_tokens=30))
    assert a == b and a != c
    # without a seed: the request id and the prompt decide
    d1, _ = await collect(synth, request("same", PROMPT, max_tokens=30))
    d2, _ = await collect(synth, request("same", PROMPT, max_tokens=30))
    e, _ = await collect(synth, request("other", PROMPT, max_tokens=30))
    assert d1 == d2 and d1 != e


async def test_a_resumed_request_continues_the_stream(synth):
    """prompt + the first k tokens with resumed_tokens=k gives the rest of the unbroken answer: seeded, and
    unseeded under the same request id (the seed then comes from the id and the prompt proper)."""
    for rid, sampling in (("resume-seeded", SamplingOptions(seed=77)), ("resume-unseeded", SamplingOptions())):
        whole, _ = await collect(synth, request(rid, PROMPT, sampling=sampling, max_tokens=24))
        resumed = dataclasses.replace(request(rid, PROMPT + whole[:10], sampling=sampling, max_tokens=14),
                                      resumed_tokens=10)
        rest, _ = await collect(synth, resumed)
        assert rest == whole[10:]


async def test_stop_token_ids_end_it_but_not_before_min_tokens(synth):
    seeded = SamplingOptions(seed=5)
    plain, _ = await collect(synth, request("st0", PROMPT, sampling=seeded, max_tokens=20))
    stop = plain[3]
    tokens, chunks = await collect(synth, request("st1", PROMPT, sampling=seeded, max_tokens=20,
                                                  stop_token_ids=[stop]))
    k = plain.index(stop)
    assert tokens == plain[:k + 1]
    assert chunks[-1].finish_reason is FinishReason.STOP and chunks[-1].stop_token_id == stop
    tokens, chunks = await collect(synth, request("st2", PROMPT, sampling=seeded, max_tokens=20, min_tokens=k + 1,
                                                  stop_token_ids=[stop]))
    assert stop not in tokens[:k + 1] and len(tokens) > k + 1


async def test_slow_reader_gets_several_tokens_per_chunk(synth):
    stream = synth.generate(request("slow", PROMPT, max_tokens=LONG))
    first = await anext(stream)
    at = synth.load().steps
    assert await synth.wait_until(lambda load: load.steps >= at + 5, 10)  # the reader did not read meanwhile
    chunk = await anext(stream)
    assert len(chunk.token_ids) >= 5 and chunk.prompt_tokens is None
    assert chunk.completion_tokens == len(first.token_ids) + len(chunk.token_ids)
    await stream.aclose()


async def test_abort_ends_the_stream_and_frees_the_slot(synth):
    stream = synth.generate(request("victim", PROMPT, max_tokens=LONG))
    await anext(stream)
    assert synth.load().running == 1 and synth.load().kv_cache_usage > 0
    assert await synth.abort(["victim", "nobody"]) == ["victim"]
    assert synth.load().running == 0 and synth.load().kv_cache_usage == 0.0
    chunks = [c async for c in stream]
    assert chunks[-1].finish_reason is FinishReason.ABORT and chunks[-1].completion_tokens < LONG
    assert await synth.abort(["victim"]) == []  # finished ones are unknown


async def test_closing_the_stream_frees_the_slot(synth):
    stream = synth.generate(request("gone", PROMPT, max_tokens=LONG))
    await anext(stream)
    await stream.aclose()  # what a cancelled gRPC call does
    assert synth.load().running == 0 and synth.load().waiting == 0
    tokens, _ = await collect(synth, request("gone", PROMPT, max_tokens=3))  # the id is free again
    assert len(tokens) == 3


async def test_queue_full_and_duplicate_ids(synth, monkeypatch):
    monkeypatch.setattr(synth, "max_batch_size", 1)
    monkeypatch.setattr(synth, "max_waiting", 1)
    streams = [synth.generate(request(f"q{i}", PROMPT, max_tokens=LONG)) for i in range(2)]
    await anext(streams[0])
    waiting = asyncio.ensure_future(anext(streams[1]))
    assert await synth.wait_until(lambda load: load.waiting == 1, 10), synth.load()
    with pytest.raises(InvalidArgument) as dup:
        await collect(synth, request("q0", PROMPT))
    assert dup.value.reason == "DUPLICATE_REQUEST_ID"
    with pytest.raises(ResourceExhausted) as full:
        await collect(synth, request("q-over", PROMPT))
    assert full.value.reason == "QUEUE_FULL" and full.value.retry_after == pytest.approx(1.0)
    assert sorted(await synth.abort(["q0", "q1"])) == ["q0", "q1"]
    never_ran = await waiting
    assert never_ran.finish_reason is FinishReason.ABORT and never_ran.token_ids == []
    assert never_ran.prompt_tokens == len(PROMPT)
    for s in streams:
        await s.aclose()
    assert synth.load().running == 0 and synth.load().waiting == 0


async def test_logprobs_are_well_formed(synth):
    tokens, chunks = await collect(synth, request("lp", PROMPT, max_tokens=6, logprobs=3))
    lps = [lp for c in chunks for lp in c.logprobs]
    assert len(lps) == 6
    for tid, lp in zip(tokens, lps):
        assert lp.logprob <= 0 and len(lp.top) == 3 and lp.top[0] == (tid, lp.logprob)
        assert lp.top[0][1] > lp.top[1][1] > lp.top[2][1]
        assert len({t for t, _ in lp.top}) == 3 and not {t for t, _ in lp.top} & SPECIAL
    _, chunks = await collect(synth, request("lp0", PROMPT, max_tokens=2, logprobs=0))
    assert all(lp.top == () for c in chunks for lp in c.logprobs)
    _, chunks = await collect(synth, request("nolp", PROMPT, max_tokens=2))
    assert all(c.logprobs is None for c in chunks)


@pytest.mark.parametrize("req, reason", [
    (request("e1", []), "EMPTY_PROMPT"),
    (request("e2", [5] * 2048), "CONTEXT_LENGTH_EXCEEDED"),
    (request("e3", [5, 999_999]), "TOKEN_ID_OUT_OF_RANGE"),
    (request("e4", [5], sampling=SamplingOptions(top_p=0.0)), "INVALID_PARAMETER"),
])
async def test_invalid_requests(synth, req, reason):
    with pytest.raises(InvalidArgument) as e:
        await collect(synth, req)
    assert e.value.reason == reason


async def test_model_info_is_the_real_models():
    info = create_engine(synthetic_settings()).model_info()
    facts = ModelFacts.read(MODEL_DIR)
    assert info.engine == "synthetic" and info.model_name == "tokenway-tiny"
    assert (info.vocab_size, info.eos_token_ids, info.max_context_length) == \
        (facts.vocab_size, facts.eos_token_ids, facts.max_context_length)


async def test_not_started_and_closed_engines_refuse_requests():
    eng = create_engine(synthetic_settings())
    with pytest.raises(Unavailable) as e:
        await collect(eng, request("early", PROMPT))
    assert e.value.reason == "ENGINE_NOT_READY"
    await eng.start()
    stream = eng.generate(request("open", PROMPT, max_tokens=LONG))
    await anext(stream)
    await eng.close()
    rest = [c async for c in stream]
    assert rest[-1].finish_reason is FinishReason.ABORT and eng.load().running == 0
    with pytest.raises(Unavailable):
        await collect(eng, request("late", PROMPT))


def test_starts_without_torch():
    """The benchmarking engine loads no model: neither torch nor transformers is imported."""
    code = ("import asyncio, sys\n"
            "from tokenway_inference.config import InferenceSettings\n"
            "from tokenway_inference.engines import create_engine\n"
            f"eng = create_engine(InferenceSettings(port=0, model={MODEL_DIR!r}, engine='synthetic'))\n"
            "asyncio.run(eng.start())\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert "for benchmarking only" in out.stderr  # the WARNING at start


async def test_through_grpc(synth):
    running = await start_server(synthetic_settings(), InferenceApp(synthetic_settings(), engine=synth))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            assert (await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)).engine == "synthetic"
            req = pb.GenerateRequest(request_id="g1", prompt_token_ids=PROMPT, logprobs=2,
                                     stopping=pb.StoppingParams(max_tokens=24))
            msgs = [m async for m in stub.Generate(req, timeout=30)]
            assert msgs[0].prompt_info.prompt_tokens == len(PROMPT)
            assert sum(len(m.token_ids) for m in msgs) == msgs[-1].completion_tokens == 24
            assert all(len(m.logprobs) == len(m.token_ids) and all(len(lp.top) == 2 for lp in m.logprobs)
                       for m in msgs)
            assert msgs[-1].finish_reason == pb.FINISH_REASON_LENGTH
            call = stub.Generate(pb.GenerateRequest(request_id="g2", prompt_token_ids=PROMPT,
                                                    stopping=pb.StoppingParams(max_tokens=LONG)), timeout=30)
            await call.read()
            assert (await stub.GetLoad(pb.GetLoadRequest(), timeout=5)).running == 1
            call.cancel()
            assert await synth.wait_until(lambda load: load.running == 0, 10), synth.load()
            assert (await stub.GetLoad(pb.GetLoadRequest(), timeout=5)).running == 0
    finally:
        await running.server.stop(None)
