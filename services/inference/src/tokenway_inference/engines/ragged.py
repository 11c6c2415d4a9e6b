"""Attention over a ragged batch whose KV lives in a `KVPool`, as a transformers attention function.

A step runs the model once over every scheduled token of every sequence, flattened into one row
(`input_ids` [1, N], each token with its own position id): decode tokens and prefill chunks of several
prompts together. The model's own code does everything token-wise (embeddings, norms, projections,
RoPE, MLP); only attention needs to know which tokens belong together, and that is this function,
registered with transformers' `AttentionInterface` as `tokenway_ragged`. For layer l it
  1. writes the step's new keys and values into their pool slots (in place), then
  2. for each sequence, attends its queries to a *view* of its region of the pool — the real length
     of that sequence, no padding, no copy — causally within a prefill chunk, within the model's
     sliding window when it has one.
transformers builds no mask for an attention function it does not know, so none is materialised.
"""

from __future__ import annotations

import dataclasses
import threading

import torch
import torch.nn.functional as F

NAME = "tokenway_ragged"

_current = threading.local()

#: Attention variants some models ask for that this function does not compute (logit soft-capping, sinks).
UNSUPPORTED = ("softcap", "s_aux", "sinks")


@dataclasses.dataclass(frozen=True)
class Segment:
    """One sequence's share of a step: `n` query tokens at flat offset `q0`, at positions
    [ctx, ctx + n) of the sequence, whose position 0 is pool slot `slot0`."""

    q0: int
    n: int
    slot0: int
    ctx: int


@dataclasses.dataclass
class StepLayout:
    segments: list[Segment]
    slots: torch.Tensor  # [N] long: the pool slot of every flat token
    k: torch.Tensor  # the pool's keys, [layers, kv_heads, slots, head_dim]
    v: torch.Tensor


class use_layout:  # noqa: N801 - a context manager used like a function
    """Makes `layout` the one the attention function of this thread reads."""

    def __init__(self, layout: StepLayout) -> None:
        self.layout = layout

    def __enter__(self) -> StepLayout:
        _current.layout = self.layout
        return self.layout

    def __exit__(self, *exc) -> None:
        _current.layout = None


def ragged_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     sliding_window: int | None = None, **kwargs: object) -> tuple[torch.Tensor, None]:
    """query [1, H, N, D], key/value [1, kv_heads, N, D] (RoPE applied) -> ([1, N, H, D], None)."""
    for name in UNSUPPORTED:
        if kwargs.get(name) is not None:  # a model whose attention this does not compute: never a wrong answer
            raise NotImplementedError(f"the transformers engine's attention does not support `{name}` "
                                      f"({type(module).__name__}); serve this model with the vllm engine")
    layout: StepLayout = _current.layout
    layer = module.layer_idx
    pk, pv = layout.k[layer], layout.v[layer]
    out_dtype = query.dtype
    if pk.dtype != out_dtype:  # a prefill model in another dtype than the pool: attention runs at the pool's
        query, key, value = query.to(pk.dtype), key.to(pk.dtype), value.to(pk.dtype)
    pk.index_copy_(1, layout.slots, key[0])
    pv.index_copy_(1, layout.slots, value[0])
    heads, n_tokens, dim = query.shape[1], query.shape[2], query.shape[3]
    kv_heads = pk.shape[0]
    group = heads // kv_heads
    out = query.new_empty(n_tokens, heads, dim)
    q_all = query[0]
    # 4-d inputs: torch's CPU flash kernel (3-d ones take the math path, which copies K to scale it)
    for seg in layout.segments:
        end = seg.ctx + seg.n
        first = 0 if not sliding_window else max(0, end - sliding_window - seg.n + 1)
        k = pk[None, :, seg.slot0 + first:seg.slot0 + end]
        v = pv[None, :, seg.slot0 + first:seg.slot0 + end]
        if seg.n == 1:  # decode: the `group` query heads of one KV head are that head's query rows
            q = q_all[:, seg.q0].reshape(1, kv_heads, group, dim)
            o = F.scaled_dot_product_attention(q, k, v, scale=scaling)
            out[seg.q0] = o.view(heads, dim)
            continue
        q = q_all[None, :, seg.q0:seg.q0 + seg.n]
        if seg.ctx == 0 and first == 0 and not sliding_window:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=group > 1)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=_mask(seg.n, seg.ctx, first, end, sliding_window),
                                               scale=scaling, enable_gqa=group > 1)
        out[seg.q0:seg.q0 + seg.n] = o[0].transpose(0, 1)
    return out[None].to(out_dtype), None


def _mask(n: int, ctx: int, first: int, end: int, window: int | None) -> torch.Tensor:
    """[n, end - first] bool: query i (position ctx + i) sees keys at positions p with p <= ctx + i and,
    with a window, p > ctx + i - window."""
    qpos = torch.arange(ctx, ctx + n)[:, None]
    kpos = torch.arange(first, end)[None, :]
    mask = kpos <= qpos
    if window:
        mask &= kpos > qpos - window
    return mask


def register() -> None:
    from transformers import AttentionInterface  # noqa: PLC0415 - slow import, engines only

    AttentionInterface.register(NAME, ragged_attention)
