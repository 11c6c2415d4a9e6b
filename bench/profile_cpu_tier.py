"""Where the CPU tier's time goes per streamed token: py-spy on the orchestrator and the tokenizer.

    python bench/profile_cpu_tier.py [--concurrency 32] [--requests 128] [--modes remote,local]
    (after tools/setup.sh bench, which installs py-spy into the venv)

For each mode (the orchestrator's TOKENWAY_ORCHESTRATOR_DETOKENIZE: `remote` is the old shape, a
DetokenizeStream round trip to the tokenizer per chunk; `local` the default, the same detokenizer in
the orchestrator's process) it starts a fresh suite on the synthetic engine, streams chat completions
through Envoy (SSE) at one concurrency level while py-spy samples both processes (with native frames),
and prints CPU ms per streamed token of every process and each process's top frames: self time
attributed to the nearest Python frame, so that time inside gRPC's Cython and C core shows up under the
Python call that led there, and the whole-stack share of tokenway's own functions.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import Options, SseClient, prompts, run_level, summarize  # noqa: E402
from procs import CpuWindow, tree  # noqa: E402
from run import SYNTHETIC_ENV  # noqa: E402
from servers import ROOT, tokenway_suite  # noqa: E402

PYSPY = str(Path(sys.executable).parent / "py-spy")  # tools/setup.sh bench installs it into the venv
IDLE = re.compile(r"epoll_wait|_queue_SimpleQueue_get|PyThread_acquire_lock_timed|selectors\.py")


def attribute(raw: Path, n: int = 12) -> tuple[list[str], list[str]]:
    """(top self frames, top inclusive tokenway frames) of a py-spy raw profile, idle stacks left out."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or IDLE.search(stack):
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        py = [re.sub(r":\d+\)", ")", f) for f in frames if ".py:" in f]
        key = py[-1] if py else frames[-1]
        own[key] = own.get(key, 0) + c
        for f in set(py):
            if "tokenway" in f:
                incl[f] = incl.get(f, 0) + c
    if not total:
        return [], []
    fmt = lambda d: [f"{100 * v / total:5.1f}% {k}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]]  # noqa: E731
    return fmt(own), fmt(incl)


def profile(mode: str, concurrency: int, requests: int, out: Path) -> None:
    env = dict(__import__("os").environ, HF_HUB_OFFLINE="1", TOKENWAY_INFERENCE_ENGINE="synthetic",
               TOKENWAY_ORCHESTRATOR_DETOKENIZE=mode, **SYNTHETIC_ENV)
    server = tokenway_suite(f"profile-{mode}", env, out / f"run-{mode}")
    try:
        host, port = server.addresses["rest"].split(":")
        client = SseClient(host, int(port), prompts(requests + 1, seed=11), Options(), api_key=server.api_key)
        pids = tree({k: v for k, v in server.roots.items() if k in ("orchestrator", "tokenizer")})
        cpu = CpuWindow(server.roots)
        spies: list[tuple[str, Path, subprocess.Popen]] = []

        def start() -> None:
            cpu.start()
            for label in ("orchestrator", "tokenizer"):
                raw = out / f"{mode}-{label}.raw"
                spies.append((label, raw, subprocess.Popen(
                    [PYSPY, "record", "--native", "-r", "100", "-f", "raw", "-o", str(raw),
                     "-p", str(pids[label])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

        records, wall = asyncio.run(run_level(client, concurrency, requests, on_start=start, on_end=cpu.stop))
        for _, _, p in spies:
            p.send_signal(2)
            p.wait(timeout=60)
        s = summarize(records, wall)
        tokens = s["output_tokens"]
        print(f"\n== DETOKENIZE={mode}: c={concurrency}, {requests} requests, {tokens} tokens, "
              f"{s['errors']} errors, {s['tok_s']:.0f} tok/s")
        print("   CPU ms per streamed token: " + ", ".join(
            f"{k} {1e3 * v / tokens:.3f}" for k, v in sorted(cpu.groups.items(), key=lambda kv: -kv[1]) if tokens))
        for label, raw, _ in spies:
            if not raw.exists():
                print(f"   {label}: py-spy wrote no profile (is py-spy allowed to ptrace here?)")
                continue
            top, mine = attribute(raw)
            print(f"   {label}: top frames (self, at the nearest Python frame):")
            print("\n".join(f"      {t}" for t in top))
            print(f"   {label}: tokenway's functions (whole stack):")
            print("\n".join(f"      {t}" for t in mine))
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--modes", default="remote,local")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / ".tokenway") as tmp:
        for mode in args.modes.split(","):
            profile(mode, args.concurrency, args.requests, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
