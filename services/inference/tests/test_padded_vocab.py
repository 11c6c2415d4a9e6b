"""A checkpoint whose embedding is padded past the tokenizer (Qwen2.5: 152064 rows, 151665 tokens).

The fixture copies the embedded model and appends PAD rows that dominate every logit, so an engine
that forgot the padding would pick a padded id at every step (checked on the raw model below). The
served model must never produce or name one, report the tokenizer's size and refuse padded ids.
"""

from __future__ import annotations

import shutil

import grpc
import pytest
import torch

from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc
from tokenway_common import errors
from tokenway_common.modeldir import tokenizer_fingerprint
from tokenway_common.server import start_server
from tokenway_inference.app import InferenceApp
from tokenway_inference.engines.base import ModelFacts, tokenizer_vocab_size
from tokenway_inference.engines.transformers_engine import TransformersEngine

from conftest import MODEL_DIR, settings

PAD = 64
TOKENS = 3645  # tokenizer.json: 3640 BPE ids + 5 added specials, ids 0..3644
PROMPTS = [[0, 17, 230, 999, 42, 7, 3000, 12], [0, 5, 3644, 1000, 77], [3, 250, 250, 250, 4, 3, 900]]
SEEDS = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def padded_dir(tmp_path_factory) -> str:
    """The embedded model with PAD extra embedding rows (tied, so extra logit rows) that dominate."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    out = tmp_path_factory.mktemp("padded") / "tokenway-tiny-padded"
    shutil.copytree(MODEL_DIR, out)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32)
    model.resize_token_embeddings(TOKENS + PAD, mean_resizing=False)
    with torch.no_grad():
        # rows +-1000 * e_j for the first PAD/2 hidden dims: for any final hidden state h the best
        # padded logit is 1000 * max_j |h_j|, far above every real row's (|h| * ~0.3).
        rows = torch.zeros(PAD, model.config.hidden_size)
        j = torch.arange(PAD // 2)
        rows[2 * j, j], rows[2 * j + 1, j] = 1000.0, -1000.0
        model.get_input_embeddings().weight[TOKENS:] = rows
    model.save_pretrained(out)  # config.json vocab_size = TOKENS + PAD; tokenizer files untouched
    return str(out)


@pytest.fixture(scope="module")
async def padded_engine(padded_dir):
    eng = TransformersEngine.from_settings(settings(model=padded_dir, max_batch_size=8, max_waiting=8))
    await eng.start()
    yield eng
    await eng.close()


@pytest.fixture(scope="module")
async def padded_stub(padded_dir, padded_engine):
    cfg = settings(model=padded_dir)
    running = await start_server(cfg, InferenceApp(cfg, engine=padded_engine))
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield pb_grpc.InferenceServiceStub(channel)
    await running.server.stop(None)


def test_the_fixture_is_padded_and_the_raw_model_prefers_padded_ids(padded_dir):
    """Without this, the tests below could not fail: an unmasked engine would emit padded ids."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    assert tokenizer_fingerprint(padded_dir) == tokenizer_fingerprint(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(padded_dir, dtype=torch.float32)
    assert model.config.vocab_size == TOKENS + PAD
    with torch.inference_mode():
        for prompt in PROMPTS:
            logits = model(input_ids=torch.tensor([prompt])).logits[0]
            assert logits.shape[-1] == TOKENS + PAD
            assert (logits.argmax(dim=-1) >= TOKENS).all()  # greedy would pick a padded id at every position
            padded_mass = torch.softmax(logits, dim=-1)[:, TOKENS:].sum(dim=-1)
            assert (padded_mass > 0.99).all()  # and so would sampling at temperature 1


def test_decodable_vocab_is_the_tokenizers_size(padded_dir):
    from transformers import AutoTokenizer  # noqa: PLC0415

    assert tokenizer_vocab_size(MODEL_DIR) == len(AutoTokenizer.from_pretrained(MODEL_DIR)) == TOKENS
    facts = ModelFacts.read(padded_dir)
    assert (facts.vocab_size, facts.logit_rows, facts.padded) == (TOKENS, TOKENS + PAD, True)
    plain = ModelFacts.read(MODEL_DIR)
    assert (plain.vocab_size, plain.logit_rows, plain.padded) == (TOKENS, TOKENS, False)


def test_without_a_tokenizer_the_vocab_is_the_logit_rows(padded_dir, tmp_path):
    for name in ("config.json", "generation_config.json"):
        shutil.copy(f"{padded_dir}/{name}", tmp_path / name)
    assert tokenizer_vocab_size(str(tmp_path)) is None
    facts = ModelFacts.read(str(tmp_path))
    assert (facts.vocab_size, facts.logit_rows, facts.padded) == (TOKENS + PAD, TOKENS + PAD, False)


