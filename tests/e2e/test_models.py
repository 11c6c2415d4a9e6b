"""Several models behind one orchestrator, through the real processes and the public surfaces (the openai SDK
and raw HTTP through Envoy, the grpc health service): tokenway-tiny and tokenway-pico side by side, each
with its own tokenizer service and inference replica, named by aliases; a model whose only replica is
killed is served by its fallback; a models file rewritten in place changes the models without a restart.

Beside the session's suite: pico's tokenizer and inference processes, one tiny inference replica of this
module's own (so that it may be killed), and two orchestrators on models files (one with a fallback, one
whose file is rewritten), each behind its own Envoy.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx2 as httpx  # the HTTP client the openai SDK itself uses
import openai
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import MODEL_DIR, ROOT, free_port
from tests.e2e.procs import create_key, spawn, start_envoy, stop, watch_health

pytestmark = pytest.mark.e2e
PICO_DIR = Path(os.environ.get("TOKENWAY_MODEL_PICO") or ROOT / ".tokenway" / "models" / "tokenway-pico")
TINY, PICO = "tokenway-tiny", "tokenway-pico"
HEALTH = "tokenway.v1.ModelService/"  # + a model's name: its readiness on the orchestrator's health service
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
HI = [{"role": "user", "content": "Say something about gateways."}]


def _service(module: str, env: dict, port: int, model: Path) -> subprocess.Popen:
    """A tokenizer or inference process serving the model directory `model`."""
    return spawn([sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), "--model", str(model)], env)


def _model(name: str, aliases: list[str], tokenizer: int, replica: int, **more: str) -> dict:
    return {"name": name, "aliases": aliases, "tokenizers": [f"127.0.0.1:{tokenizer}"],
            "replicas": [f"127.0.0.1:{replica}"], **more}


def _write(path: Path, *models: dict) -> None:
    """The models file, written as an operator's tool writes it: a new file beside it, renamed over it."""
    new = path.with_name(f".{path.name}.new")
    new.write_text(yaml.safe_dump({"models": list(models)}, sort_keys=False))
    os.replace(new, path)


@dataclasses.dataclass
class Fleet:
    procs: dict[str, subprocess.Popen]
    ports: dict[str, int]
    urls: dict[str, str]  # orchestrator -> its Envoy's /v1
    key: str
    reload_file: Path
    pico_model: dict  # pico's entry in the models files

    def client(self, orchestrator: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.urls[orchestrator], api_key=self.key, max_retries=0, timeout=120)

    def http(self, orchestrator: str) -> httpx.Client:
        return httpx.Client(base_url=self.urls[orchestrator], timeout=60,
                            headers={"authorization": f"Bearer {self.key}"})


