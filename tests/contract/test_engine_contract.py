"""What every inference engine promises through InferenceService, checked on each engine alike.

Each test runs once per engine chosen with --engine (conftest.py): the same requests, the same
assertions, the service started as `make up` starts it. The last test ends the server's life.
"""

from __future__ import annotations

import concurrent.futures
import random

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tokenizers import Tokenizer

from tests.conftest import MODEL_DIR
from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc
from tokenway_common import errors

from .conftest import MAX_BATCH, MAX_WAITING, wait_load

pytestmark = pytest.mark.integration
EOS = (1, 4)  # the tiny model's eos_token_id
CONTEXT, VOCAB = 2048, 3645
rng = random.Random(11)
PROMPT = [0] + [rng.randrange(5, VOCAB) for _ in range(40)]
#: Long enough to outlive the test's own steps on any machine: it runs to (nearly) the context.
LONG = CONTEXT - len(PROMPT) - 1
GREEDY = pb.SamplingParams(temperature=0.0)
TEXTS = ["The quick model", "Hello, how are you today?", "Once upon a time", "In 1923 the", "def fibonacci(n):",
         "The capital of France is", "Streaming tokens over gRPC", "A long time ago in a galaxy",
         "Numbers: 1, 2, 3,", "Bonjour le monde"]


def req(rid: str, prompt=PROMPT, *, sampling=GREEDY, logprobs=None, resumed_tokens=None,
        **stopping) -> pb.GenerateRequest:
    stopping.setdefault("max_tokens", 16)
    out = pb.GenerateRequest(request_id=rid, prompt_token_ids=prompt, sampling=sampling,
                             stopping=pb.StoppingParams(**stopping))
    if logprobs is not None:
        out.logprobs = logprobs
    if resumed_tokens is not None:
        out.resumed_tokens = resumed_tokens
    return out


def run(stub, request: pb.GenerateRequest) -> list[pb.GenerateResponse]:
    return list(stub.Generate(request, timeout=120))


def ids(msgs) -> list[int]:
    return [t for m in msgs for t in m.token_ids]


def idle(server) -> pb.GetLoadResponse:
    return wait_load(server.stub, lambda load: load.running == 0 and load.waiting == 0)


def refused(server, request: pb.GenerateRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        run(server.stub, request)
    return e.value


def test_model_info_names_the_engine_and_the_model(server):
    info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.engine == server.engine and info.model_name == "tokenway-tiny"
    assert tuple(info.eos_token_ids) == EOS and info.max_context_length == CONTEXT and info.vocab_size == VOCAB
    load = server.stub.GetLoad(pb.GetLoadRequest(), timeout=10)
    assert load.max_batch_size == MAX_BATCH


def test_stream_prompt_info_cumulative_counts_and_length(server):
    msgs = run(server.stub, req("stream", max_tokens=24, ignore_eos=True))
    assert msgs[0].prompt_info.prompt_tokens == len(PROMPT)
    assert all(not m.HasField("prompt_info") for m in msgs[1:])
    total = 0
    for m in msgs:
        total += len(m.token_ids)
        assert m.completion_tokens == total
    assert total == 24 and all(0 <= t < VOCAB for t in ids(msgs))
    assert [m.finish_reason for m in msgs[:-1]] == [pb.FINISH_REASON_UNSPECIFIED] * (len(msgs) - 1)
    assert msgs[-1].finish_reason == pb.FINISH_REASON_LENGTH and not msgs[-1].HasField("stop_token_id")


def test_greedy_is_deterministic_and_matches_the_reference_engine(server, reference):
    """Greedy at float32: the first 32 tokens of 10 prompts equal the transformers engine's, in-process."""
    for prompt, want in reference.items():
        got = ids(run(server.stub, req("greedy", list(prompt), max_tokens=32, ignore_eos=True)))
        assert got == want, f"prompt {list(prompt)} diverges at token {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"


def test_a_slow_reader_gets_several_tokens_per_message(server):
    """A reader that stops reading (its HTTP/2 window, 1 KiB here, fills) gets every token produced
    meanwhile in the next message, not a backlog of one-token messages."""
    total = 400
    slow = grpc.insecure_channel(f"127.0.0.1:{server.port}",
                                 options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)])
    with slow:
        call = pb_grpc.InferenceServiceStub(slow).Generate(req("slow", max_tokens=total, ignore_eos=True), timeout=120)
        first = next(call)
        idle(server)  # generation ended while this reader was not reading
        msgs = [first, *call]
    assert sum(len(m.token_ids) for m in msgs) == total and msgs[-1].completion_tokens == total
    assert len(msgs) < total // 2, [len(m.token_ids) for m in msgs]
    assert max(len(m.token_ids) for m in msgs) > total // 4


