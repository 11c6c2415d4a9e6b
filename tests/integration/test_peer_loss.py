"""Readiness tells the truth: the orchestrator (and Envoy's GET /health) follow the loss and return of
its peers, and a hung peer's calls fail fast.

These tests kill, stop and restart peers, so they run on a suite of their own (tools/suite.py on free
ports), not the session one. They assert states; the flip times are measured and printed (`-s`) but
never asserted: deadlines are only generous bounds that keep a broken build from hanging.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.v1 import chat_pb2, chat_pb2_grpc

from tests.auth import BearerKey
from tests.conftest import MODEL_DIR, ROOT, free_port

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
READINESS = "tokenway.v1.ChatService"
PEER_READINESS = {"inference": "tokenway.inference.v1.InferenceService", "tokenizer": "tokenway.tokenizer.v1.TokenizerService"}
BOUND = 60.0  # seconds: a bound against hangs, far above any expected flip time


def _suite_module():
    spec = importlib.util.spec_from_file_location("tokenway_suite_tool", ROOT / "tools" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class OwnSuite:
    env: dict
    run: Path
    orchestrator: int
    rest: int

    def pid(self, name: str) -> int:
        return int((self.run / f"{name}.pid").read_text())

    @property
    def api_key(self) -> str:
        return (self.run / "dev-api-key").read_text().strip()

    def restart(self, name: str) -> None:
        """Starts one service again exactly as tools/suite.py does (same command, env, log and pid file)."""
        tool = _suite_module()
        with mock.patch.dict(os.environ, self.env, clear=True):
            spec = next(s for s in tool.services() if s["name"] == name)
        env = dict(self.env, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.setdefault("TOKENWAY_INFERENCE_THREADS", "1")
        with open(self.run / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(spec["cmd"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        (self.run / f"{name}.pid").write_text(str(proc.pid))
        # Our child, unlike the ones `suite.py up` left behind: reap it when it exits, or `suite.py down`
        # sees a zombie that looks alive.
        threading.Thread(target=proc.wait, daemon=True).start()

    def http_health(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.rest}/health", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def wait_http_health(self, status: int) -> float:
        """Bounded wait for Envoy's GET /health to answer `status` (a state, polled); returns when it did."""
        deadline = time.monotonic() + BOUND
        while (got := self.http_health()) != status:
            assert time.monotonic() < deadline, f"GET /health stayed {got}, expected {status}"
            time.sleep(0.02)  # poll interval of a bounded wait on a state
        return time.monotonic()


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    run = tmp_path_factory.mktemp("peer-loss-run")
    env = dict(os.environ, TOKENWAY_RUN_DIR=str(run), TOKENWAY_MODEL=str(MODEL_DIR),
               TOKENWAY_ORCHESTRATOR_PORT=str(free_port()), TOKENWAY_TOKENIZER_PORT=str(free_port()),
               TOKENWAY_INFERENCE_PORT=str(free_port()), TOKENWAY_ENVOY_PORT=str(free_port()),
               TOKENWAY_ENVOY_ADMIN_PORT=str(free_port()), TOKENWAY_ORCHESTRATOR_STORE=str(run / "tokenway.db"),
               TOKENWAY_DEV_API_KEY_FILE=str(run / "dev-api-key"))
    up = subprocess.run([sys.executable, "tools/suite.py", "up", "--timeout", "240"], cwd=ROOT, env=env,
                        capture_output=True, text=True)
    if up.returncode != 0:
        logs = "\n".join(f.read_text()[-3000:] for f in run.glob("*.log"))
        pytest.fail(f"suite did not come up:\n{up.stdout}\n{up.stderr}\n{logs}")
    suite = OwnSuite(env, run, int(env["TOKENWAY_ORCHESTRATOR_PORT"]), int(env["TOKENWAY_ENVOY_PORT"]))
    yield suite
    for name in ("inference", "tokenizer"):  # never leave a stopped process behind
        try:
            os.kill(suite.pid(name), signal.SIGCONT)
        except (ProcessLookupError, FileNotFoundError):
            pass
    subprocess.run([sys.executable, "tools/suite.py", "down"], cwd=ROOT, env=env, capture_output=True, text=True)
    logs = {f.name: f.read_text() for f in run.glob("*.log")}
    tracebacks = {name: text[text.index("Traceback") - 500:][:4000] for name, text in logs.items() if "Traceback" in text}
    assert not tracebacks, f"tracebacks in the service logs: {tracebacks}"


@pytest.fixture
def orch(own):
    with grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{own.orchestrator}"), BearerKey(own.api_key)) as ch:
        yield ch


class Readiness:
    """The orchestrator's readiness as its health Watch reports it."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.health = health_pb2_grpc.HealthStub(channel)
        self.watch = self.health.Watch(health_pb2.HealthCheckRequest(service=READINESS), timeout=10 * BOUND)
        self.status = next(self.watch).status

    def wait(self, status: int) -> float:
        """Returns the monotonic time at which the Watch reported `status`."""
        while self.status != status:
            self.status = next(self.watch).status
        return time.monotonic()

    def live(self) -> int:
        return self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status

    def close(self) -> None:
        self.watch.cancel()


def _chat(channel: grpc.Channel, **kw) -> chat_pb2.CreateChatCompletionResponse:
    req = chat_pb2.CreateChatCompletionRequest(model="tokenway-tiny", max_tokens=4,
                                               messages=[chat_pb2.ChatRequestMessage(role="user")], **kw)
    req.messages[0].content.string_value = "Are you there?"
    return chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(req, timeout=BOUND)


def _report(what: str, seconds: float) -> None:
    print(f"\n[flip] {what}: {seconds * 1e3:.0f} ms", flush=True)


@pytest.fixture
def readiness(orch, own):
    r = Readiness(orch)
    r.wait(SERVING)
    own.wait_http_health(200)
    yield r
    r.close()


def _rest_stream(own):
    """A long REST stream through Envoy, already started."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{own.rest}/v1", api_key=own.api_key, max_retries=0, timeout=BOUND)
    stream = iter(client.chat.completions.create(model="tokenway-tiny", stream=True, max_tokens=1500,
                                                 messages=[{"role": "user", "content": "Tell me a long story."}],
                                                 extra_body={"ignore_eos": True}))
    assert next(stream).choices
    return stream


