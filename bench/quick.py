"""First speed figures: end to end through the orchestrator vs. the same model in-process.

    python bench/quick.py [--address 127.0.0.1:50051] [--max-tokens 64] [--requests 16]

Needs the suite up (`make up`). For concurrency 1 and 8 it sends streaming chat requests
(ignore_eos, fixed max_tokens) and reports output tokens/s (all output tokens / wall time) and time
to first token (p50, p90). Then it runs the same model in this process with transformers'
`generate` on padded batches of 1 and 8 for the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import grpc
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2, chat_pb2_grpc, common_pb2

PROMPTS = [
    "Tell me about the fast model server.",
    "Write a short poem about streams and queues.",
    "Explain continuous batching to a new engineer in three sentences.",
    "What is a deadline, and why should every call carry one?",
]


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


async def one(stub, i: int, max_tokens: int) -> tuple[float, int, float]:
    req = chat_pb2.StreamChatCompletionRequest(
        model="tokenway-tiny", messages=[chat_pb2.ChatRequestMessage(role="user", content=text_value(PROMPTS[i % len(PROMPTS)]))],
        max_tokens=max_tokens, ignore_eos=True, temperature=0.8, seed=i,
        stream_options=common_pb2.StreamOptions(include_usage=True))
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    async for chunk in stub.StreamChatCompletion(req, timeout=300):
        if ttft is None and chunk.choices and chunk.choices[0].delta.content:
            ttft = time.perf_counter() - t0
        if chunk.HasField("usage"):
            tokens = chunk.usage.completion_tokens
    return ttft or 0.0, tokens, time.perf_counter() - t0


async def e2e(address: str, concurrency: int, requests: int, max_tokens: int) -> dict:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = chat_pb2_grpc.ChatServiceStub(ch)
        await one(stub, 0, 4)  # warm the path
        sem = asyncio.Semaphore(concurrency)

        async def guarded(i):
            async with sem:
                return await one(stub, i, max_tokens)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(guarded(i) for i in range(requests)))
        wall = time.perf_counter() - t0
    ttfts = sorted(r[0] for r in results)
    return {"tok_s": sum(r[1] for r in results) / wall, "ttft_p50_ms": 1e3 * statistics.median(ttfts),
            "ttft_p90_ms": 1e3 * ttfts[int(0.9 * (len(ttfts) - 1))], "requests": requests}


def in_process(model_dir: str, batch: int, max_tokens: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], tokenize=False,
                                     add_generation_prompt=True) for i in range(batch)]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=True, temperature=0.8,
                  pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        model.generate(**enc, **dict(kwargs, max_new_tokens=4, min_new_tokens=4))
        t0 = time.perf_counter()
        model.generate(**enc, **kwargs)
        wall = time.perf_counter() - t0
    return batch * max_tokens / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=f"127.0.0.1:{os.environ.get('TOKENWAY_ORCHESTRATOR_PORT', '50051')}")
    parser.add_argument("--model", default=os.environ.get("TOKENWAY_MODEL", ".tokenway/models/tokenway-tiny"))
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported "
                                                              "(this shared VM's speed varies run to run)")
    args = parser.parse_args()
    print(f"end to end through the orchestrator (streaming chat, {args.max_tokens} output tokens, ignore_eos; "
          f"median of {args.repeat} runs):")
    for c in (1, 8):
        runs = sorted((asyncio.run(e2e(args.address, c, max(args.requests, c), args.max_tokens))
                       for _ in range(args.repeat)), key=lambda r: r["tok_s"])
        r = runs[len(runs) // 2]
        spread = f"{runs[0]['tok_s']:.0f}-{runs[-1]['tok_s']:.0f}"
        print(f"  concurrency {c}: {r['tok_s']:7.1f} output tok/s ({spread})   TTFT p50 {r['ttft_p50_ms']:6.1f} ms"
              f"   p90 {r['ttft_p90_ms']:6.1f} ms   ({r['requests']} requests)")
    print(f"same model in-process (transformers generate, padded batch, sampling; median of {args.repeat}):")
    for b in (1, 8):
        runs = sorted(in_process(args.model, b, args.max_tokens) for _ in range(args.repeat))
        print(f"  batch {b}:       {runs[len(runs) // 2]:7.1f} output tok/s ({runs[0]:.0f}-{runs[-1]:.0f})")


if __name__ == "__main__":
    main()
