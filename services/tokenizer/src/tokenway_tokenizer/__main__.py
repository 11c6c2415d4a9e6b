"""`python -m tokenway_tokenizer` / `tokenway-tokenizer`: run the tokenizer service until SIGTERM."""

from __future__ import annotations

import sys

from tokenway_common.config import load_or_exit
from tokenway_common.server import run

from .app import TokenizerApp
from .config import ENV_PREFIX, TokenizerSettings


def main() -> None:
    cfg = load_or_exit(TokenizerSettings, ENV_PREFIX)
    sys.exit(run(cfg, TokenizerApp, "tokenizer", module=__package__))


if __name__ == "__main__":
    main()
