"""The inference service's metrics (tokenway_common.metrics): its engine's load, read at scrape time as
GetLoad reads it, and what Generate streams: tokens in and out, time to first token, inter-token latency.

`tokenway_inference_running_requests` and `tokenway_inference_waiting_requests` are what an autoscaler
scales the inference tier on (one engine per process: gauges read at scrape time are exact here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from tokenway_common.metrics import ServiceMetrics

from ..engines.base import Chunk, Engine

log = logging.getLogger("tokenway.inference.metrics")
#: ErrorInfo reasons that are refusals of work, by kind.
REJECTIONS = {"QUEUE_FULL": "overload"}


class EngineLoad:
    """A collector of the engine's load (`Engine.load()`, what GetLoad answers), read at each scrape."""

    GAUGES = (("running_requests", "running", "sequences the engine is running (in its batch)"),
              ("waiting_requests", "waiting", "sequences waiting for a place in the engine's batch"),
              ("kv_cache_usage_ratio", "kv_cache_usage", "share of the engine's KV cache in use, 0 to 1"),
              ("max_batch_size", "max_batch_size", "most sequences the engine runs at once"))

    def __init__(self, engine: Engine, namespace: str) -> None:
        self.engine, self.namespace = engine, namespace

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(f"{self.namespace}_{name}", doc) for name, _, doc in self.GAUGES]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            load = self.engine.load()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail the endpoint
            log.warning("engine load unreadable: %s", exc)
            return
        for name, field, doc in self.GAUGES:
            yield GaugeMetricFamily(f"{self.namespace}_{name}", doc, value=getattr(load, field))


class InferenceMetrics(ServiceMetrics):
    def __init__(self, engine: Engine) -> None:
        super().__init__("inference", rejections=REJECTIONS)
        self.registry.register(EngineLoad(engine, self.namespace))
        self.prompt_tokens = self.counter("prompt_tokens_total", "prompt tokens of the Generate requests that "
                                                                 "started generating")
        self.cached_prompt_tokens = self.counter("cached_prompt_tokens_total", "of those, prompt tokens the "
                                                                               "engine reused from its prefix cache")
        self.generation_tokens = self.counter("generation_tokens_total", "tokens generated and streamed")
        self.ttft = self.histogram("ttft_seconds", "time from a Generate call's arrival to its first token")
        self.itl = self.histogram("inter_token_latency_seconds", "per streamed message with tokens after the "
                                                                 "first: the time since the previous one divided "
                                                                 "by its tokens")

    def stream(self) -> StreamClock:
        return StreamClock(self)


class StreamClock:
    """One Generate stream's measurements: `chunk(c)` for every chunk it sends (an increment and at most one
    histogram observation each)."""

    __slots__ = ("m", "started", "last")

    def __init__(self, m: InferenceMetrics) -> None:
        self.m, self.started, self.last = m, time.monotonic(), 0.0

    def chunk(self, chunk: Chunk) -> None:
        m = self.m
        if chunk.prompt_tokens is not None:
            m.prompt_tokens.inc(chunk.prompt_tokens)
            if chunk.cached_tokens:
                m.cached_prompt_tokens.inc(chunk.cached_tokens)
        n = len(chunk.token_ids)
        if n:
            now = time.monotonic()
            if self.last:
                m.itl.observe((now - self.last) / n)
            else:
                m.ttft.observe(now - self.started)
            self.last = now
            m.generation_tokens.inc(n)
