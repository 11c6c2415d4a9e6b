"""Greedy output of the transformers engine and the vLLM engine, side by side on the same model.

    python tools/compare_engines.py [--dtype float32] [--tokens 32]   (after make setup-vllm)

Starts one inference service per engine (the vLLM one from .tokenway/venv-vllm) on free ports, sends
the same 10 prompts greedily to both, and prints, per prompt, whether the first N tokens agree or where
they diverge. Exit status 1 if any prompt diverges.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenizers import Tokenizer
from tokenway.inference.v1 import inference_pb2 as pb
from tokenway.inference.v1 import inference_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["The quick model", "Hello, how are you today?", "Once upon a time", "In 1923 the", "def fibonacci(n):",
           "The capital of France is", "Streaming tokens over gRPC", "A long time ago in a galaxy", "Numbers: 1, 2, 3,",
           "Bonjour le monde"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(python: str, engine: str, dtype: str, model: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENWAY_MODEL=model, TOKENWAY_INFERENCE_ENGINE=engine,
               TOKENWAY_INFERENCE_DTYPE=dtype, TOKENWAY_INFERENCE_PREFILL_DTYPE=dtype, TOKENWAY_INFERENCE_METRICS_PORT="0",
               TOKENWAY_INFERENCE_THREADS=os.environ.get("TOKENWAY_INFERENCE_THREADS", "1"),  # 0 on GPUs
               VLLM_CACHE_ROOT=str(ROOT / ".tokenway" / "vllm-cache"))
    with log.open("wb") as out:
        proc = subprocess.Popen([python, "-m", "tokenway_inference", "--port", str(port)], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    return proc, port


def ready_stub(port: int) -> inference_pb2_grpc.InferenceServiceStub:
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    watch = health_pb2_grpc.HealthStub(ch).Watch(
        health_pb2.HealthCheckRequest(service="tokenway.inference.v1.InferenceService"), wait_for_ready=True, timeout=900)
    for r in watch:
        if r.status == health_pb2.HealthCheckResponse.SERVING:
            watch.cancel()
            break
    return inference_pb2_grpc.InferenceServiceStub(ch)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default=os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway" / "models" / "tokenway-tiny")))
    args = ap.parse_args()
    vllm_py = Path(os.environ.get("TOKENWAY_VLLM_VENV", ROOT / ".tokenway" / "venv-vllm")) / "bin" / "python"
    if not vllm_py.exists():
        sys.exit(f"{vllm_py} is missing: run `make setup-vllm`")
    logs = ROOT / ".tokenway" / "run"
    logs.mkdir(parents=True, exist_ok=True)
    procs = {"transformers": serve(sys.executable, "transformers", args.dtype, args.model, logs / "compare-transformers.log"),
             "vllm": serve(str(vllm_py), "vllm", args.dtype, args.model, logs / "compare-vllm.log")}
    tok = Tokenizer.from_file(str(Path(args.model) / "tokenizer.json"))
    try:
        stubs = {name: ready_stub(port) for name, (_, port) in procs.items()}
        agree = 0
        for i, prompt in enumerate(PROMPTS):
            ids = tok.encode(prompt, add_special_tokens=True).ids
            outs = {}
            for name, stub in stubs.items():
                req = pb.GenerateRequest(request_id=f"compare-{i}-{time.monotonic_ns()}", prompt_token_ids=ids,
                                         sampling=pb.SamplingParams(temperature=0.0),
                                         stopping=pb.StoppingParams(max_tokens=args.tokens, ignore_eos=True))
                outs[name] = [t for m in stub.Generate(req, timeout=300) for t in m.token_ids]
            a, b = outs["transformers"], outs["vllm"]
            diff = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)
            if diff is None and len(a) == len(b) == args.tokens:
                agree += 1
                print(f"prompt {i} {prompt!r}: the first {args.tokens} tokens agree")
            else:
                print(f"prompt {i} {prompt!r}: diverge at token {diff}: transformers {a[diff:diff + 4]} "
                      f"(…{tok.decode(a[:diff + 1])[-20:]!r}) vs vllm {b[diff:diff + 4]} (…{tok.decode(b[:diff + 1])[-20:]!r})")
        print(f"{agree}/{len(PROMPTS)} prompts agree on their first {args.tokens} greedy tokens ({args.dtype})")
        return 0 if agree == len(PROMPTS) else 1
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
