"""The ragged attention function against transformers' own attention, on small random models.

A step mixes prefill chunks and decode tokens of several sequences in one flat row, with KV in a pool;
each sequence's logits must equal a plain full-sequence forward of the same model."""

from __future__ import annotations

import random

import pytest
import torch

from tokenway_inference.engines import ragged
from tokenway_inference.engines.kvpool import KVPool


def _models(kind: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig  # noqa: PLC0415

    common = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    cfg = LlamaConfig(**common) if kind == "llama" else MistralConfig(sliding_window=7, **common)
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    ragged.register()
    cfg_r = type(cfg).from_dict(cfg.to_dict())
    mine = AutoModelForCausalLM.from_config(cfg_r, attn_implementation=ragged.NAME).eval()
    mine.load_state_dict(ref.state_dict())
    return ref, mine


class Runner:
    def __init__(self, model) -> None:
        cfg = model.config
        self.model = model
        self.pool = KVPool(layers=cfg.num_hidden_layers, kv_heads=cfg.num_key_value_heads,
                           head_dim=cfg.hidden_size // cfg.num_attention_heads, tokens=4096, dtype=torch.float32)
        self.regions, self.cached = {}, {}

    def step(self, work: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
        segs, ids, pos, slots, keep = [], [], [], [], []
        for name, toks in work:
            if name not in self.regions:
                self.regions[name], self.cached[name] = self.pool.allocate(400), 0
            slot0, ctx = self.pool.slot(self.regions[name]), self.cached[name]
            segs.append(ragged.Segment(len(ids), len(toks), slot0, ctx))
            ids += toks
            pos += range(ctx, ctx + len(toks))
            slots += range(slot0 + ctx, slot0 + ctx + len(toks))
            keep.append(len(ids) - 1)
            self.cached[name] = ctx + len(toks)
        layout = ragged.StepLayout(segs, torch.tensor(slots), self.pool.k, self.pool.v)
        with torch.inference_mode(), ragged.use_layout(layout):
            logits = self.model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([pos]), use_cache=False,
                                logits_to_keep=torch.tensor(keep)).logits[0]
        return {name: logits[i] for i, (name, _) in enumerate(work)}


@pytest.mark.parametrize("kind", ["llama", "mistral-sliding-window"])
def test_mixed_chunked_steps_match_full_forwards(kind):
    ref, mine = _models("llama" if kind == "llama" else "mistral")
    rng = random.Random(1)
    seqs = {name: [rng.randrange(300) for _ in range(n)] for name, n in (("a", 5), ("b", 40), ("c", 90))}
    r = Runner(mine)
    got = {}
    # a whole; b's first chunk; c's first chunk -- then b's rest with c's second -- then c's rest
    got.update(r.step([("a", seqs["a"]), ("b", seqs["b"][:13]), ("c", seqs["c"][:30])]))
    got.update(r.step([("b", seqs["b"][13:]), ("c", seqs["c"][30:61])]))
    got.update(r.step([("c", seqs["c"][61:])]))
    # then three decode steps of all three together, one new token each
    for _ in range(3):
        for name in seqs:
            seqs[name].append(int(got[name].argmax()))
        got = r.step([(name, toks[-1:]) for name, toks in seqs.items()])
    with torch.inference_mode():
        for name, toks in seqs.items():
            want = ref(input_ids=torch.tensor([toks])).logits[0, -1]
            assert torch.allclose(got[name], want, atol=1e-4, rtol=1e-4), (name, (got[name] - want).abs().max())


def test_an_attention_variant_it_does_not_compute_is_refused():
    from transformers import AutoModelForCausalLM, Gemma2Config  # noqa: PLC0415

    cfg = Gemma2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, attn_logit_softcapping=50.0)
    ragged.register()
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=ragged.NAME).eval()
    with pytest.raises(NotImplementedError, match="softcap"):
        Runner(model).step([("a", [1, 2, 3])])


def test_a_bfloat16_prefill_writes_into_a_float32_pool():
    """The prompt through a bfloat16 copy of the model, the next token through the float32 one: attention
    runs at the pool's dtype and the result stays close to an all-float32 forward."""
    ref, mine = _models("llama")
    ragged.register()
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    bf16 = AutoModelForCausalLM.from_config(mine.config, attn_implementation=ragged.NAME).eval()
    bf16.load_state_dict(mine.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    bf16.model.rotary_emb.inv_freq = mine.model.rotary_emb.inv_freq.clone()  # as from_pretrained keeps it
    rng = random.Random(2)
    prompt = [rng.randrange(300) for _ in range(40)]
    r = Runner(mine)
    assert r.pool.k.dtype == torch.float32
    r.model = bf16
    first = r.step([("a", prompt)])["a"]
    assert first.dtype == torch.bfloat16
    r.model = mine
    nxt = int(first.float().argmax())
    got = r.step([("a", [nxt])])["a"]
    with torch.inference_mode():
        want = ref(input_ids=torch.tensor([prompt + [nxt]])).logits[0, -1]
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, atol=5e-2), (got - want).abs().max()
