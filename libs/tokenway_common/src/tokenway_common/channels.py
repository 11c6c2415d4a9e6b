"""Outbound channels and deadlines: every downstream call carries the caller's remaining time."""

from __future__ import annotations

import json

import grpc

from . import config
from .server import server_options


def _service_config(services: tuple[str, ...]) -> str:
    # Retry only UNAVAILABLE (never an answer that may have been half-produced).
    return json.dumps({
        "methodConfig": [{
            "name": [{"service": s} for s in services],
            "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.5s",
                            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
        }]
    })


def insecure_channel(address: str, settings: config.ServerSettings, services: tuple[str, ...] = ()) -> grpc.aio.Channel:
    options = [o for o in server_options(settings) if not o[0].startswith("grpc.so_reuseport")]
    options += [("grpc.keepalive_time_ms", 30_000), ("grpc.enable_retries", 1)]
    if services:
        options.append(("grpc.service_config", _service_config(services)))
    return grpc.aio.insecure_channel(address, options=options)


def remaining(context: grpc.aio.ServicerContext | None, default: float | None) -> float | None:
    """Seconds left of the caller's deadline, capped by `default` (None = no cap)."""
    left = context.time_remaining() if context is not None else None
    if left is None:
        return default
    if default is None:
        return max(left, 0.0)
    return max(min(left, default), 0.0)


async def wait_serving(channel: grpc.aio.Channel, service: str) -> None:
    """Returns once the peer's readiness for `service` is SERVING (grpc.health.v1 Watch, reconnecting)."""
    import asyncio

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    while True:
        try:
            async for resp in stub.Watch(health_pb2.HealthCheckRequest(service=service), wait_for_ready=True):
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
        await asyncio.sleep(0.2)  # the peer restarted or closed the watch: reconnect pacing
