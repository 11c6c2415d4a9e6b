"""The token sampler alone (engines/sampler.py), on CPU, no model.

Every knob and mixed batches are held to `Reference`, the same semantics written the plain way (dense
tensors over the whole vocabulary, one row at a time, float64 probabilities): greedy tokens and logprobs
must match exactly, sampled tokens must be the reference's inverse-CDF pick at the same uniform, which
each row takes from its own generator.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch

from tokenway_inference.engines.base import ResolvedParams
from tokenway_inference.engines.sampler import Sampler, SamplingState, _argmax, _block, _topk

EOS = (5,)
PAD = 9  # padded logit columns past the vocabulary
PAD_LOGIT = 1e4  # larger than any real logit: a padded column that took part would win everything


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors: a second OpenMP thread only adds waiting, seconds of it on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params(**kw) -> ResolvedParams:
    base = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "seed": 0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "repetition_penalty": 1.0, "logit_bias": {}, "max_tokens": 64, "min_tokens": 0,
            "ignore_eos": False, "stop_token_ids": (), "logprobs": None}
    base.update(kw)
    return ResolvedParams(**base)


class Reference:
    """One sequence, the plain way: what the sampler must compute for it, step by step."""

    def __init__(self, p: ResolvedParams, prompt, vocab: int) -> None:
        self.p, self.vocab, self.prompt = p, vocab, list(prompt)
        self.generated: list[int] = []
        self.gen = torch.Generator()
        self.gen.manual_seed(p.seed)
        self.stops = set(p.stop_token_ids) | (set() if p.ignore_eos else set(EOS))

    def adjusted(self, row: torch.Tensor) -> torch.Tensor:
        """Penalties, bias and the min_tokens mask on one row, in float32 (the greedy token is its argmax)."""
        p, v = self.p, self.vocab
        x = row[:v].float().clone()
        seen = torch.zeros(v, dtype=torch.bool)
        seen[self.prompt + self.generated] = True
        r = torch.tensor(p.repetition_penalty)
        x = torch.where(seen, torch.where(x > 0, x / r, x * r), x)
        counts = torch.zeros(v)
        for t, n in Counter(self.generated).items():
            counts[t] = n
        x = x - torch.tensor(p.frequency_penalty) * counts - torch.tensor(p.presence_penalty) * (counts > 0).float()
        bias = torch.zeros(v)
        for t, b in p.logit_bias.items():
            bias[t] = b
        x = x + bias
        if len(self.generated) < p.min_tokens:
            x[sorted(self.stops | set(EOS))] = -math.inf
        return x

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The final distribution (unnormalised, float64, ids in order) of a sampled row."""
        p, v = self.p, self.vocab
        y = x.double() / p.temperature
        if 0 < p.top_k < v:
            keep = torch.zeros(v, dtype=torch.bool)
            keep[y.topk(p.top_k).indices] = True
            y = y.masked_fill(~keep, -math.inf)
        probs = torch.softmax(y, dim=0)
        remove = probs < p.min_p * probs.max()
        if p.top_p < 1:
            order = probs.argsort(descending=True)
            ranked = probs[order]
            out = torch.zeros(v, dtype=torch.bool)
            out[order] = (ranked.cumsum(0) - ranked) >= p.top_p
            remove |= out
        remove[probs.argmax()] = False
        return probs.masked_fill(remove, 0.0)

    def step(self, row: torch.Tensor) -> tuple[int, float | None, list[tuple[int, float]], torch.Tensor | None, float]:
        """(token, its raw logprob, the top alternatives, the draw's cdf or None when greedy, the uniform)."""
        raw = torch.log_softmax(row[:self.vocab].float(), dim=0)
        x = self.adjusted(row)
        if self.p.temperature == 0:
            token, cdf, u = int(x.argmax()), None, 0.0
        else:
            w = self.weights(x)
            cdf = w.cumsum(0) / w.sum()
            u = torch.rand(1, dtype=torch.float64, generator=self.gen).item()
            token = int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64), right=True))
        n = self.p.logprobs
        top = []
        if n:
            vals, ids = raw.topk(n)
            top = list(zip(ids.tolist(), vals.tolist()))
        return token, (raw[token].item() if n is not None else None), top, cdf, u


