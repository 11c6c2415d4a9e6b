"""tokenway on the vLLM engine (through Envoy) against vLLM's own OpenAI server, same model, same venv.

    python bench/vs_vllm.py [--rounds 2] [--requests 48] [--levels 1,8,32]   (after make setup-vllm)

One server at a time, fresh for each round, alternating: vLLM's `vllm.entrypoints.openai.api_server`
and `tools/suite.py up` with TOKENWAY_INFERENCE_ENGINE=vllm, both with the same KV cache, batch size,
CPU binding and compile cache. The same OpenAI-SSE load for both: seeded prompts of ~100-1300 tokens,
64 output tokens (ignore_eos), greedy, `requests` requests per concurrency level. Reports output
tokens/s, TTFT p50 and inter-token latency p50 per level and server, and tokenway's ratios to vLLM.

Where the time goes: for every level, the CPU seconds each process of the server (and this client)
used per 1000 output tokens, read from /proc (both servers share the same cores, so CPU is the budget).
`--pyspy DIR` also samples each Python process of both servers with py-spy during the last round's
levels and prints its five busiest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "tokenway-tiny"
WORDS = ("model server token stream batch cache prompt answer engine request latency throughput gateway "
         "replica tokenizer graph kernel memory budget queue deadline signal health router vector layer "
         "attention weight sample greedy chunk buffer socket").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 500))) for _ in range(n)]


async def one(http: httpx.AsyncClient, prompt: str) -> tuple[float, float, int]:
    """(TTFT s, mean inter-token s, output tokens) of one streamed chat completion."""
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64,
            "temperature": 0, "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = last = None
    tokens = 0
    async with http.stream("POST", "/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if any(c.get("delta", {}).get("content") for c in chunk.get("choices", ())):
                now = time.perf_counter()
                first = first or now
                last = now
    itl = (last - first) / max(tokens - 1, 1) if first is not None else 0.0
    return (first or time.perf_counter()) - start, itl, tokens


CLK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def processes(roots: dict[str, int]) -> dict[str, int]:
    """{label: pid} for each root and its descendants (labelled by their process name)."""
    kids, out = _children(), {}
    for label, pid in roots.items():
        todo = [(label, pid)]
        while todo:
            name, p = todo.pop()
            out[name] = p
            for k in kids.get(p, ()):
                try:
                    comm = Path(f"/proc/{k}/comm").read_text().strip()
                except OSError:
                    continue
                todo.append((f"{label}/{comm}" if comm not in name else f"{name}.{k}", k))
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for label, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[label] = (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, IndexError, ValueError):
            pass
    return out


def pyspy_top(raw: Path, n: int = 5) -> list[str]:
    """The n functions with the most samples on top of the stack (self time), as 'share% function'."""
    leaf: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frame = stack.split(";")[-1]
        leaf[frame] = leaf.get(frame, 0) + int(count)
        total += int(count)
    return [f"{100 * c / total:5.1f}% {f}" for f, c in sorted(leaf.items(), key=lambda kv: -kv[1])[:n]] if total else []


async def level(base_url: str, texts: list[str], concurrency: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as http:
        await one(http, texts[0])  # warm the connection and the server's path
        queue = list(texts)
        results = []

        async def worker() -> None:
            while queue:
                results.append(await one(http, queue.pop()))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"tokens": sum(r[2] for r in results), "tok_s": sum(r[2] for r in results) / wall, "ttft_ms": statistics.median(r[0] for r in results) * 1e3,
            "itl_ms": statistics.median(r[1] for r in results) * 1e3}


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 900) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited during startup (rc {proc.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # startup poll
    sys.exit(f"{url} not ready in {seconds:.0f}s")


def vllm_server(env: dict, vpy: str, model: str, kv_bytes: int) -> tuple[str, callable]:
    port = free_port()
    log = open(ROOT / ".tokenway" / "run" / "bench-vllm-server.log", "wb")
    proc = subprocess.Popen([vpy, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name",
                             MODEL_NAME, "--host", "127.0.0.1", "--port", str(port), "--max-num-seqs", "32",
                             "--kv-cache-memory-bytes", str(kv_bytes)],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health", proc)

    def stop() -> None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    return f"http://127.0.0.1:{port}/v1", stop, {"vllm": proc.pid}


def tokenway_server(env: dict) -> tuple[str, callable]:
    ports = {k: str(free_port()) for k in ("ORCHESTRATOR", "TOKENIZER", "INFERENCE", "ENVOY", "ENVOY_ADMIN")}
    run = ROOT / ".tokenway" / "run" / "bench-tokenway"
    env = dict(env, TOKENWAY_INFERENCE_ENGINE="vllm", TOKENWAY_RUN_DIR=str(run),
               **{f"TOKENWAY_{k}_PORT": v for k, v in ports.items()})
    up = subprocess.run([sys.executable, "tools/suite.py", "up", "--timeout", "900"], cwd=ROOT, env=env,
                        capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"tokenway did not come up:\n{up.stdout}\n{up.stderr}")

    def stop() -> None:
        subprocess.run([sys.executable, "tools/suite.py", "down"], cwd=ROOT, env=env, capture_output=True)
    roots = {name: int((run / f"{name}.pid").read_text()) for name in ("envoy", "orchestrator", "tokenizer", "inference")}
    return f"http://127.0.0.1:{ports['ENVOY']}/v1", stop, roots


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--pyspy", type=Path, help="sample every Python process with py-spy in the last round, "
                                                "writing raw profiles here")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    model = os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway" / "models" / "tokenway-tiny"))
    vpy = str(Path(os.environ.get("TOKENWAY_VLLM_VENV", ROOT / ".tokenway" / "venv-vllm")) / "bin" / "python")
    threads = max(1, (os.cpu_count() or 2) - 1)
    # the same engine configuration for both: tokenway's defaults (65536 KV tokens, 32 sequences)
    sys.path.insert(0, str(ROOT / "services" / "inference" / "src"))
    from tokenway_inference.engines.base import kv_bytes_per_token  # noqa: PLC0415
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENWAY_MODEL=model, VLLM_CACHE_ROOT=str(ROOT / ".tokenway" / "vllm-cache"),
               TOKENWAY_INFERENCE_THREADS=os.environ.get("TOKENWAY_INFERENCE_THREADS", str(threads)))  # 0 on GPUs
    if env["TOKENWAY_INFERENCE_THREADS"] != "0":  # vLLM's own server on the same cores as tokenway's engine
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}")
    kv_bytes = 65536 * kv_bytes_per_token(model, "bfloat16")
    (ROOT / ".tokenway" / "run").mkdir(parents=True, exist_ok=True)
    texts = prompts(args.requests)
    table: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.rounds):
        for name, start in (("vllm", lambda: vllm_server(env, vpy, model, kv_bytes)), ("tokenway", lambda: tokenway_server(env))):
            url, stop, roots = start()
            try:
                for c in levels:
                    pids = {**processes(roots), "client": os.getpid()}  # the client alone, not its servers
                    spies = []
                    if args.pyspy and r == args.rounds - 1:
                        args.pyspy.mkdir(parents=True, exist_ok=True)
                        spies = [(label, args.pyspy / f"{name}-c{c}-{label.replace('/', '_')}.raw") for label in pids
                                 if label != "client" and "envoy" not in label]
                        spies = [(label, out, subprocess.Popen(
                            ["py-spy", "record", "--nonblocking", "-r", "50", "-f", "raw", "-o", str(out),
                             "-p", str(pids[label])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                                 for label, out in spies]
                    before = cpu_seconds(pids)
                    res = asyncio.run(level(url, texts, c))
                    after = cpu_seconds(pids)
                    for _, _, spy in spies:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(timeout=60)
                    table.setdefault((name, c), []).append(res)
                    print(f"round {r + 1} {name:8} c={c:<3} {res['tok_s']:7.1f} tok/s  TTFT p50 {res['ttft_ms']:7.1f} ms  "
                          f"ITL p50 {res['itl_ms']:6.2f} ms", flush=True)
                    k_tokens = res["tokens"] / 1000
                    used = {label: after[label] - before.get(label, 0.0) for label in after}
                    print("    CPU s per 1k output tokens: " + ", ".join(
                        f"{label} {v / k_tokens:.2f}" for label, v in sorted(used.items(), key=lambda kv: -kv[1])
                        if v / k_tokens >= 0.01), flush=True)
                    for label, out, _ in spies:
                        if out.exists():
                            print(f"    py-spy {label}: " + " | ".join(pyspy_top(out)), flush=True)
            finally:
                stop()
    print("\ntokenway / vLLM, per round (bars: tok/s >= 0.95, TTFT <= 1.10, ITL <= 1.05)")
    for c in levels:
        for r in range(args.rounds):
            t, v = table[("tokenway", c)][r], table[("vllm", c)][r]
            print(f"c={c:<3} round {r + 1}: tok/s {t['tok_s'] / v['tok_s']:.2f}  TTFT {t['ttft_ms'] / v['ttft_ms']:.2f}  "
                  f"ITL {t['itl_ms'] / v['itl_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
