"""`python -m tokenway_orchestrator` / `tokenway-orchestrator`: serve tokenway.v1."""

from __future__ import annotations

import asyncio
import sys

from tokenway_common.config import load_or_exit
from tokenway_common.server import serve

from .app import OrchestratorApp
from .config import PREFIX, OrchestratorSettings


def main() -> None:
    settings = load_or_exit(OrchestratorSettings, PREFIX)
    sys.exit(asyncio.run(serve(settings, OrchestratorApp(settings), "orchestrator")))


if __name__ == "__main__":
    main()
