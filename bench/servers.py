"""The servers `make bench` measures, each started fresh on free loopback ports and stopped after its run.

* `tokenway_suite`: `tools/suite.py up` (tokenizer, inference, orchestrator, Envoy) with its own ports
  (TOKENWAY_*_PORT) and run directory (TOKENWAY_RUN_DIR); `tools/suite.py down` stops it.
* `inference_only`: the inference service alone (the direct path).
* `vllm_server`: vLLM's own OpenAI server from the vLLM venv, configured like tokenway's vLLM engine.
* `transformers_serve`: `transformers serve --continuous-batching` from the default venv.
* `render_prompts`: a tokenizer service for the time it takes to render the bench's chats with RenderChat,
  so the direct path sends exactly the prompt ids (and stop ids) the orchestrator would.

Each returns a `Server`: its addresses, the root pid of each of its processes (for CPU accounting), the
exact commands, and the settings that matter.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MODEL_NAME = "tokenway-tiny"
INFERENCE_SERVICE = "tokenway.inference.v1.InferenceService"
TOKENIZER_SERVICE = "tokenway.tokenizer.v1.TokenizerService"


class StartError(RuntimeError):
    """A server did not come up (the message says why and where its log is)."""


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports below Linux's ephemeral range (32768+), where the bench's own thousands
    of client connections take their local ports: a port picked there can be gone by the time a server binds it."""
    socks, ports = [], []
    rng = random.Random()
    try:
        while len(ports) < n:
            port = rng.randrange(20000, 32000)
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


@dataclasses.dataclass
class Server:
    name: str
    roots: dict[str, int]  # label -> pid of each process the server consists of
    addresses: dict[str, str]  # "rest": "127.0.0.1:P", "grpc": ..., "inference": ...
    commands: list[str]
    settings: dict[str, str]
    stop: Callable[[], None]
    started_s: float = 0.0  # seconds from launch to ready
    api_key: str = ""  # tokenway's development key (its suite runs with auth on, as `make run` does)


SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "CREDENTIAL")


def settings_of(env: dict) -> dict[str, str]:
    """The environment that shapes a server (no ports, no run directory, nothing secret)."""
    keep = ("TOKENWAY_", "VLLM_", "OMP_", "MKL_", "HF_HUB_OFFLINE")
    return {k: v for k, v in sorted(env.items()) if k.startswith(keep) and not k.endswith("_PORT")
            and k != "TOKENWAY_RUN_DIR" and not any(w in k for w in SECRET_WORDS)}


def _grpc_status(port: int, service: str) -> str:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except grpc.RpcError as e:
        return e.code().name


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(ready: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"{what} exited during startup (rc {proc.returncode}); see {log}")
        if ready():
            return
        time.sleep(0.25)  # startup poll
    raise StartError(f"{what} not ready after {timeout:.0f}s; see {log}")