def _assert_ends_with_an_error_event(stream, code: str) -> None:
    """The REST caller is told, in-band: never a clean end of a truncated answer."""
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert e.value.body["code"] == code and e.value.body["type"] == "service_unavailable"
    assert "127.0.0.1" not in e.value.message


@pytest.mark.parametrize("peer", ["inference", "tokenizer"])
def test_a_dead_peer_turns_readiness_off_and_its_return_turns_it_back_on(own, orch, readiness, peer):
    rest = _rest_stream(own)
    killed = time.monotonic()
    os.kill(own.pid(peer), signal.SIGKILL)
    if peer == "inference":
        _assert_ends_with_an_error_event(rest, "PEER_UNAVAILABLE")
    else:  # a stream already rendered needs no tokenizer any more (detokenized in the orchestrator): it completes
        finish = [c.choices[0].finish_reason for c in rest if c.choices and c.choices[0].finish_reason]
        assert finish == ["length"]
    _report(f"{peer} SIGKILL -> orchestrator NOT_SERVING", readiness.wait(NOT_SERVING) - killed)
    _report(f"{peer} SIGKILL -> GET /health 503", own.wait_http_health(503) - killed)
    assert readiness.live() == SERVING  # liveness is the process only
    with pytest.raises(grpc.RpcError) as e:
        _chat(orch)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE

    own.restart(peer)
    with grpc.insecure_channel(f"127.0.0.1:{own.env[f'TOKENWAY_{peer.upper()}_PORT']}") as ch:
        peer_health = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=PEER_READINESS[peer]), wait_for_ready=True, timeout=10 * BOUND)
        while next(peer_health).status != SERVING:
            pass
        peer_ready = time.monotonic()
        peer_health.cancel()
    _report(f"{peer} SERVING -> orchestrator SERVING", readiness.wait(SERVING) - peer_ready)
    _report(f"{peer} SERVING -> GET /health 200", own.wait_http_health(200) - peer_ready)
    assert _chat(orch).choices


def test_a_hung_inference_peer_fails_its_stream_fast_and_readiness_follows(own, orch, readiness):
    req = chat_pb2.StreamChatCompletionRequest(model="tokenway-tiny", max_tokens=1500, ignore_eos=True,
                                               messages=[chat_pb2.ChatRequestMessage(role="user")])
    req.messages[0].content.string_value = "Tell me a long story."
    deadline = 10 * BOUND
    stream = chat_pb2_grpc.ChatServiceStub(orch).StreamChatCompletion(req, timeout=deadline)
    next(stream)  # in flight
    rest = _rest_stream(own)
    pid = own.pid("inference")
    stopped = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(grpc.RpcError) as e:
            for _ in stream:
                pass
        failed = time.monotonic()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value  # not DEADLINE_EXCEEDED
        _report("inference SIGSTOP -> in-flight stream UNAVAILABLE", failed - stopped)
        _assert_ends_with_an_error_event(rest, "PEER_UNAVAILABLE")
        _report("inference SIGSTOP -> orchestrator NOT_SERVING", readiness.wait(NOT_SERVING) - stopped)
        own.wait_http_health(503)
        with pytest.raises(grpc.RpcError) as e:
            _chat(orch)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    _report("inference SIGCONT -> orchestrator SERVING", readiness.wait(SERVING) - resumed)
    own.wait_http_health(200)
    assert _chat(orch).choices


def test_shutdown_with_streams_in_flight_logs_no_traceback(own, orch, readiness):
    """Runs last: stops this module's suite (SIGTERM to each service) while streams are generating."""
    req = chat_pb2.StreamChatCompletionRequest(model="tokenway-tiny", max_tokens=1900, ignore_eos=True,
                                               messages=[chat_pb2.ChatRequestMessage(role="user")])
    req.messages[0].content.string_value = "Tell me a long story."
    stub = chat_pb2_grpc.ChatServiceStub(orch)
    streams = [stub.StreamChatCompletion(req, timeout=10 * BOUND) for _ in range(2)]
    for s in streams:
        next(s)  # in flight
    down = subprocess.run([sys.executable, "tools/suite.py", "down"], cwd=ROOT, env=own.env, capture_output=True,
                          text=True, timeout=10 * BOUND)
    assert down.returncode == 0, down.stderr
    assert "ignored SIGTERM" not in down.stdout
    for s in streams:  # each one ended (how is the orchestrator's business), none hangs
        try:
            for _ in s:
                pass
        except grpc.RpcError as e:
            assert e.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    logs = {f.name: f.read_text() for f in own.run.glob("*.log")}
    assert not [name for name, text in logs.items() if "Traceback" in text], logs
    assert all(f"{name} stopped" in logs[f"{name}.log"] for name in ("orchestrator", "tokenizer", "inference"))
