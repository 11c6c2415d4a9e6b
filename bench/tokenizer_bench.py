"""Tokenizer micro-benchmark, in process: encode and streaming detokenize, µs per token.

    python bench/tokenizer_bench.py [--model DIR] [--reps 7]      (prints one JSON object)

* encode: `Tokenizer.encode([text])` of a ~2k-token text (2000 at most: the model's context is 2048), the tokenizer service's own path (the Rust call on
  its thread pool, bounded in pieces); the raw Rust `tokenizers` call (`tok.rust.encode`) for reference.
  Median of `--reps x 6` calls, divided by the text's tokens.
* streaming detokenize: `DetokenizeStream.push` of 1-token chunks (one push per token, as a stream whose
  engine sends one token per message) over the ids of a ~34k-token generated-like text, timed over the
  1024 tokens that follow the first 1k, 8k and 32k tokens of the stream; without stop strings and with
  three that never match ("\\n\\nUser:", "<|im_end|>", "###"). Median of `--reps` fresh streams.
The text comes from tools/model/corpus.py (prose, code, numbers, several scripts) with its own seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "model"))

STOPS = ("\n\nUser:", "<|im_end|>", "###")
POSITIONS = (1024, 8192, 32768)
WINDOW = 1024
ENCODE_TOKENS = 2000  # ~2k, within the embedded model's 2048-token context (encode's limit)


def text_of(tok, tokens: int, seed: int) -> str:
    """Documents joined by newlines, about `tokens` tokens and not more."""
    from corpus import documents  # noqa: PLC0415 - tools/model

    parts, have = [], 0
    for doc in documents(seed=seed, count=10**6):
        n = len(tok.rust.encode(doc, add_special_tokens=False).ids) + 1
        if have + n > tokens:
            break
        parts.append(doc)
        have += n
    return "\n".join(parts)


async def measure(model: str, reps: int) -> dict:
    from tokenway_tokenizer.core import StreamOptions, Tokenizer  # noqa: PLC0415

    tok = Tokenizer.load(model)
    try:
        prompt = text_of(tok, ENCODE_TOKENS, seed=31)
        n_prompt = len(tok.rust.encode(prompt, add_special_tokens=False).ids)
        for _ in range(3):  # warm the pool and the caches
            await tok.encode([prompt])
        service, raw = [], []
        for _ in range(reps * 6):
            t = time.perf_counter()
            enc = await tok.encode([prompt])
            service.append(time.perf_counter() - t)
            t = time.perf_counter()
            tok.rust.encode(prompt, add_special_tokens=False)
            raw.append(time.perf_counter() - t)
        assert len(enc[0].token_ids) == n_prompt, (len(enc[0].token_ids), n_prompt)

        ids = tok.rust.encode(text_of(tok, POSITIONS[-1] + WINDOW + 64, seed=47), add_special_tokens=False).ids
        chunks = [[t] for t in ids[:POSITIONS[-1] + WINDOW]]
        detok: dict[str, dict[str, float]] = {}
        for variant, stops in (("no_stops", ()), ("with_stops", STOPS)):
            samples: dict[int, list[float]] = {p: [] for p in POSITIONS}
            for _ in range(reps):
                stream = tok.open_stream(StreamOptions(prompt_token_ids=(), skip_special_tokens=True, stop=stops))
                push = stream.push
                at = 0
                for p in POSITIONS:
                    for c in chunks[at:p]:
                        push(c)
                    t = time.perf_counter()
                    for c in chunks[p:p + WINDOW]:
                        push(c)
                    samples[p].append((time.perf_counter() - t) / WINDOW)
                    at = p + WINDOW
                if stream.matched_stop is not None:
                    raise RuntimeError(f"a stop string matched ({stream.matched_stop!r}): pick ones that never do")
            detok[variant] = {f"after_{p // 1024}k_us_per_token": round(statistics.median(samples[p]) * 1e6, 3)
                              for p in POSITIONS}
        return {
            "encode": {"prompt_tokens": n_prompt, "calls": reps * 6,
                       "service_us_per_token": round(statistics.median(service) / n_prompt * 1e6, 3),
                       "rust_us_per_token": round(statistics.median(raw) / n_prompt * 1e6, 3)},
            "detokenize": {"chunk_tokens": 1, "window_tokens": WINDOW, "streams": reps, "stop_strings": list(STOPS),
                           **detok},
            "vocab_size": tok.vocab_size, "byte_level": tok.byte_level,
        }
    finally:
        tok.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway" / "models" / "tokenway-tiny")))
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(measure(args.model, args.reps))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
