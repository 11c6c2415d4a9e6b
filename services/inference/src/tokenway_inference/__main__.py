"""`tokenway-inference` / `python -m tokenway_inference`."""

from __future__ import annotations

import asyncio
import os
import sys

# Before torch loads OpenMP: idle torch threads sleep instead of spinning, so the cores they would burn
# between steps (the engine runs small steps on fewer threads) go to whatever shares the host.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tokenway_common.config import load_or_exit
from tokenway_common.server import serve

from .app import InferenceApp
from .config import PREFIX, InferenceSettings
from .engines.errors import EngineUnavailable

#: Why `processes` must stay 1 here.
SINGLE_PROCESS = ("one engine and model per process; scale inference with replicas on their own ports, "
                  "listed in TOKENWAY_ORCHESTRATOR_INFERENCE_ADDRESSES")


def main() -> None:
    cfg = load_or_exit(InferenceSettings, PREFIX, single_process=SINGLE_PROCESS)
    try:
        app = InferenceApp(cfg)
    except EngineUnavailable as e:
        print(f"tokenway-inference: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(serve(cfg, app, "inference")))


if __name__ == "__main__":
    main()