async def test_model_info_reports_the_tokenizers_size(padded_stub):
    info = await padded_stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    assert info.vocab_size == TOKENS and info.model_name == "tokenway-tiny-padded"


def _request(rid: str, prompt, sampling: pb.SamplingParams, max_tokens: int = 24) -> pb.GenerateRequest:
    return pb.GenerateRequest(request_id=rid, prompt_token_ids=prompt, sampling=sampling, logprobs=5,
                              stopping=pb.StoppingParams(max_tokens=max_tokens, ignore_eos=True))


async def _generate(stub, req: pb.GenerateRequest) -> list[pb.GenerateResponse]:
    return [m async for m in stub.Generate(req, timeout=60)]


def _assert_decodable(msgs: list[pb.GenerateResponse], max_tokens: int, top: int) -> None:
    ids = [t for m in msgs for t in m.token_ids]
    lps = [lp for m in msgs for lp in m.logprobs]
    assert len(ids) == len(lps) == max_tokens and msgs[-1].finish_reason == pb.FINISH_REASON_LENGTH
    assert all(0 <= t < TOKENS for t in ids), ids
    for lp in lps:
        assert len(lp.top) == top and all(0 <= alt.token_id < TOKENS for alt in lp.top), lp
        # normalised over the decodable ids only: the padded rows' (dominant) mass is not subtracted
        assert sum(torch.tensor(alt.logprob).exp().item() for alt in lp.top) <= 1.0 + 1e-4
        assert lp.logprob > -20 and lp.top[0].logprob > -20


async def test_greedy_never_produces_or_names_a_padded_id(padded_stub):
    for i, prompt in enumerate(PROMPTS):
        msgs = await _generate(padded_stub, _request(f"greedy-{i}", prompt, pb.SamplingParams(temperature=0.0)))
        _assert_decodable(msgs, 24, 5)
        for m in msgs:  # greedy picks the best decodable id, which the top alternatives confirm
            assert all(t == lp.top[0].token_id for t, lp in zip(m.token_ids, m.logprobs))


@pytest.mark.parametrize("seed", SEEDS)
async def test_sampling_never_produces_or_names_a_padded_id(padded_stub, seed):
    # no truncation: every decodable id stays a candidate, and every padded one would be without the mask
    plain = pb.SamplingParams(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, seed=seed)
    truncated = pb.SamplingParams(temperature=1.5, top_p=0.9, top_k=40, seed=seed, repetition_penalty=1.3,
                                  frequency_penalty=0.5)
    for i, prompt in enumerate(PROMPTS):
        for name, sampling in (("plain", plain), ("truncated", truncated)):
            msgs = await _generate(padded_stub, _request(f"sample-{seed}-{name}-{i}", prompt, sampling))
            _assert_decodable(msgs, 24, 5)


@pytest.mark.parametrize("field, req", [
    ("prompt_token_ids", _request("pad-prompt", [0, 5, TOKENS], pb.SamplingParams(temperature=0.0))),
    ("prompt_token_ids", _request("pad-prompt-last", [0, TOKENS + PAD - 1], pb.SamplingParams(temperature=0.0))),
    ("sampling.logit_bias", _request("pad-bias", PROMPTS[0],
                                     pb.SamplingParams(temperature=0.0, logit_bias={TOKENS + 3: 100.0}))),
    ("stopping.stop_token_ids", pb.GenerateRequest(request_id="pad-stop", prompt_token_ids=PROMPTS[0],
                                                   stopping=pb.StoppingParams(stop_token_ids=[TOKENS]))),
])
async def test_padded_ids_are_invalid_argument(padded_stub, field, req):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await _generate(padded_stub, req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = errors.error_info(e.value)
    assert info.reason == "TOKEN_ID_OUT_OF_RANGE" and info.metadata["vocab_size"] == str(TOKENS)
    assert [f for f, _ in errors.from_rpc_error(e.value, "inference").field_violations] == [field]


async def test_the_last_decodable_id_is_accepted(padded_stub):
    msgs = await _generate(padded_stub, _request("last-ok", [0, TOKENS - 1], pb.SamplingParams(
        temperature=0.0, logit_bias={TOKENS - 1: 100.0}), max_tokens=2))
    assert [t for m in msgs for t in m.token_ids] == [TOKENS - 1] * 2