def _stop_group(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGTERM the process group (the server and its children), SIGKILL what outlives `timeout`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (vLLM's engine processes)
    except ProcessLookupError:
        pass
    proc.wait()


def _launch(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def tokenway_suite(name: str, env: dict, run_dir: Path, timeout: float = 900.0) -> Server:
    names = ("ORCHESTRATOR", "TOKENIZER", "INFERENCE", "ENVOY", "ENVOY_ADMIN")
    ports = dict(zip(names, map(str, free_ports(len(names)))))
    env = dict(env, TOKENWAY_RUN_DIR=str(run_dir), **{f"TOKENWAY_{k}_PORT": v for k, v in ports.items()})
    # its own key store and development key, in its run directory (auth on, usage recorded: the default)
    env.setdefault("TOKENWAY_ORCHESTRATOR_STORE", str(run_dir / "tokenway.db"))
    env.setdefault("TOKENWAY_DEV_API_KEY_FILE", str(run_dir / "dev-api-key"))
    cmd = [PY, "tools/suite.py", "up", "--timeout", str(int(timeout))]

    def stop() -> None:
        subprocess.run([PY, "tools/suite.py", "down"], cwd=ROOT, env=env, capture_output=True)

    t0 = time.monotonic()
    try:
        up = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    except BaseException:  # interrupted: what did start must not outlive the bench
        stop()
        raise
    started = time.monotonic() - t0
    if up.returncode != 0:
        stop()
        raise StartError(f"tokenway did not come up (logs in {run_dir}):\n{up.stdout[-2000:]}{up.stderr[-2000:]}")
    roots = {n: int((run_dir / f"{n}.pid").read_text()) for n in ("envoy", "orchestrator", "tokenizer", "inference")}
    key_file = Path(env["TOKENWAY_DEV_API_KEY_FILE"])
    return Server(name, roots, {"rest": f"127.0.0.1:{ports['ENVOY']}", "grpc": f"127.0.0.1:{ports['ORCHESTRATOR']}",
                                "inference": f"127.0.0.1:{ports['INFERENCE']}"},
                  [" ".join(cmd) + f"  (TOKENWAY_RUN_DIR={run_dir.relative_to(ROOT)})"], settings_of(env), stop, started,
                  key_file.read_text().strip() if key_file.exists() else "")


def inference_python(env: dict) -> str:
    if env.get("TOKENWAY_INFERENCE_ENGINE") != "vllm":
        return PY
    return str(Path(env.get("TOKENWAY_VLLM_VENV", ROOT / ".tokenway" / "venv-vllm")) / "bin" / "python")


def inference_only(name: str, env: dict, run_dir: Path, timeout: float = 900.0) -> Server:
    port = free_port()
    cmd = [inference_python(env), "-m", "tokenway_inference", "--host", "127.0.0.1", "--port", str(port)]
    log = run_dir / "inference.log"
    env = dict(env, PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = _launch(cmd, env, log)
    try:
        _wait(lambda: _grpc_status(port, INFERENCE_SERVICE) == "SERVING", proc, "the inference service", log, timeout)
    except BaseException:
        _stop_group(proc)
        raise
    return Server(name, {"inference": proc.pid}, {"inference": f"127.0.0.1:{port}"}, [" ".join(cmd)],
                  settings_of(env), lambda: _stop_group(proc), time.monotonic() - t0)


def render_prompts(texts: list[str], env: dict, run_dir: Path) -> tuple[list[list[int]], list[int]]:
    """(prompt ids per text, stop token ids) as the tokenizer service's RenderChat gives them."""
    from tokenway.tokenizer.v1 import tokenizer_pb2, tokenizer_pb2_grpc  # noqa: PLC0415

    port = free_port()
    log = run_dir / "render-tokenizer.log"
    proc = _launch([PY, "-m", "tokenway_tokenizer", "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        _wait(lambda: _grpc_status(port, TOKENIZER_SERVICE) == "SERVING", proc, "the tokenizer service", log, 300)
        out, stops = [], []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = tokenizer_pb2_grpc.TokenizerServiceStub(ch)
            for t in texts:
                r = stub.RenderChat(tokenizer_pb2.RenderChatRequest(
                    messages=[tokenizer_pb2.ChatTurn(role="user", content=t)], add_generation_prompt=True), timeout=60)
                out.append(list(r.prompt_token_ids))
                stops = list(r.stop_token_ids)
        return out, stops
    finally:
        _stop_group(proc)


def vllm_server(name: str, env: dict, model: str, kv_bytes: int, run_dir: Path, timeout: float = 900.0) -> Server:
    """vLLM's OpenAI server with tokenway's vLLM engine configuration: the same KV bytes, 32 sequences,
    the same CPU binding and compile cache."""
    port = free_port()
    vpy = str(Path(env.get("TOKENWAY_VLLM_VENV", ROOT / ".tokenway" / "venv-vllm")) / "bin" / "python")
    cmd = [vpy, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", MODEL_NAME,
           "--host", "127.0.0.1", "--port", str(port), "--max-num-seqs", "32", "--kv-cache-memory-bytes", str(kv_bytes)]
    log = run_dir / "vllm-server.log"
    t0 = time.monotonic()
    proc = _launch(cmd, env, log)
    try:
        _wait(lambda: _http_ok(f"http://127.0.0.1:{port}/health"), proc, "vLLM's server", log, timeout)
    except BaseException:
        _stop_group(proc)
        raise
    return Server(name, {"vllm": proc.pid}, {"rest": f"127.0.0.1:{port}"}, [" ".join(cmd)], settings_of(env),
                  lambda: _stop_group(proc, 120), time.monotonic() - t0)


def transformers_serve(name: str, env: dict, model: str, run_dir: Path, kv_tokens: int = 65536,
                       timeout: float = 600.0) -> Server:
    """`transformers serve --continuous-batching` preloading the model directory (its `model` field must be
    that path); its paged KV cache sized like tokenway's (kv_tokens), else it reserves most of the RAM."""
    port = free_port()
    block = 256
    cmd = [str(Path(PY).parent / "transformers"), "serve", model, "--continuous-batching", "--host", "127.0.0.1",
           "--port", str(port), "--cb-block-size", str(block), "--cb-num-blocks", str(max(1, kv_tokens // block))]
    log = run_dir / "transformers-serve.log"
    t0 = time.monotonic()
    proc = _launch(cmd, env, log)
    try:
        _wait(lambda: _http_ok(f"http://127.0.0.1:{port}/health"), proc, "transformers serve", log, timeout)
    except BaseException:
        _stop_group(proc)
        raise
    return Server(name, {"transformers-serve": proc.pid}, {"rest": f"127.0.0.1:{port}"}, [" ".join(cmd)],
                  settings_of(env), lambda: _stop_group(proc, 30), time.monotonic() - t0)