def make_logits(rows: int, vocab: int, gen: torch.Generator, *, flat: bool = False) -> torch.Tensor:
    """LM-like rows (a few ids far ahead of a noisy tail) or flat ones, with padded columns that would win."""
    x = torch.randn(rows, vocab + PAD, generator=gen) * 2
    if not flat:
        for r in range(rows):
            ids = torch.randperm(vocab, generator=gen)[:20]
            x[r, ids] += torch.linspace(9, 2, 20)
    x[:, vocab:] = PAD_LOGIT
    return x


def run(ps: list[ResolvedParams], *, vocab: int = 600, steps: int = 12, flat: bool = False, seed: int = 0,
        dtype: torch.dtype = torch.float32) -> list[list[int]]:
    """Runs the sampler and the reference side by side over `steps` steps of one batch; returns each row's tokens."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, vocab, (30,), generator=gen).tolist() for _ in ps]
    states = [SamplingState(p, prompt, EOS, vocab) for p, prompt in zip(ps, prompts)]
    refs = [Reference(p, prompt, vocab) for p, prompt in zip(ps, prompts)]
    sampler = Sampler(vocab)
    tokens: list[list[int]] = [[] for _ in ps]
    for _ in range(steps):
        logits = make_logits(len(ps), vocab, gen, flat=flat).to(dtype)
        out = sampler.sample(logits.clone(), states)
        assert len(out) == len(ps)
        for i, ((token, lp), ref) in enumerate(zip(out, refs)):
            want, want_lp, want_top, cdf, u = ref.step(logits[i].float())
            assert 0 <= token < vocab
            if token != want:  # only where float rounding puts the uniform on a boundary of the cdf
                assert cdf is not None, (i, ps[i], token, want)
                near = min(abs(cdf[j].item() - u) for j in (token, want, token - 1, want - 1) if 0 <= j < vocab)
                assert near < 1e-6, (i, ps[i], token, want)
            if ps[i].logprobs is None:
                assert lp is None
            else:
                if token != want:
                    want_lp = torch.log_softmax(logits[i, :vocab].float(), 0)[token].item()
                assert lp.logprob == pytest.approx(want_lp, abs=1e-5)
                assert [t for t, _ in lp.top] == [t for t, _ in want_top]
                assert [v for _, v in lp.top] == pytest.approx([v for _, v in want_top], abs=1e-5)
            states[i].observe(token)
            ref.generated.append(token)
            tokens[i].append(token)
    return tokens


GREEDY_KNOBS = {
    "plain": {},
    "repetition>1": {"repetition_penalty": 1.8},
    "repetition<1": {"repetition_penalty": 0.6},
    "frequency": {"frequency_penalty": 1.5},
    "presence": {"presence_penalty": -1.5},
    "bias": {"logit_bias": {3: 8.0, 17: -50.0, 599: 4.5}},
    "min_tokens": {"min_tokens": 6, "stop_token_ids": (7, 11)},
    "logprobs": {"logprobs": 4},
    "everything": {"repetition_penalty": 1.3, "frequency_penalty": 0.7, "presence_penalty": 0.4,
                   "logit_bias": {9: 3.0}, "min_tokens": 4, "logprobs": 0},
}


@pytest.mark.parametrize("knobs", GREEDY_KNOBS.values(), ids=GREEDY_KNOBS.keys())
def test_greedy_matches_the_reference_exactly(knobs):
    run([params(**knobs) for _ in range(3)], steps=15)


def test_penalty_state_outgrows_its_first_buffers():
    # max_tokens=1: the state's buffers start at 16 ids; 40 steps of distinct-ish tokens grow them twice
    knobs = {"repetition_penalty": 1.5, "frequency_penalty": 2.0, "presence_penalty": 1.0, "max_tokens": 1}
    tokens = run([params(**knobs), params(temperature=1.0, seed=3, **knobs)], steps=40, flat=True)
    assert all(len(set(t)) > 32 for t in tokens)


SAMPLING_KNOBS = {
    "temperature": {"temperature": 0.7},
    "hot": {"temperature": 2.5},
    "top_k": {"temperature": 1.0, "top_k": 12},
    "top_k=1": {"temperature": 1.3, "top_k": 1},
    "top_p": {"temperature": 1.0, "top_p": 0.8},
    "min_p": {"temperature": 1.0, "min_p": 0.05},
    "min_p=1": {"temperature": 1.0, "min_p": 1.0},
    "top_k+top_p": {"temperature": 0.9, "top_k": 15, "top_p": 0.7},
    "top_k+min_p": {"temperature": 0.9, "top_k": 15, "min_p": 0.2},
    "top_p+min_p": {"temperature": 1.2, "top_p": 0.9, "min_p": 0.02},
    "penalties": {"temperature": 1.0, "top_p": 0.95, "repetition_penalty": 1.4, "frequency_penalty": 0.8,
                  "presence_penalty": 0.5, "logit_bias": {4: 6.0}, "min_tokens": 5, "logprobs": 2},
}


@pytest.mark.parametrize("knobs", SAMPLING_KNOBS.values(), ids=SAMPLING_KNOBS.keys())
def test_sampling_matches_the_reference(knobs):
    run([params(seed=s, **knobs) for s in (1, 2, 3)], steps=15)


MIXED = [
    params(),
    params(repetition_penalty=1.5, logprobs=3),
    params(temperature=0.8, seed=11),
    params(temperature=1.0, top_k=5, seed=12),
    params(temperature=1.0, top_k=40, top_p=0.9, seed=13, logprobs=0),
    params(temperature=1.1, top_p=0.85, seed=14),
    params(temperature=0.9, min_p=0.1, seed=15, frequency_penalty=0.5),
    params(min_tokens=5, stop_token_ids=(1,), logit_bias={2: 5.0}),
    params(temperature=1.0, top_k=5, top_p=0.5, seed=16, presence_penalty=1.0),
]


@pytest.mark.parametrize("vocab", [600, 3000])  # 3000: the dense draw goes through block sums
def test_mixed_batch_matches_the_reference(vocab):
    run(MIXED, vocab=vocab, steps=12)


@pytest.mark.parametrize("flat", [False, True], ids=["peaked", "flat"])
def test_large_vocabulary_paths_match_the_reference(flat):
    # 20000 ids, 4 rows of each kind: argmax and top-k through block maxima; top_p looks among the best 32,
    # 256, then 4096 before it sorts the row (flat rows)
    kinds = [{}, {"logprobs": 5}, {"temperature": 1.0, "top_p": 0.9},
             {"temperature": 1.0, "top_p": 0.99, "min_p": 0.001}, {"temperature": 1.0, "top_k": 30}]
    run([params(seed=s, **k) for k in kinds for s in range(4)], vocab=20000, steps=3, flat=flat)


def test_block_maxima_find_what_argmax_and_topk_find():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(8, 20000 + PAD, generator=gen).round(decimals=1)[:, :20000]  # ties everywhere; padded rows
    x[3, -1] = 99.0  # the best in the short last block
    x[4, 100] = x[4, 15000] = 99.0  # a tie for the best: the first wins
    assert _block(x, 1) and _block(x, 20)
    assert torch.equal(_argmax(x), x.argmax(dim=-1))
    for k in (1, 5, 20):
        vals, ids = _topk(x, k)
        want, _ = x.topk(k, dim=-1)
        assert torch.equal(vals, want)
        assert torch.equal(x.gather(1, ids), vals)  # the ids name those values (on a tie, maybe other ids)
        assert all(len(set(row)) == k for row in ids.tolist())


def test_half_precision_logits():
    run([params(), params(temperature=1.0, top_p=0.9, logprobs=2, seed=4)], steps=6, dtype=torch.bfloat16)


def _tokens_of(p: ResolvedParams, rows: list[torch.Tensor], batch_with: list[ResolvedParams], position: int,
               vocab: int) -> list[int]:
    """The tokens of a row with params p when it shares each step with rows of `batch_with`."""
    gen = torch.Generator().manual_seed(99)
    states = [SamplingState(q, [1, 2, 3], EOS, vocab) for q in batch_with]
    states.insert(position, SamplingState(p, [1, 2, 3], EOS, vocab))
    sampler = Sampler(vocab)
    out = []
    for row in rows:
        logits = make_logits(len(states), vocab, gen)
        logits[position] = row
        tokens = sampler.sample(logits, states)
        for s, (t, _) in zip(states, tokens):
            s.observe(t)
        out.append(tokens[position][0])
    return out


SEEDED = {"dense": {"temperature": 1.0}, "top_k": {"temperature": 1.0, "top_k": 50},
          "top_p": {"temperature": 1.0, "top_p": 0.9},
          "min_p+top_p": {"temperature": 1.0, "min_p": 0.05, "top_p": 0.95}}


@pytest.mark.parametrize("knobs", SEEDED.values(), ids=SEEDED.keys())
def test_a_seeded_row_gives_the_same_tokens_in_any_batch(knobs):
    vocab = 3000
    gen = torch.Generator().manual_seed(5)
    rows = list(make_logits(20, vocab, gen, flat=True))
    p = params(seed=1234, **knobs)
    alone = _tokens_of(p, rows, [], 0, vocab)
    neighbours = [params(), params(temperature=0.7, top_k=10, seed=1), params(temperature=1.0, top_p=0.5, seed=2),
                  params(temperature=1.0, seed=3, logprobs=3), params(temperature=2.0, top_k=50, seed=4),
                  params(repetition_penalty=1.2, temperature=1.0, seed=5)]
    assert _tokens_of(p, rows, neighbours, 3, vocab) == alone
    assert _tokens_of(p, rows, neighbours[::2], 1, vocab) == alone
    assert len(set(alone)) > 5  # a real draw, not a constant


def test_unseeded_rows_draw_differently():
    vocab = 600
    logits = make_logits(1, vocab, torch.Generator().manual_seed(0), flat=True).expand(2, -1)
    states = [SamplingState(params(temperature=1.0, seed=None), [1], EOS, vocab) for _ in range(2)]
    sampler = Sampler(vocab)
    draws = [sampler.sample(logits.clone(), states) for _ in range(10)]
    assert [a for (a, _), _ in draws] != [b for _, (b, _) in draws]


def test_padded_columns_are_never_sampled_nor_counted():
    vocab = 600
    logits = make_logits(4, vocab, torch.Generator().manual_seed(1), flat=True)
    ps = [params(logprobs=20), params(temperature=5.0, logprobs=20, seed=1),
          params(temperature=5.0, top_k=vocab + PAD, top_p=1.0, seed=2), params(temperature=5.0, top_p=0.999, seed=3)]
    states = [SamplingState(p, [1], EOS, vocab) for p in ps]
    sampler = Sampler(vocab)
    for _ in range(20):
        for i, (token, lp) in enumerate(sampler.sample(logits.clone(), states)):
            assert token < vocab
            if lp is not None:  # normalised over the vocabulary alone: a padded column would make it about -1e4
                raw = torch.log_softmax(logits[i, :vocab], 0)
                assert lp.logprob == pytest.approx(raw[token].item(), abs=1e-5)
                assert len(lp.top) == 20 and all(t < vocab for t, _ in lp.top)


def test_logprobs_describe_the_raw_logits_best_first():
    vocab = 600
    logits = make_logits(3, vocab, torch.Generator().manual_seed(2))
    knobs = {"temperature": 0.3, "top_k": 3, "repetition_penalty": 2.0, "logit_bias": {0: 30.0}, "seed": 7}
    states = [SamplingState(params(logprobs=n, **knobs), [1, 2], EOS, vocab) for n in (None, 0, 5)]
    out = Sampler(vocab).sample(logits.clone(), states)
    assert out[0][1] is None
    assert out[1][1].top == ()
    assert out[0][0] == out[1][0] == out[2][0] == 0  # the bias decided the token ...
    raw = torch.log_softmax(logits[2, :vocab], 0)
    assert out[2][1].logprob == pytest.approx(raw[0].item())  # ... but not its logprob
    vals, ids = raw.topk(5)
    assert [t for t, _ in out[2][1].top] == ids.tolist()
    assert [v for _, v in out[2][1].top] == pytest.approx(vals.tolist())
    assert [v for _, v in out[2][1].top] == sorted((v for _, v in out[2][1].top), reverse=True)


@pytest.mark.parametrize("ignore_eos", [False, True])
def test_min_tokens_masks_stop_ids_and_eos(ignore_eos):
    vocab = 50
    p = params(min_tokens=3, stop_token_ids=(7,), ignore_eos=ignore_eos)
    state = SamplingState(p, [1], EOS, vocab)
    assert state.stop_ids == ({7} if ignore_eos else {7, EOS[0]})
    logits = torch.zeros(1, vocab)
    logits[0, EOS[0]], logits[0, 7], logits[0, 9] = 3.0, 2.0, 1.0
    sampler = Sampler(vocab)
    tokens = []
    for _ in range(5):
        token = sampler.sample(logits.clone(), [state])[0][0]
        state.observe(token)
        tokens.append(token)
    assert tokens == [9, 9, 9, EOS[0], EOS[0]]
    assert state.generated == 5


def test_stop_ids_out_of_the_vocabulary_are_not_masked():
    state = SamplingState(params(min_tokens=2, stop_token_ids=(3, 1000)), [1], (5, 2000), 50)
    assert state.stop_ids == {3, 5, 1000, 2000}
    assert Sampler(50).sample(torch.zeros(1, 50), [state])[0][0] == 0


def test_an_infinite_bias_forces_its_token():
    vocab = 600
    logits = make_logits(2, vocab, torch.Generator().manual_seed(3))
    ps = [params(temperature=1.0, logit_bias={42: math.inf}, seed=s) for s in (1, 2)]
    ps[1] = dataclasses.replace(ps[1], top_k=10, logit_bias={42: math.inf, 43: math.inf})
    states = [SamplingState(p, [1], EOS, vocab) for p in ps]
    sampler = Sampler(vocab)
    picks = [sampler.sample(logits.clone(), states) for _ in range(30)]
    assert {a for (a, _), _ in picks} == {42}
    assert {b for _, (b, _) in picks} == {42, 43}


def test_the_greedy_fast_path_leaves_the_logits_alone_and_takes_the_first_maximum():
    vocab = 20000  # blocked argmax
    logits = torch.randn(3, vocab + PAD)
    logits[:, vocab:] = PAD_LOGIT
    logits[0, 17000] = logits[0, 9000] = 50.0
    logits[1, vocab - 1] = 50.0  # in the short last block
    before = logits.clone()
    states = [SamplingState(params(), [1], EOS, vocab) for _ in range(3)]
    out = Sampler(vocab).sample(logits, states)
    assert [t for t, _ in out] == [9000, vocab - 1, int(logits[2, :vocab].argmax())]
    assert torch.equal(logits, before)


@pytest.mark.parametrize("knobs", [
    {"temperature": 0.9, "top_p": 0.9, "seed": 11},
    {"temperature": 1.0, "top_k": 20, "seed": 12, "min_tokens": 14},  # masked steps draw too
    {"temperature": 1.0, "seed": 13, "logit_bias": {42: math.inf, 43: math.inf}},  # forced rows draw too
    {"temperature": 0.0, "frequency_penalty": 1.5, "presence_penalty": 0.5, "min_tokens": 14},
    {"temperature": 0.7, "seed": 14, "frequency_penalty": 1.0, "repetition_penalty": 1.3, "logprobs": 2},
])
def test_a_resumed_state_continues_where_the_unbroken_one_was(knobs):
    """A sequence resumed after k tokens (prompt + those k, resumed_tokens=k, the budget reduced by k) samples
    what the unbroken sequence samples from step k on: the same penalty counts, the same place in the seeded
    stream, and the min_tokens mask still counts only new tokens."""
    vocab, n, k = 600, 24, 10
    gen = torch.Generator().manual_seed(5)
    base = make_logits(1, vocab, gen, flat=True)  # steps alike (a model repeats itself): the penalties matter
    steps = [base + 0.5 * make_logits(1, vocab, gen, flat=True) for _ in range(n)]
    prompt = [1, 2, 3]
    p = params(max_tokens=n, **knobs)
    if p.min_tokens:
        for x in steps:
            x[0, EOS[0]] = 12.0  # EOS would win: only the min_tokens mask keeps it out
    sampler = Sampler(vocab)
    whole = SamplingState(p, prompt, EOS, vocab)
    tokens, at_k = [], None
    for i, x in enumerate(steps):
        if i == k:
            at_k = whole.generator.get_state()
        token = sampler.sample(x.clone(), [whole])[0][0]
        whole.observe(token)
        tokens.append(token)
    assert len(set(tokens[k:])) > 1  # a real draw / real penalties, not a constant
    if p.min_tokens:  # the mask decided steps before and after k
        assert EOS[0] not in tokens[:p.min_tokens] and EOS[0] in tokens[p.min_tokens:]
    rp = dataclasses.replace(p, max_tokens=n - k, min_tokens=max(p.min_tokens - k, 0), resumed_tokens=k)
    resumed = SamplingState(rp, prompt + tokens[:k], EOS, vocab)
    assert resumed.generated == 0 and resumed.masking == (p.min_tokens > k)
    if p.seed is not None and p.temperature > 0:
        assert torch.equal(resumed.generator.get_state(), at_k)
    rest = []
    for x in steps[k:]:
        token = sampler.sample(x.clone(), [resumed])[0][0]
        resumed.observe(token)
        rest.append(token)
    assert rest == tokens[k:]