def test_seed_reproducible_whatever_the_batch(server):
    seeded = pb.SamplingParams(temperature=1.0, top_p=1.0, top_k=0, seed=1234)
    alone = ids(run(server.stub, req("seed-a", sampling=seeded, max_tokens=20, ignore_eos=True)))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        other = pool.submit(run, server.stub, req("seed-o", PROMPT[:9], sampling=pb.SamplingParams(temperature=1.0),
                                                  max_tokens=40, ignore_eos=True))
        batched = pool.submit(run, server.stub, req("seed-b", sampling=seeded, max_tokens=20, ignore_eos=True))
        assert ids(batched.result()) == alone
        other.result()
    reseeded = pb.SamplingParams(temperature=1.0, top_p=1.0, top_k=0, seed=99)
    assert ids(run(server.stub, req("seed-c", sampling=reseeded, max_tokens=20, ignore_eos=True))) != alone


def test_logprob_shapes(server):
    msgs = run(server.stub, req("lp", max_tokens=10, ignore_eos=True, logprobs=3))
    lps = [lp for m in msgs for lp in m.logprobs]
    assert len(lps) == 10 == len(ids(msgs))
    for tid, lp in zip(ids(msgs), lps):
        top = [(t.token_id, t.logprob) for t in lp.top]
        assert len(top) == 3 and all(0 <= t < VOCAB for t, _ in top)
        assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)
        assert lp.logprob <= 0.0 and top[0] == (tid, pytest.approx(lp.logprob, abs=1e-3))  # greedy: the best
    chosen_only = run(server.stub, req("lp0", max_tokens=4, ignore_eos=True, logprobs=0))
    assert all(len(lp.top) == 0 for m in chosen_only for lp in m.logprobs)
    assert len([lp for m in chosen_only for lp in m.logprobs]) == 4
    assert all(not m.logprobs for m in run(server.stub, req("nolp", max_tokens=4, ignore_eos=True)))


def test_stop_token_ids_end_the_sequence_and_are_reported(server):
    greedy = ids(run(server.stub, req("plain", max_tokens=12, ignore_eos=True)))
    at = [i for i in range(12) if greedy[i] not in greedy[:i] and greedy[i] not in EOS][-1]  # its first occurrence
    msgs = run(server.stub, req("stop-id", max_tokens=12, ignore_eos=True, stop_token_ids=[greedy[at]]))
    assert ids(msgs) == greedy[:at + 1]  # the stop id is kept in token_ids
    assert msgs[-1].finish_reason == pb.FINISH_REASON_STOP and msgs[-1].stop_token_id == greedy[at]


def test_eos_ends_the_sequence_unless_ignore_eos(server):
    forced = pb.SamplingParams(temperature=0.0, logit_bias={4: 100.0})
    msgs = run(server.stub, req("eos", sampling=forced, max_tokens=8))
    assert ids(msgs) == [4]
    assert msgs[-1].finish_reason == pb.FINISH_REASON_STOP and msgs[-1].stop_token_id == 4
    kept = run(server.stub, req("eos-ignored", sampling=forced, max_tokens=8, ignore_eos=True))
    assert ids(kept) == [4] * 8 and kept[-1].finish_reason == pb.FINISH_REASON_LENGTH


def test_min_tokens_holds_eos_back(server):
    forced = pb.SamplingParams(temperature=0.0, logit_bias={4: 100.0})
    msgs = run(server.stub, req("min", sampling=forced, max_tokens=12, min_tokens=5))
    got = ids(msgs)
    assert len(got) == 6 and not set(got[:5]) & set(EOS) and got[5] == 4
    assert msgs[-1].finish_reason == pb.FINISH_REASON_STOP


def test_a_resumed_request_is_served_with_the_budget_of_new_tokens(server):
    """resumed_tokens (a stream continued from another replica) is accepted by every engine; max_tokens and
    min_tokens count new tokens only, and the resumed ids are in the reported prompt."""
    first = ids(run(server.stub, req("resume-head", max_tokens=6, ignore_eos=True)))
    msgs = run(server.stub, req("resume-tail", PROMPT + first, max_tokens=5, ignore_eos=True, resumed_tokens=6))
    assert msgs[0].prompt_info.prompt_tokens == len(PROMPT) + 6
    assert len(ids(msgs)) == 5 and msgs[-1].completion_tokens == 5 and msgs[-1].finish_reason == pb.FINISH_REASON_LENGTH
    forced = pb.SamplingParams(temperature=0.0, logit_bias={4: 100.0})
    held = run(server.stub, req("resume-min", PROMPT + first, sampling=forced, max_tokens=12, min_tokens=3,
                                resumed_tokens=6))
    got = ids(held)
    assert len(got) == 4 and not set(got[:3]) & set(EOS) and got[3] == 4
    assert held[-1].finish_reason == pb.FINISH_REASON_STOP


def test_the_context_bounds_the_completion(server):
    prompt = [0] + [rng.randrange(5, VOCAB) for _ in range(CONTEXT - 7)]
    msgs = run(server.stub, req("ctx", prompt, max_tokens=100, ignore_eos=True))
    assert len(ids(msgs)) == 6 and msgs[-1].finish_reason == pb.FINISH_REASON_LENGTH


