"""Where a step of the transformers engine spends its time: one decode step of 32 sequences and one prefill
chunk of 512 tokens, through the engine's own model call (ragged attention over the KV pool), by torch op.

    python bench/profile_engine.py [--model DIR] [--threads 1] [--dtype float32] [--out FILE]

Prints (and writes to --out) the wall time per step and tokens/s, then torch.profiler's table of the ops
that take the time. The sequences' lengths are those of `make bench`'s prompts (seeded, 100-1300 tokens).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway/models/tokenway-tiny")))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    from tokenway_inference.engines import ragged  # noqa: PLC0415
    from tokenway_inference.engines.kvpool import KVPool  # noqa: PLC0415

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    ragged.register()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype),
                                                 attn_implementation=ragged.NAME).eval()
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    pool = KVPool(layers=cfg.num_hidden_layers, kv_heads=cfg.num_key_value_heads, head_dim=head_dim, tokens=65536,
                  dtype=model.dtype)
    rng = random.Random(7)
    lens = [rng.randint(100, 1300) for _ in range(32)]
    regions = [pool.allocate(n + 64) for n in lens]
    out: list[str] = [f"# profile_engine: {Path(args.model).name}, {args.dtype}, {args.threads} torch thread(s), "
                      f"torch {torch.__version__}", f"command: python {' '.join(sys.argv)}", ""]

    def call(work: list[tuple[int, int, int]]):
        segs, ids, pos, slots, keep = [], [], [], [], []
        for i, ctx, n in work:
            slot0 = pool.slot(regions[i])
            segs.append(ragged.Segment(len(ids), n, slot0, ctx))
            ids += [5] * n
            pos += range(ctx, ctx + n)
            slots += range(slot0 + ctx, slot0 + ctx + n)
            keep.append(len(ids) - 1)
        layout = ragged.StepLayout(segs, torch.tensor(slots), pool.k, pool.v)
        with torch.inference_mode(), ragged.use_layout(layout):
            model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([pos]), use_cache=False,
                  logits_to_keep=torch.tensor(keep))

    for name, work, reps in (("decode, 32 sequences of 100-1300 tokens (mean %d)" % (sum(lens) / 32),
                              [(i, lens[i], 1) for i in range(32)], 20),
                             ("prefill, one 512-token chunk", [(31, 0, 512)], 5),
                             ("prefill, a 512-token chunk after 512 cached", [(31, 512, 512)], 5)):
        call(work)
        t = time.perf_counter()
        for _ in range(reps):
            call(work)
        ms = (time.perf_counter() - t) / reps * 1000
        tokens = sum(n for _, _, n in work)
        out += [f"## {name}: {ms:.1f} ms per step, {tokens / ms * 1000:.0f} tokens/s", ""]
        with torch.profiler.profile() as prof:
            for _ in range(reps):
                call(work)
        out += [prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10), ""]
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
