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
    metrics_port: int = setting(9091, "port of the Prometheus metrics endpoint (HTTP GET /metrics) on host; 0: none. "
                                      "A port that cannot be bound stops the start", minimum=0)
    # The public port takes hostile input: a request larger than any prompt a served model could take is
    # refused by gRPC itself (RESOURCE_EXHAUSTED) before it is parsed. 8 MiB holds a 128k-token prompt
    # several times over; answers (n choices with logprobs) may still be up to max_message_mb.
    max_request_mb: int = setting(8, "largest request message the server accepts (refused by gRPC before it is "
                                     "parsed), MiB; 0: max_message_mb", minimum=0)
    tokenizer_address: str = setting("127.0.0.1:50052", "tokenizer service(s), comma-separated host:port or "
                                                        "dns:///host:port (each address the name resolves to is one); "
                                                        "each serves the models with its tokenizer's fingerprint")
    inference_addresses: tuple[str, ...] = setting(("127.0.0.1:50053",), "inference replicas, comma-separated host:port "
                                                                         "or dns:///host:port (re-resolved: a Kubernetes "
                                                                         "headless Service's pods); each serves the "
                                                                         "model its GetModelInfo names",
                                                   check=_addresses)
    models: str = setting("", "a YAML or JSON file of the served models (names, aliases, tokenizers, replicas "
                                   "and weights, routing, fallback, limits; see the orchestrator README); replaces "
                                   "tokenizer_address and inference_addresses, and is reloaded when it changes or "
                                   "on SIGHUP")
    reload_seconds: float = setting(2.0, "how often the models file is checked for a change; 0: only on SIGHUP",
                                    minimum=0)
    dns_refresh_seconds: float = setting(10.0, "how often dns:/// addresses are resolved again; 0: never", minimum=0)
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
    routing: str = setting("prefix", "how a sequence picks its inference replica: prefix (the replica that was sent "
                                     "the longest run of the prompt's leading 16-token blocks, while it is not much "
                                     "busier than the least busy), least_load, or round_robin (for comparisons); a request with an "
                                     "x-session-id header or a user field sticks to one replica either way",
                     choices=("prefix", "least_load", "round_robin"))
    load_poll_seconds: float = setting(0.5, "how often each inference replica's engine load (GetLoad: running + "
                                             "waiting) is read, so that routing sees other orchestrators' work; 0: "
                                             "route by this orchestrator's own in-flight counts", minimum=0)
    breaker_failures: int = setting(5, "consecutive failures of calls to an inference replica that open its circuit "
                                       "(no traffic)", minimum=1)
    breaker_open_seconds: float = setting(30.0, "how long an open circuit stays open before one trial call at a time "
                                                "is let through", minimum=0)
    breaker_close_successes: int = setting(3, "successful trial calls in a row that close a half-open circuit",
                                           minimum=1)
    auth: bool = setting(True, "require an API key (authorization: Bearer <key>) from the key store on every call of "
                               "the public API; off: every caller is 'anonymous', unlimited (local use only)")
    store: str = setting(".tokenway/tokenway.db", "the key, usage and limit store: a SQLite file's path (one host), or "
                                                  "a postgresql:// URL shared by several orchestrators", secret=True)
    max_running_sequences: int = setting(0, "sequences (prompts x n) generating at once through this process; 0: "
                                            "twice the inference replicas' batch sizes", minimum=0)
    batch_share: float = setting(0.75, "share of max_running_sequences that batch-priority requests may hold (the rest "
                                       "is kept for interactive ones)", minimum=0)
    max_queued_requests: int = setting(64, "requests waiting for capacity; beyond it a batch request is shed for an "
                                           "interactive one, else RESOURCE_EXHAUSTED", minimum=0)
    max_queue_seconds: float = setting(30.0, "longest wait for capacity of a batch request before RESOURCE_EXHAUSTED",
                                       minimum=0)
    max_interactive_queue_seconds: float = setting(0.0, "longest wait for capacity of an interactive request; 0: "
                                                        "refused at once when no slot is free (its time to first "
                                                        "token never includes a queue)", minimum=0)
