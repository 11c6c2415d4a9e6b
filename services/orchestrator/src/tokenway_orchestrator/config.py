"""Orchestrator settings: TOKENWAY_ORCHESTRATOR_* variables, mirrored as --flags."""

from __future__ import annotations

import dataclasses

from tokenway_common.config import ServerSettings, setting

PREFIX = "TOKENWAY_ORCHESTRATOR"


def _addresses(value: tuple[str, ...]) -> str | None:
    if not value:
        return "at least one address is required"
    bad = [a for a in value if ":" not in a]
    return f"not host:port: {', '.join(bad)}" if bad else None


@dataclasses.dataclass(frozen=True)
class OrchestratorSettings(ServerSettings):
    port: int = setting(50051, "port of the public tokenway.v1 API", minimum=0)
    # The public port takes hostile input: a request larger than any prompt a served model could take is
    # refused by gRPC itself (RESOURCE_EXHAUSTED) before it is parsed. 8 MiB holds a 128k-token prompt
    # several times over; answers (n choices with logprobs) may still be up to max_message_mb.
    max_request_mb: int = setting(8, "largest request message the server accepts (refused by gRPC before it is "
                                     "parsed), MiB; 0: max_message_mb", minimum=0)
    tokenizer_address: str = setting("127.0.0.1:50052", "tokenizer service host:port")
    inference_addresses: tuple[str, ...] = setting(("127.0.0.1:50053",), "inference replicas, comma-separated host:port",
                                                   check=_addresses)
    detokenize: str = setting("local", "where generated tokens become text: local (in this process, with the tokenizer "
                                       "the tokenizer service serves, fetched once and fingerprint-checked) or remote "
                                       "(a DetokenizeStream call to the tokenizer service per choice, a round trip per "
                                       "chunk)", choices=("local", "remote"))
    startup_timeout_seconds: float = setting(600.0, "how long to wait at startup for the peers to be ready", minimum=1)
    request_timeout_seconds: float = setting(3600.0, "deadline of a request whose caller set none", minimum=1)
    peer_timeout_seconds: float = setting(30.0, "deadline of a short peer call (render, tokenize, info)", minimum=0.1)
    max_n: int = setting(16, "largest n (choices per prompt) accepted", minimum=1)
    max_stop_strings: int = setting(16, "most stop strings per request", minimum=0)
    max_stop_string_chars: int = setting(256, "longest stop string accepted", minimum=1)
    max_prompts: int = setting(64, "most prompts in one completion request", minimum=1)
    api_keys: tuple[str, ...] = setting((), "accepted API keys, comma-separated; KEY@model-a|model-b limits a key "
                                            "to those models; none: the API is open", secret=True)
    rate_limit_rpm: int = setting(0, "requests per minute per API key (per caller when open); 0: unlimited", minimum=0)
    rate_limit_burst: int = setting(10, "requests a key may send at once before the rate limit applies", minimum=1)
