"""The orchestrator's metrics (tokenway_common.metrics), fed by hooks in the policy (gate, admission), the
registry and the inference router. Every gauge here is set when it changes (never read at scrape time), so
that several worker processes sum (or, for readiness, take the most) on the supervisor's endpoint.

Time to first token and inter-token latency are what a streaming caller sees, per model:
- TTFT: from the request's admission start (after authentication: its queue time included) to the first
  chunk that carries tokens of any choice, streams only (a unary answer has no first token to see);
- inter-token latency: for every later chunk that carries tokens of a choice, the time since that choice's
  previous such chunk divided by the tokens in this chunk (one observation per chunk: several tokens in one
  message count as their average gap).
"""

from __future__ import annotations

import time

from tokenway_common.metrics import ServiceMetrics

from .policy.gate import LIMIT_REASONS

#: ErrorInfo reasons that are refusals, by kind: the caller's key (policy/auth.py, policy/gate.py's
#: priority), its limits (policy/gate.py, store/limits.py), this orchestrator's admission
#: (policy/admission.py) or a replica's full queue (the inference service's QUEUE_FULL).
REJECTIONS = {
    **dict.fromkeys(("MISSING_API_KEY", "INVALID_API_KEY", "REVOKED_API_KEY", "MODEL_NOT_ALLOWED",
                     "PRIORITY_NOT_ALLOWED"), "auth"),
    **dict.fromkeys(LIMIT_REASONS, "limit"),
    **dict.fromkeys(("OVERLOADED", "SHED", "QUEUE_TIMEOUT", "QUEUE_FULL"), "overload"),
}


class OrchestratorMetrics(ServiceMetrics):
    def __init__(self) -> None:
        super().__init__("orchestrator", rejections=REJECTIONS)
        self.ttft = self.histogram("ttft_seconds", "streams: time from admission start to the first chunk with "
                                                   "tokens", ("model",))
        self.itl = self.histogram("inter_token_latency_seconds", "streams: per chunk with tokens after a choice's "
                                                                 "first, the time since its previous one divided by "
                                                                 "its tokens", ("model",))
        self.prompt_tokens = self.counter("prompt_tokens_total", "prompt tokens of finished requests (their "
                                                                 "usage)", ("model",))
        self.completion_tokens = self.counter("completion_tokens_total", "completion tokens of finished requests "
                                                                         "(their usage; a cancelled stream's: what it "
                                                                         "was sent)", ("model",))
        self.running = self.gauge("running_requests", "requests admitted and not yet finished")
        self.running_sequences = self.gauge("running_sequences", "sequences (prompts x n) holding admission slots")
        self.queued = self.gauge("queued_requests", "requests waiting in the admission queue")
        self.replica_requests = self.counter("replica_requests_total", "Generate calls sent to each inference "
                                                                       "replica (retries and migrations included)",
                                             ("model", "replica"))
        self.model_ready = self.gauge("model_ready", "1 while the model has a ready tokenizer and inference "
                                                     "replica, else 0", ("model",), mode="livemax")
        self._models: dict[str, ModelMetrics] = {}

    def model(self, name: str) -> ModelMetrics:
        m = self._models.get(name)
        if m is None:
            m = self._models[name] = ModelMetrics(self, name)
        return m

    def admission(self, sequences: int, queued: int) -> None:
        self.running_sequences.set(sequences)
        self.queued.set(queued)

    def ready(self, model: str, ready: bool) -> None:
        self.model_ready.labels(model).set(1 if ready else 0)

    def router(self, model: str):
        """The inference router's hook for `model`: counts a Generate call sent to a replica's address."""
        children: dict[str, object] = {}
        counter = self.replica_requests

        def routed(address: str) -> None:
            child = children.get(address)
            if child is None:
                child = children[address] = counter.labels(model, address)
            child.inc()
        return routed


class ModelMetrics:
    """One model's label children, and one request's clock (`clock()`)."""

    def __init__(self, m: OrchestratorMetrics, model: str) -> None:
        self.ttft, self.itl = m.ttft.labels(model), m.itl.labels(model)
        self.prompt_tokens, self.completion_tokens = m.prompt_tokens.labels(model), m.completion_tokens.labels(model)
        self.running = m.running

    def clock(self, started: float) -> RequestClock:
        return RequestClock(self, started)


class RequestClock:
    """One request's streamed tokens: `tokens(index, new)` per chunk that brought choice `index` `new` tokens."""

    __slots__ = ("m", "started", "last")

    def __init__(self, m: ModelMetrics, started: float) -> None:
        self.m, self.started = m, started
        self.last: dict[int, float] = {}  # per choice: when its last chunk with tokens went

    def tokens(self, index: int, new: int) -> None:
        now = time.monotonic()
        last = self.last.get(index)
        if last is not None:
            self.m.itl.observe((now - last) / new)
        elif not self.last:
            self.m.ttft.observe(now - self.started)
        self.last[index] = now

    def finished(self, prompt_tokens: int, completion_tokens: int) -> None:
        if prompt_tokens:
            self.m.prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            self.m.completion_tokens.inc(completion_tokens)
