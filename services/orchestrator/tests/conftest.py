"""The three services in this process, each on a real grpc.aio server bound to 127.0.0.1:0."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import grpc
import pytest
from tokenway.inference.v1 import inference_pb2_grpc
from tokenway.v1 import chat_pb2_grpc

from tokenway_common.server import start_server
from tokenway_inference.app import InferenceApp
from tokenway_inference.config import InferenceSettings
from tokenway_orchestrator.app import OrchestratorApp
from tokenway_orchestrator.config import OrchestratorSettings
from tokenway_tokenizer.app import TokenizerApp
from tokenway_tokenizer.config import TokenizerSettings

if str(Path(__file__).resolve().parents[3]) not in sys.path:  # the repo root, whose tests/ package has:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.pgserver import pg_server  # noqa: E402,F401 - a real PostgreSQL server for the session

MODEL_DIR = str(Path(__file__).resolve().parents[3] / ".tokenway" / "models" / "tokenway-tiny")


@dataclasses.dataclass
class Stack:
    tokenizer: object
    inference: object
    orchestrator: object
    engine: object

    model_dir: str = MODEL_DIR
    store: str = ""  # the session's SQLite store

    def settings(self, **kw) -> OrchestratorSettings:
        """Settings of one more orchestrator on this stack's peers (auth off unless kw turns it on)."""
        # the tests' extra replicas share one engine, whose load (GetLoad) is all of theirs: routing counts
        # this orchestrator's own in-flight sequences (load_poll_seconds 0) unless a test says otherwise
        kw = {"auth": False, "store": self.store, "tokenizer_address": self.tokenizer.address,
              "inference_addresses": (self.inference.address,), "load_poll_seconds": 0,
              "startup_timeout_seconds": 120, **kw}  # a start that cannot succeed fails in 2 min, not 10
        return OrchestratorSettings(port=0, **kw)

    def chat(self, channel: grpc.aio.Channel) -> chat_pb2_grpc.ChatServiceStub:
        return chat_pb2_grpc.ChatServiceStub(channel)


@pytest.fixture(scope="session")
async def stack(tmp_path_factory):
    tok = await start_server(TokenizerSettings(port=0, model=MODEL_DIR), TokenizerApp(TokenizerSettings(port=0, model=MODEL_DIR)))
    isettings = InferenceSettings(port=0, model=MODEL_DIR, max_batch_size=8)
    inf_app = InferenceApp(isettings)
    inf = await start_server(isettings, inf_app)
    store = str(tmp_path_factory.mktemp("store") / "tokenway.db")
    osettings = OrchestratorSettings(port=0, tokenizer_address=tok.address, inference_addresses=(inf.address,),
                                     auth=False, store=store)
    orch = await start_server(osettings, OrchestratorApp(osettings))
    yield Stack(tok, inf, orch, inf_app.engine, store=store)
    await orch.stop()
    await inf.stop()
    await tok.stop()


@pytest.fixture
async def chat(stack):
    async with grpc.aio.insecure_channel(stack.orchestrator.address) as ch:
        yield chat_pb2_grpc.ChatServiceStub(ch)


@pytest.fixture
async def inference(stack):
    async with grpc.aio.insecure_channel(stack.inference.address) as ch:
        yield inference_pb2_grpc.InferenceServiceStub(ch)
