"""The shared server's readiness and shutdown hooks, and the readiness follower, over real grpc.aio servers."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.inference.v1 import inference_pb2, inference_pb2_grpc

from tokenway_common import config
from tokenway_common.channels import ReadinessFollower, insecure_channel
from tokenway_common.server import start_server

SERVICE = "tokenway.inference.v1.InferenceService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Inference(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, app: HookedApp) -> None:
        self.app = app

    async def Generate(self, request, context):
        yield inference_pb2.GenerateResponse(token_ids=[1])
        self.app.streaming.set()
        await self.app.end_streams.wait()  # a long generation, until on_shutdown ends it
        yield inference_pb2.GenerateResponse(token_ids=[2])


class HookedApp:
    service_names = (SERVICE,)

    def __init__(self) -> None:
        self.set_ready = None
        self.streaming = asyncio.Event()
        self.end_streams = asyncio.Event()
        self.shutdown_grace: float | None = None
        self.shutdown_cancelled = asyncio.Event()

    def register(self, server):
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(Inference(self), server)

    def follow_readiness(self, set_ready):
        self.set_ready = set_ready

    async def start(self):
        pass

    async def on_shutdown(self, grace: float) -> None:
        self.shutdown_grace = grace
        self.end_streams.set()
        try:
            await asyncio.Event().wait()  # outlives server.stop: must be cancelled when it returns
        except asyncio.CancelledError:
            self.shutdown_cancelled.set()
            raise

    async def close(self):
        pass


async def _next_status(watch) -> int:
    return (await watch.read()).status


async def test_the_app_drives_its_readiness_and_liveness_stays_serving():
    app = HookedApp()
    running = await start_server(config.ServerSettings(port=0), app)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=30)
            assert await _next_status(watch) == SERVING
            app.set_ready(False)
            assert await _next_status(watch) == NOT_SERVING
            assert (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)).status == SERVING
            app.set_ready(True)
            assert await _next_status(watch) == SERVING
            # shutdown begins; the long drain keeps the server answering while we look
            stopping = asyncio.create_task(running.stop(grace=0, drain=3600))
            assert await _next_status(watch) == NOT_SERVING
            app.set_ready(True)  # after shutdown began: changes nothing
            await asyncio.gather(*running._tasks)
            check = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
            assert check.status == NOT_SERVING and not running.ready
            stopping.cancel()
    finally:
        await running.server.stop(0)


async def test_on_shutdown_runs_alongside_server_stop_and_is_cancelled_when_stop_returns():
    app = HookedApp()
    running = await start_server(config.ServerSettings(port=0), app)
    async with grpc.aio.insecure_channel(running.address) as ch:
        call = inference_pb2_grpc.InferenceServiceStub(ch).Generate(inference_pb2.GenerateRequest(), timeout=60)
        assert list((await call.read()).token_ids) == [1]
        await app.streaming.wait()
        # grace 60 s: stop returns within the bound only because on_shutdown ended the stream meanwhile
        await asyncio.wait_for(running.stop(grace=60), 30)
        assert app.shutdown_grace == 60
        assert list((await call.read()).token_ids) == [2]
        assert await call.code() == grpc.StatusCode.OK
        assert app.shutdown_cancelled.is_set()


@dataclasses.dataclass
class Peer:
    port: int = 0
    app: HookedApp | None = None
    running: object = None

    async def start(self) -> None:
        self.app = HookedApp()
        self.running = await start_server(config.ServerSettings(port=self.port), self.app)
        self.port = self.running.port


async def test_the_follower_tracks_a_peer_through_not_serving_death_and_restart():
    peer = Peer()
    await peer.start()
    channel = insecure_channel(f"127.0.0.1:{peer.port}", config.ServerSettings())
    seen: list[bool] = []
    follower = ReadinessFollower(channel, SERVICE, "peer", on_change=seen.append)
    follower.start()
    try:
        await asyncio.wait_for(follower.wait_for(True), 30)
        peer.app.set_ready(False)
        await asyncio.wait_for(follower.wait_for(False), 30)
        peer.app.set_ready(True)
        await asyncio.wait_for(follower.wait_for(True), 30)
        await peer.running.server.stop(None)  # gone without a goodbye
        await asyncio.wait_for(follower.wait_for(False), 30)
        await peer.start()  # back on the same port
        await asyncio.wait_for(follower.wait_for(True), 30)
        assert seen == [True, False, True, False, True]
        assert follower.changed.is_set()
    finally:
        await follower.close()
        await channel.close()
        await peer.running.stop()
