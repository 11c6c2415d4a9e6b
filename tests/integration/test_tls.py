"""TLS and mTLS, by configuration, with real processes over loopback and certificates made for the run.

A tokenizer serving TLS, one serving mTLS, and the whole chain over mTLS: tokenizer and inference
requiring client certificates, an orchestrator calling them with its own and requiring one itself, and
Envoy serving HTTPS (client certificates required) with mTLS to the orchestrator; one chat completion
through it with the openai SDK. Plaintext stays the default (every other test runs on it).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx2 as httpx  # the HTTP client the openai SDK itself uses
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tokenway.tokenizer.v1 import tokenizer_pb2, tokenizer_pb2_grpc
from tokenway_common import config
from tokenway_common.channels import peer_channel

from tests.conftest import MODEL_DIR, ROOT, free_port
from tests.tlscerts import Certs, make_certs

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
TOKENIZER = "tokenway.tokenizer.v1.TokenizerService"
STARTUP_SECONDS = 240  # a bound for a failure, on a busy 2-core host; readiness is awaited, never slept for


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


def _env(**extra: str) -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENWAY_MODEL=str(MODEL_DIR), **extra)


class Procs:
    """The processes a fixture started, each logging to its own file (shown when one fails to come up)."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.procs = logs, []

    def spawn(self, name: str, cmd: list[str], env: dict) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc.name = name
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        return (self.logs / f"{proc.name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _credentials(certs: Certs, *, client_cert: bool) -> grpc.ChannelCredentials:
    read = lambda path: Path(path).read_bytes()  # noqa: E731
    if client_cert:
        return grpc.ssl_channel_credentials(read(certs.ca), read(certs.client_key), read(certs.client_cert))
    return grpc.ssl_channel_credentials(read(certs.ca))


def _await_serving(procs: Procs, proc: subprocess.Popen, port: int, service: str,
                   credentials: grpc.ChannelCredentials) -> None:
    """Follows the service's readiness (health Watch over TLS, waiting for the connection) until SERVING."""
    try:
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=service),
                                                         wait_for_ready=True, timeout=STARTUP_SECONDS)
            for resp in watch:
                if resp.status == SERVING:
                    return
    except grpc.RpcError as e:
        pytest.fail(f"{proc.name} not SERVING over TLS ({e.code().name}; exit code {proc.poll()}):\n{procs.log(proc)}")


def _tokenize(port: int, credentials: grpc.ChannelCredentials | None) -> list[int]:
    target = f"127.0.0.1:{port}"
    with (grpc.secure_channel(target, credentials) if credentials is not None else grpc.insecure_channel(target)) as ch:
        resp = tokenizer_pb2_grpc.TokenizerServiceStub(ch).Tokenize(tokenizer_pb2.TokenizeRequest(texts=["hello TLS"]),
                                                                    timeout=10)
        return list(resp.encodings[0].token_ids)


