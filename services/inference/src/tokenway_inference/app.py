"""The inference App plugged into tokenway_common's server: engine lifecycle + servicer."""

from __future__ import annotations

import grpc

from tokenway.inference.v1 import inference_pb2_grpc as pb_grpc

from .config import InferenceSettings
from .engines import create_engine
from .engines.base import Engine
from .servicers.inference import InferenceServicer
from .servicers.metrics import InferenceMetrics

SERVICE_NAME = "tokenway.inference.v1.InferenceService"


class InferenceApp:
    service_names = (SERVICE_NAME,)
    # the orchestrators' load polls and model reads: traced only as part of a request's trace
    background_methods = frozenset({f"{SERVICE_NAME}/GetLoad", f"{SERVICE_NAME}/GetModelInfo"})

    def __init__(self, settings: InferenceSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        # Building the engine is cheap (reads config.json); it fails fast when vllm is chosen but absent.
        self.engine = engine if engine is not None else create_engine(settings)
        # Its load (running, waiting, KV cache) is read at each scrape; vLLM's own metrics, in prometheus_client's
        # default registry, are served beside these.
        self.metrics = InferenceMetrics(self.engine)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(self.engine, self.metrics), server)

    async def start(self) -> None:
        """Loads and warms the model off the event loop; readiness turns SERVING after this returns."""
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()
