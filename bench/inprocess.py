"""Engine limit: the same model's batched generation in one process, no services, no network.

    python bench/inprocess.py --prompts FILE.json [--levels 1,8,32] [--max-tokens 64] [--threads N]
    (FILE: {"prompt_ids": [[...], ...]}, the chats as the tokenizer's RenderChat renders them; prints JSON)

Two ways, both greedy with exactly `max-tokens` new tokens per prompt, over every prompt of the file:

* `hf_generate`: transformers' `generate` on left-padded batches of `level` prompts, the prompts sorted by
  length so a batch pads as little as it can (the model's best static batching);
* `engine`: tokenway's own TransformersEngine (continuous batching, the scheduler the inference service
  runs) driven directly with `level` concurrent requests (ignore_eos).

Both use `--threads` torch threads (default: every core: nothing else runs meanwhile). Output tokens/s is
all new tokens / wall time; `engine` also reports TTFT and inter-token gaps. `best` is the faster of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import Record, summarize  # noqa: E402


def hf_generate(model_dir: str, prompt_ids: list[list[int]], batch: int, max_tokens: int) -> dict:
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))

    def batches():
        for k in range(0, len(order), batch):
            rows = [prompt_ids[i] for i in order[k:k + batch]]
            width = max(map(len, rows))
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            yield ids, mask

    kwargs = dict(max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False, pad_token_id=pad)
    with torch.inference_mode():
        ids, mask = next(batches())
        model.generate(input_ids=ids, attention_mask=mask, **dict(kwargs, max_new_tokens=4, min_new_tokens=4))  # warm
        new = 0
        t0 = time.perf_counter()
        for ids, mask in batches():
            out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            new += (out.shape[1] - ids.shape[1]) * out.shape[0]
        wall = time.perf_counter() - t0
    return {"output_tokens": new, "wall_s": round(wall, 4), "tok_s": round(new / wall, 2), "batch": batch}


async def engine(model_dir: str, prompt_ids: list[list[int]], concurrency: int, max_tokens: int, threads: int) -> dict:
    from tokenway_inference.engines.base import GenerateRequest, SamplingOptions, StoppingOptions  # noqa: PLC0415
    from tokenway_inference.engines.transformers_engine import TransformersEngine  # noqa: PLC0415

    eng = TransformersEngine(model_dir, max_batch_size=max(32, concurrency), threads=threads)
    await eng.start()
    try:
        todo = iter(range(len(prompt_ids)))
        records: list[Record] = []

        async def worker() -> None:
            for i in todo:
                rec = Record(start=time.perf_counter())
                req = GenerateRequest(f"r{i}", tuple(prompt_ids[i]), SamplingOptions(temperature=0.0),
                                      StoppingOptions(max_tokens=max_tokens, ignore_eos=True))
                async for chunk in eng.generate(req):
                    if chunk.token_ids:
                        rec.chunks.append(time.perf_counter())
                        rec.tokens += len(chunk.token_ids)
                rec.end = time.perf_counter()
                records.append(rec)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    finally:
        await eng.close()
    s = summarize(records, wall)
    return {k: s[k] for k in ("output_tokens", "wall_s", "tok_s", "ttft_p50_ms", "itl_p50_ms", "tpot_p50_ms", "errors")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=Path, required=True)
    ap.add_argument("--model", default=os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway" / "models" / "tokenway-tiny")))
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    import torch  # noqa: PLC0415
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    prompt_ids = json.loads(args.prompts.read_text())["prompt_ids"]
    out = {"threads": args.threads, "prompts": len(prompt_ids), "levels": {}}
    for c in (int(x) for x in args.levels.split(",")):
        hf = hf_generate(args.model, prompt_ids, c, args.max_tokens)
        en = asyncio.run(engine(args.model, prompt_ids, c, args.max_tokens, args.threads))
        best = max((("hf_generate", hf), ("engine", en)), key=lambda kv: kv[1]["tok_s"] or 0)
        out["levels"][str(c)] = {"hf_generate": hf, "engine": en, "best": best[0], "best_tok_s": best[1]["tok_s"]}
        print(f"  in-process c={c}: hf_generate {hf['tok_s']:.0f} tok/s, engine {en['tok_s']:.0f} tok/s",
              file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