def test_abort_ends_the_stream_with_abort(server):
    call = server.stub.Generate(req("abort-me", max_tokens=LONG, ignore_eos=True), timeout=120)
    next(call)
    resp = server.stub.Abort(pb.AbortRequest(request_ids=["abort-me", "unknown"]), timeout=10)
    assert list(resp.aborted_request_ids) == ["abort-me"]
    rest = list(call)
    assert rest[-1].finish_reason == pb.FINISH_REASON_ABORT and rest[-1].completion_tokens < LONG
    assert call.code() == grpc.StatusCode.OK
    assert idle(server).kv_cache_usage == 0.0
    assert list(server.stub.Abort(pb.AbortRequest(request_ids=["abort-me"]), timeout=10).aborted_request_ids) == []


def test_cancelling_the_call_frees_the_slot(server):
    call = server.stub.Generate(req("cancel-me", max_tokens=LONG, ignore_eos=True), timeout=120)
    next(call)
    assert wait_load(server.stub, lambda load: load.running == 1).kv_cache_usage > 0.0
    call.cancel()
    assert idle(server).kv_cache_usage == 0.0
    assert len(ids(run(server.stub, req("cancel-me", max_tokens=3, ignore_eos=True)))) == 3  # the id is free again


def test_overload_is_resource_exhausted_with_retry_info_and_recovers(server):
    calls = [server.stub.Generate(req(f"hog-{i}", max_tokens=LONG, ignore_eos=True), timeout=120)
             for i in range(MAX_BATCH + MAX_WAITING)]
    try:
        for call in calls[:MAX_BATCH]:
            next(call)  # running
        wait_load(server.stub, lambda load: load.running == MAX_BATCH and load.waiting == MAX_WAITING)
        err = refused(server, req("turned-away"))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        detail = errors.from_rpc_error(err, "inference")
        assert detail.reason == "QUEUE_FULL" and detail.retry_after and detail.retry_after > 0
    finally:
        for call in calls:
            call.cancel()
    idle(server)
    assert len(ids(run(server.stub, req("after-overload", max_tokens=4, ignore_eos=True)))) == 4


@pytest.mark.parametrize("bad, reason", [
    (req("bad-empty", []), "EMPTY_PROMPT"),
    (req("bad-long", [5] * (CONTEXT + 10)), "CONTEXT_LENGTH_EXCEEDED"),
    (req("bad-id", [5, VOCAB]), "TOKEN_ID_OUT_OF_RANGE"),
    (req("bad-stop", stop_token_ids=[VOCAB + 7]), "TOKEN_ID_OUT_OF_RANGE"),
    (req("bad-bias", sampling=pb.SamplingParams(logit_bias={-3: 1.0})), "TOKEN_ID_OUT_OF_RANGE"),
    (req("bad-minp", sampling=pb.SamplingParams(min_p=2.0)), "INVALID_PARAMETER"),
    (req("bad-lp", logprobs=21), "INVALID_PARAMETER"),
    (req("bad-resumed", resumed_tokens=len(PROMPT)), "INVALID_PARAMETER"),  # no real prompt token left
])
def test_bad_input_is_invalid_argument_with_a_reason(server, bad, reason):
    err = refused(server, bad)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.error_info(err).reason == reason


def test_duplicate_request_id_is_refused_while_running(server):
    call = server.stub.Generate(req("twice", max_tokens=LONG, ignore_eos=True), timeout=120)
    try:
        next(call)
        err = refused(server, req("twice"))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and errors.error_info(err).reason == "DUPLICATE_REQUEST_ID"
    finally:
        call.cancel()
    idle(server)


def test_health_serving_after_warm_up_then_not_serving_on_sigterm(server):
    """Last: it ends the server. Readiness came only once a request could be served, and SIGTERM flips
    the Watch to NOT_SERVING before the process exits cleanly."""
    serving = server.statuses.index(health_pb2.HealthCheckResponse.SERVING)
    assert set(server.statuses[:serving]) <= {health_pb2.HealthCheckResponse.NOT_SERVING}, server.statuses
    server.proc.terminate()
    assert server.wait_status(health_pb2.HealthCheckResponse.NOT_SERVING, 60), (server.statuses, server.tail())
    assert server.proc.wait(120) == 0, server.tail()


@pytest.fixture(scope="module")
def reference() -> dict[tuple[int, ...], list[int]]:
    """Greedy float32 output of the transformers engine, in this process: {prompt ids: first 32 tokens}."""
    import asyncio

    from tokenway_inference.config import InferenceSettings
    from tokenway_inference.engines.base import GenerateRequest, SamplingOptions, StoppingOptions
    from tokenway_inference.engines.transformers_engine import TransformersEngine

    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    prompts = [tuple(tok.encode(t).ids) for t in TEXTS]

    async def generate() -> dict:
        eng = TransformersEngine.from_settings(InferenceSettings(port=0, model=str(MODEL_DIR), dtype="float32",
                                                                 prefill_dtype="float32", threads=1, max_batch_size=1))
        await eng.start()
        try:
            out = {}
            for i, p in enumerate(prompts):
                r = GenerateRequest(f"ref-{i}", p, SamplingOptions(temperature=0.0),
                                    StoppingOptions(max_tokens=32, ignore_eos=True))
                out[p] = [t async for c in eng.generate(r) for t in c.token_ids]
            return out
        finally:
            await eng.close()

    return asyncio.run(generate())
