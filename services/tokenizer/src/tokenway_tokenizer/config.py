"""Settings of the tokenizer service, read from TOKENWAY_TOKENIZER_* variables or --flags."""

from __future__ import annotations

import dataclasses

from tokenway_common.config import ConfigError, ServerSettings, setting
from tokenway_common.modeldir import check_model_dir, default_model_dir

ENV_PREFIX = "TOKENWAY_TOKENIZER"
SERVICE_NAME = "tokenway.tokenizer.v1.TokenizerService"


@dataclasses.dataclass(frozen=True)
class TokenizerSettings(ServerSettings):
    port: int = setting(50052, "port to bind (0 picks a free one)", minimum=0)
    metrics_port: int = setting(9092, "port of the Prometheus metrics endpoint (HTTP GET /metrics) on host; 0: none. "
                                      "A port that cannot be bound stops the start", minimum=0)
    model: str = setting(default_model_dir(), "Hugging Face model or tokenizer directory (local, read offline)",
                         check=check_model_dir)
    workers: int = setting(2, "threads running the tokenizer's batch calls (they release the GIL)", minimum=1)
    max_input_tokens: int = setting(
        0, "most tokens one Tokenize text or RenderChat prompt may encode into, whatever the caller asks; "
           "0 = the tokenizer's model_max_length when below 10**7, else 1048576", minimum=0)

    def __post_init__(self) -> None:
        # `load` only checks values that were set; the default directory must exist too.
        if msg := check_model_dir(self.model):
            raise ConfigError(f"invalid configuration:\n  {ENV_PREFIX}_MODEL: {msg}")
