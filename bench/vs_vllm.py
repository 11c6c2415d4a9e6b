"""tokenway on the vLLM engine vs vLLM's own OpenAI server: now the peers-vllm scenario of bench/run.py.

    python bench/vs_vllm.py [--rounds 2] [--requests 48] [--levels 1,8,32] [--pyspy DIR]

Kept for tools/gpu-check.sh and the inference README; it runs
`bench/run.py --scenarios peers-vllm --no-readme` with the same options (results in bench/results/).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", default="2")
    ap.add_argument("--requests", default="32")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--pyspy")
    args = ap.parse_args()
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--scenarios", "peers-vllm", "--no-readme",
           "--rounds", args.rounds, "--peers-requests", args.requests, "--peers-levels", args.levels]
    if args.pyspy:
        cmd += ["--pyspy", args.pyspy]
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    sys.exit(main())