@pytest.fixture(scope="module")
def fleet(suite, tmp_path_factory):
    """pico's tokenizer and replica, a tiny replica of our own, and two orchestrators on models files behind
    their own Envoys: `fallback` (tiny on our replica, falling back to pico; pico) and `reload` (tiny on the
    suite's replica; pico; its file re-read every 0.2 s). Both models SERVING on both (health Watch) on yield."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "model" / "build_model.py"), "--preset", "pico", "--out",
                    str(PICO_DIR)], check=True, capture_output=True)  # reused when up to date
    state = tmp_path_factory.mktemp("models")
    # this file's own replicas run on the embedded engine whatever the session suite's is (make test-vllm runs it
    # on vLLM, from another venv): what is tested here is the registry, not the engine
    env = dict(suite.env, HF_HUB_OFFLINE="1", TOKENWAY_INFERENCE_THREADS="1", TOKENWAY_INFERENCE_ENGINE="transformers",
               TOKENWAY_ORCHESTRATOR_STORE=str(state / "tokenway.db"))
    ports = {name: free_port() for name in ("pico_tokenizer", "pico_inference", "tiny_inference", "fallback", "reload")}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["pico_tokenizer"] = _service("tokenway_tokenizer", env, ports["pico_tokenizer"], PICO_DIR)
        procs["pico_inference"] = _service("tokenway_inference", env, ports["pico_inference"], PICO_DIR)
        procs["tiny_inference"] = _service("tokenway_inference", env, ports["tiny_inference"], MODEL_DIR)
        key = create_key(env, "models")  # while those start
        pico = _model(PICO, ["pico"], ports["pico_tokenizer"], ports["pico_inference"])
        files = {"fallback": state / "fallback.yaml", "reload": state / "reload.yaml"}
        _write(files["fallback"], _model(TINY, ["tiny"], suite.tokenizer, ports["tiny_inference"], fallback=PICO), pico)
        _write(files["reload"], _model(TINY, ["tiny"], suite.tokenizer, suite.inference), pico)
        reload_every = {"fallback": {}, "reload": {"TOKENWAY_ORCHESTRATOR_RELOAD_SECONDS": "0.2"}}
        for name, path in files.items():
            procs[name] = spawn([sys.executable, "-m", "tokenway_orchestrator", "--host", "127.0.0.1", "--port",
                                 str(ports[name]), "--models", str(path)], dict(env, **reload_every[name]))
        urls = {}
        for name in files:
            procs[f"{name}_envoy"], rest = start_envoy(env, ports[name])
            urls[name] = f"http://127.0.0.1:{rest}/v1"
        for name in files:
            for model in (TINY, PICO):
                watch_health(ports[name], HEALTH + model, SERVING)
        yield Fleet(procs, ports, urls, key, files["reload"], pico)
    finally:
        stop(list(procs.values()))


def _chat(client: openai.OpenAI, model: str):
    """A short greedy chat: 4 tokens whatever the model (ignore_eos), so that each answer is some text."""
    return client.chat.completions.create(model=model, messages=HI, max_tokens=4, temperature=0,
                                          extra_body={"ignore_eos": True})


def _error(resp: httpx.Response) -> dict:
    """The OpenAI error object of a REST answer, checked for its shape."""
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_two_models_side_by_side_each_with_its_own_tokenizer(fleet):
    client = fleet.client("fallback")
    assert sorted(m.id for m in client.models.list()) == [PICO, TINY]
    assert client.models.retrieve("pico").id == PICO  # an alias names its model
    tiny, pico = _chat(client, "tiny"), _chat(client, "pico")
    assert (tiny.model, pico.model) == (TINY, PICO)
    assert tiny.usage.completion_tokens == pico.usage.completion_tokens == 4
    # the same message is another number of tokens in each model's own tokenizer
    assert tiny.usage.prompt_tokens != pico.usage.prompt_tokens
    assert tiny.system_fingerprint != pico.system_fingerprint

    chunks = list(client.chat.completions.create(model="pico", messages=HI, max_tokens=6, temperature=0, stream=True,
                                                 stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True}))
    assert {c.model for c in chunks} == {PICO}
    last = chunks[-1]
    assert chunks[-2].choices[0].finish_reason == "length"
    assert last.choices == [] and last.usage is not None  # the usage chunk ends the stream
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (pico.usage.prompt_tokens, 6)

    with fleet.http("fallback") as http:
        resp = http.get("/models/tokenway-nano")
    err = _error(resp)
    assert resp.status_code == 404 and (err["type"], err["code"]) == ("not_found_error", "MODEL_NOT_FOUND")
    assert "tokenway-nano" in err["message"] and f"'{PICO}', '{TINY}'" in err["message"]  # what is served


def test_a_model_whose_replica_is_killed_is_served_by_its_fallback(fleet):
    client = fleet.client("fallback")
    assert _chat(client, TINY).model == TINY
    victim = fleet.procs["tiny_inference"]  # (after the side-by-side test, in file order)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    watch_health(fleet.ports["fallback"], HEALTH + TINY, NOT_SERVING, seconds=60)

    served, pico = _chat(client, TINY), _chat(client, PICO)
    assert served.model == PICO and served.usage.completion_tokens == 4
    assert served.usage.prompt_tokens == pico.usage.prompt_tokens  # counted in the model that served it
    chunks = list(client.chat.completions.create(model="tiny", messages=HI, max_tokens=3, stream=True,
                                                 stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True}))
    assert {c.model for c in chunks} == {PICO} and chunks[-1].usage.completion_tokens == 3
    with fleet.http("fallback") as http:
        resp = http.get(f"/models/{TINY}")
    err = _error(resp)  # configured but down: unavailable, not unknown
    assert resp.status_code == 503 and (err["type"], err["code"]) == ("service_unavailable", "MODEL_UNAVAILABLE")
    assert resp.headers["retry-after"] == "1"  # retryable, shortly (the SDK's retries wait this long)
    assert [m.id for m in client.models.list()] == [PICO]


def test_a_rewritten_models_file_changes_the_models_without_a_restart(fleet):
    client, orchestrator = fleet.client("reload"), fleet.procs["reload"]
    assert _chat(client, "tiny").model == TINY
    with grpc.insecure_channel(f"127.0.0.1:{fleet.ports['reload']}") as ch:
        # one Watch stream across the reload: a restart would have broken it
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=HEALTH + TINY), timeout=60)
        assert next(watch).status == SERVING
        _write(fleet.reload_file, {**fleet.pico_model, "aliases": ["p2"]})
        assert next(s.status for s in watch if s.status != SERVING) == NOT_SERVING
        watch.cancel()
    assert orchestrator.poll() is None

    assert _chat(client, "p2").model == PICO
    for name in (TINY, "tiny"):
        with pytest.raises(openai.NotFoundError) as e:
            _chat(client, name)
        assert e.value.code == "MODEL_NOT_FOUND" and e.value.param == "model"
    with fleet.http("reload") as http:
        resp = http.get(f"/models/{TINY}")
    err = _error(resp)  # removed: unknown now, no longer unavailable
    assert resp.status_code == 404 and err["code"] == "MODEL_NOT_FOUND"
    assert [m.id for m in client.models.list()] == [PICO]
