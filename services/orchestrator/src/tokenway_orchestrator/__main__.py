"""`python -m tokenway_orchestrator` / `tokenway-orchestrator`: serve tokenway.v1."""

from __future__ import annotations

import sys

from tokenway_common.config import load_or_exit
from tokenway_common.server import run

from .app import OrchestratorApp
from .config import PREFIX, OrchestratorSettings


def main() -> None:
    settings = load_or_exit(OrchestratorSettings, PREFIX)
    sys.exit(run(settings, OrchestratorApp, "orchestrator", module=__package__))


if __name__ == "__main__":
    main()