def _refused(port: int, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        _tokenize(port, credentials)
    return e.value.code()


def _tokenizer(procs: Procs, name: str, certs: Certs, *flags: str) -> int:
    port = free_port()
    proc = procs.spawn(name, [sys.executable, "-m", "tokenway_tokenizer", "--port", str(port), "--tls-cert",
                              certs.server_cert, "--tls-key", certs.server_key, *flags], _env())
    _await_serving(procs, proc, port, TOKENIZER, _credentials(certs, client_cert=True))
    return port


@pytest.fixture(scope="module")
def tokenizers(certs, logs):
    """Two tokenizers: one serving TLS, one serving mTLS (client certificates signed by the test CA)."""
    procs = Procs(logs)
    try:
        yield {"tls": _tokenizer(procs, "tokenizer-tls", certs),
               "mtls": _tokenizer(procs, "tokenizer-mtls", certs, "--tls-client-ca", certs.ca)}
    finally:
        procs.stop()


def test_tls_server_answers_clients_that_trust_its_ca_and_no_others(tokenizers, certs):
    assert _tokenize(tokenizers["tls"], _credentials(certs, client_cert=False))
    assert _refused(tokenizers["tls"], None) == grpc.StatusCode.UNAVAILABLE  # plaintext client
    untrusting = grpc.ssl_channel_credentials(Path(certs.other_ca).read_bytes())
    assert _refused(tokenizers["tls"], untrusting) == grpc.StatusCode.UNAVAILABLE


def test_mtls_server_requires_a_client_certificate_its_ca_signed(tokenizers, certs):
    assert _tokenize(tokenizers["mtls"], _credentials(certs, client_cert=True))
    assert _refused(tokenizers["mtls"], _credentials(certs, client_cert=False)) == grpc.StatusCode.UNAVAILABLE
    assert _refused(tokenizers["mtls"], None) == grpc.StatusCode.UNAVAILABLE
    stranger = grpc.ssl_channel_credentials(Path(certs.ca).read_bytes(), Path(certs.other_client_key).read_bytes(),
                                            Path(certs.other_client_cert).read_bytes())
    assert _refused(tokenizers["mtls"], stranger) == grpc.StatusCode.UNAVAILABLE


async def _peer_tokenize(port: int, settings: config.ServerSettings) -> grpc.StatusCode:
    channel = peer_channel(f"127.0.0.1:{port}", settings, (TOKENIZER,))
    try:
        await tokenizer_pb2_grpc.TokenizerServiceStub(channel).Tokenize(
            tokenizer_pb2.TokenizeRequest(texts=["hello TLS"]), timeout=10)
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as e:
        return e.code()
    finally:
        await channel.close()


async def test_peer_channel_follows_the_peer_tls_settings(tokenizers, certs):
    """The orchestrator's channels to its peers (tokenway_common.channels.peer_channel)."""
    mtls = dict(peer_tls_ca=certs.ca, peer_tls_cert=certs.client_cert, peer_tls_key=certs.client_key)
    assert await _peer_tokenize(tokenizers["mtls"], config.ServerSettings(**mtls)) == grpc.StatusCode.OK
    assert await _peer_tokenize(tokenizers["mtls"], config.ServerSettings(peer_tls_ca=certs.ca)) == \
        grpc.StatusCode.UNAVAILABLE  # no client certificate
    assert await _peer_tokenize(tokenizers["tls"], config.ServerSettings(peer_tls_ca=certs.ca)) == grpc.StatusCode.OK
    assert await _peer_tokenize(tokenizers["tls"], config.ServerSettings()) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert await _peer_tokenize(tokenizers["tls"], config.ServerSettings(peer_tls_ca=certs.other_ca)) == \
        grpc.StatusCode.UNAVAILABLE
    # the name checked: the address's host (127.0.0.1, in the certificate), or the override
    named = lambda name: config.ServerSettings(peer_tls_ca=certs.ca, peer_tls_server_name=name)  # noqa: E731
    assert await _peer_tokenize(tokenizers["tls"], named("localhost")) == grpc.StatusCode.OK
    assert await _peer_tokenize(tokenizers["tls"], named("tokenizer.example")) == grpc.StatusCode.UNAVAILABLE


def test_incomplete_or_unreadable_tls_settings_stop_the_service_at_startup(certs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tokenway_tokenizer", "--port", "0", "--tls-cert", certs.server_cert,
                           "--tls-client-ca", str(tmp_path / "missing-ca.pem")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "TOKENWAY_TOKENIZER_TLS_CLIENT_CA (--tls-client-ca): cannot read" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tokenway_tokenizer", "--port", "0", "--tls-cert", certs.server_cert,
                           "--tls-key", certs.client_key],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "no matching PEM certificate chain and private key" in proc.stderr


def test_envoy_refuses_incomplete_tls_settings_and_validates_a_tls_config(certs, tmp_path):
    bad = subprocess.run([sys.executable, "tools/envoy.py", "render", "--out", str(tmp_path / "bad.yaml")], cwd=ROOT,
                         env=_env(TOKENWAY_ENVOY_TLS_CERT=certs.server_cert, TOKENWAY_ENVOY_UPSTREAM_TLS_CERT=certs.client_cert),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "TOKENWAY_ENVOY_TLS_KEY: required with TOKENWAY_ENVOY_TLS_CERT" in bad.stderr
    assert "TOKENWAY_ENVOY_UPSTREAM_TLS_CERT: needs TOKENWAY_ENVOY_UPSTREAM_TLS_CA" in bad.stderr
    ok = subprocess.run([sys.executable, "tools/envoy.py", "validate", "--out", str(tmp_path / "tls.yaml")], cwd=ROOT,
                        env=_env(**_edge_env(certs), TOKENWAY_ENVOY_UPSTREAM_TLS_SERVER_NAME="localhost"),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = (tmp_path / "tls.yaml").read_text()
    assert "DownstreamTlsContext" in text and "require_client_certificate: true" in text
    assert 'sni: "localhost"' in text and "san_type: DNS" in text


# --- the whole chain over mTLS ---

def _edge_env(certs: Certs) -> dict:
    return {"TOKENWAY_ENVOY_TLS_CERT": certs.server_cert, "TOKENWAY_ENVOY_TLS_KEY": certs.server_key,
            "TOKENWAY_ENVOY_TLS_CLIENT_CA": certs.ca, "TOKENWAY_ENVOY_UPSTREAM_TLS_CA": certs.ca,
            "TOKENWAY_ENVOY_UPSTREAM_TLS_CERT": certs.client_cert, "TOKENWAY_ENVOY_UPSTREAM_TLS_KEY": certs.client_key}


def _edge_ssl(certs: Certs, *, client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.ca)
    if client_cert:
        ctx.load_cert_chain(certs.client_cert, certs.client_key)
    return ctx


def _edge_health(url: str, ctx: ssl.SSLContext) -> int | None:
    try:
        return httpx.get(url, verify=ctx, timeout=5).status_code
    except httpx.TransportError:
        return None


@pytest.fixture(scope="module")
def chain(tokenizers, certs, logs, tmp_path_factory):
    """Inference (mTLS), an orchestrator (mTLS itself, mTLS to its peers) and Envoy (HTTPS with client
    certificates, mTLS upstream), next to the mTLS tokenizer."""
    procs = Procs(logs)
    server_tls = ["--tls-cert", certs.server_cert, "--tls-key", certs.server_key, "--tls-client-ca", certs.ca]
    try:
        inference = free_port()
        proc = procs.spawn("inference-mtls", [sys.executable, "-m", "tokenway_inference", "--port", str(inference),
                                              *server_tls], _env())
        _await_serving(procs, proc, inference, "tokenway.inference.v1.InferenceService",
                       _credentials(certs, client_cert=True))
        orchestrator = free_port()
        # auth off: keys are not what this test is about (unknown variables are ignored where it does not exist)
        orch_env = _env(TOKENWAY_ORCHESTRATOR_AUTH="off",
                        TOKENWAY_ORCHESTRATOR_STORE=str(tmp_path_factory.mktemp("store") / "tokenway.db"),
                        TOKENWAY_ORCHESTRATOR_PEER_TLS_CA=certs.ca, TOKENWAY_ORCHESTRATOR_PEER_TLS_CERT=certs.client_cert,
                        TOKENWAY_ORCHESTRATOR_PEER_TLS_KEY=certs.client_key)
        proc = procs.spawn("orchestrator-mtls", [
            sys.executable, "-m", "tokenway_orchestrator", "--port", str(orchestrator), "--processes", "1",
            "--tokenizer-address", f"127.0.0.1:{tokenizers['mtls']}", "--inference-addresses", f"127.0.0.1:{inference}",
            *server_tls], orch_env)
        _await_serving(procs, proc, orchestrator, "tokenway.v1.ChatService", _credentials(certs, client_cert=True))
        rest, admin = free_port(), free_port()
        envoy = procs.spawn("envoy-tls", [sys.executable, "tools/envoy.py", "run", "--out",
                                          str(tmp_path_factory.mktemp("envoy") / "envoy.yaml")],
                            _env(**_edge_env(certs), TOKENWAY_ENVOY_PORT=str(rest), TOKENWAY_ENVOY_ADMIN_PORT=str(admin),
                                 TOKENWAY_ORCHESTRATOR_PORT=str(orchestrator)))
        # GET /health turns 200 once Envoy's gRPC health check of the orchestrator succeeded over mTLS
        url, ctx, deadline = f"https://127.0.0.1:{rest}/health", _edge_ssl(certs), time.monotonic() + STARTUP_SECONDS
        while _edge_health(url, ctx) != 200:
            if envoy.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Envoy's HTTPS /health never 200 (exit code {envoy.poll()}):\n{procs.log(envoy)}")
            time.sleep(0.1)  # readiness poll: Envoy has no watch to follow
        yield {"base_url": f"https://127.0.0.1:{rest}/v1", "health": url, "orchestrator": orchestrator}
    finally:
        procs.stop()


def test_chat_completion_through_https_envoy_and_mtls_between_every_service(chain, certs):
    with httpx.Client(verify=_edge_ssl(certs), timeout=120) as http:
        client = openai.OpenAI(base_url=chain["base_url"], api_key="unused", max_retries=0, http_client=http)
        resp = client.chat.completions.create(model="tokenway-tiny", max_tokens=8, temperature=0,
                                              messages=[{"role": "user", "content": "Say something secure."}])
    assert resp.object == "chat.completion" and resp.choices[0].message.role == "assistant"
    assert resp.usage.completion_tokens > 0 and resp.choices[0].finish_reason in ("stop", "length")


def test_the_edge_requires_a_client_certificate_and_https(chain, certs):
    assert _edge_health(chain["health"], _edge_ssl(certs, client_cert=False)) is None  # handshake refused
    assert _edge_health(chain["health"].replace("https:", "http:"), _edge_ssl(certs)) is None  # plaintext
    assert _edge_health(chain["health"], ssl.create_default_context(cafile=certs.other_ca)) is None  # untrusted


def test_the_orchestrator_refuses_callers_without_a_client_certificate(chain, certs):
    for credentials in (None, _credentials(certs, client_cert=False)):
        target = f"127.0.0.1:{chain['orchestrator']}"
        with (grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)) as ch:
            with pytest.raises(grpc.RpcError) as e:
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
