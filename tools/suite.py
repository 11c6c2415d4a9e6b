"""Runs the tokenway suite on loopback: tokenizer, inference, orchestrator and Envoy, as separate processes.

    python tools/suite.py run     foreground; prints when each service is SERVING; Ctrl-C/SIGTERM stops all
    python tools/suite.py up      same in the background; returns once all three are SERVING
    python tools/suite.py down    stops what `up` started
    python tools/suite.py status  health of each service

Ports: TOKENWAY_ORCHESTRATOR_PORT (50051), TOKENWAY_TOKENIZER_PORT (50052), TOKENWAY_INFERENCE_PORT
(50053), TOKENWAY_ENVOY_PORT (8080, REST) and TOKENWAY_ENVOY_ADMIN_PORT (9901); Prometheus metrics on
TOKENWAY_ORCHESTRATOR_METRICS_PORT (9091), TOKENWAY_TOKENIZER_METRICS_PORT (9092) and
TOKENWAY_INFERENCE_METRICS_PORT (9093), 0 for none. Traces: the standard OTEL_* variables, which every process
inherits (OTEL_EXPORTER_OTLP_ENDPOINT=http://host:4317 turns them on). The model:
TOKENWAY_MODEL (default: the embedded .tokenway/models/tokenway-tiny). TOKENWAY_INFERENCE_ENGINE=vllm runs
the inference service from the vLLM venv (`make setup-vllm`; TOKENWAY_VLLM_VENV, default .tokenway/venv-vllm),
the other services unchanged. Logs and pids live in .tokenway/run/.

Auth: the orchestrator requires an API key (TOKENWAY_ORCHESTRATOR_AUTH=off turns that off). The first start
creates a development key in the store (TOKENWAY_ORCHESTRATOR_STORE, default .tokenway/tokenway.db), prints it
once and writes it to .tokenway/dev-api-key (TOKENWAY_DEV_API_KEY_FILE); later starts reuse it while the store
accepts it. More keys: `tokenway keys create NAME`.

Processes: the orchestrator and the tokenizer each run several worker processes on their port when the
cores allow (see cpu_tier_processes); TOKENWAY_ORCHESTRATOR_PROCESSES / TOKENWAY_TOKENIZER_PROCESSES
override it. The pid in a service's pid file is its supervisor's: signalling it reaches every worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
#: Each service's Prometheus endpoint unless TOKENWAY_<SERVICE>_METRICS_PORT says otherwise (0: none).
METRICS_PORTS = {"orchestrator": 9091, "tokenizer": 9092, "inference": 9093}
RUN = Path(os.environ.get("TOKENWAY_RUN_DIR", ROOT / ".tokenway" / "run"))


def inference_python(env) -> str:
    """The interpreter of the inference service: the vLLM venv's for the vllm engine, else this one's."""
    if env.get("TOKENWAY_INFERENCE_ENGINE", "transformers") != "vllm":
        return sys.executable
    py = Path(env.get("TOKENWAY_VLLM_VENV", ROOT / ".tokenway" / "venv-vllm")) / "bin" / "python"
    if not py.exists():
        sys.exit(f"engine vllm: {py} is missing: run `make setup-vllm`")
    return str(py)


def cpu_tier_processes(cores: int) -> dict[str, int]:
    """Worker processes of the CPU tier on a host of `cores` that it shares with the engine and Envoy: the orchestrator a quarter of the cores, the tokenizer (Rust, which releases
    the GIL, on a thread pool of its own) an eighth; each at least 1 and at most 8. 2 cores: 1 and 1;
    8: 2 and 1; 16: 4 and 2; 64 and more: 8 and 8."""
    return {"orchestrator": max(1, min(8, cores // 4)), "tokenizer": max(1, min(8, cores // 8))}


def dev_key_file(env) -> Path:
    return Path(env.get("TOKENWAY_DEV_API_KEY_FILE", ROOT / ".tokenway" / "dev-api-key"))


def ensure_dev_key(env) -> str | None:
    """With auth on (the default), the development API key: the one in .tokenway/dev-api-key while the store
    still accepts it, else a new one, created in the store, written there (mode 0600) and printed once."""
    if env.get("TOKENWAY_ORCHESTRATOR_AUTH", "on").strip().lower() in ("0", "false", "no", "off"):
        print("   auth is off (TOKENWAY_ORCHESTRATOR_AUTH=off): every caller is anonymous", flush=True)
        return None
    from tokenway_orchestrator.store import StoreError, open_store

    path = dev_key_file(env)
    store = open_store(env.get("TOKENWAY_ORCHESTRATOR_STORE", str(ROOT / ".tokenway" / "tokenway.db")))
    try:
        if path.exists():
            key = path.read_text().strip()
            found = store.authenticate(key)
            if found is not None and not found.revoked:
                print(f"   API key: the development key in {path} (key '{found.name}')", flush=True)
                return key
        name = "dev"
        while True:
            try:
                found, key = store.create_key(name, owner="make run", priority="interactive")
                break
            except StoreError as exc:  # a revoked or foreign "dev": a new name
                if exc.reason != "ALREADY_EXISTS":
                    raise
                name = f"dev-{int(time.time())}"
    finally:
        store.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    print(f"==> created a development API key '{name}' (shown once; also in {path}):\n    {key}", flush=True)
    return key


def services() -> list[dict]:
    env = os.environ
    tok = int(env.get("TOKENWAY_TOKENIZER_PORT", 50052))
    inf = int(env.get("TOKENWAY_INFERENCE_PORT", 50053))
    orch = int(env.get("TOKENWAY_ORCHESTRATOR_PORT", 50051))
    rest = int(env.get("TOKENWAY_ENVOY_PORT", 8080))
    admin = int(env.get("TOKENWAY_ENVOY_ADMIN_PORT", 9901))
    metrics = {name: int(env.get(f"TOKENWAY_{name.upper()}_METRICS_PORT", port))
               for name, port in METRICS_PORTS.items()}
    host = "127.0.0.1"
    py = sys.executable
    return [
        {"name": "tokenizer", "port": tok, "health": "tokenway.tokenizer.v1.TokenizerService",
         "metrics": metrics["tokenizer"],
         "cmd": [py, "-m", "tokenway_tokenizer", "--host", host, "--port", str(tok),
                 "--metrics-port", str(metrics["tokenizer"])]},
        {"name": "inference", "port": inf, "health": "tokenway.inference.v1.InferenceService",
         "metrics": metrics["inference"],
         "cmd": [inference_python(env), "-m", "tokenway_inference", "--host", host, "--port", str(inf),
                 "--metrics-port", str(metrics["inference"])]},
        {"name": "orchestrator", "port": orch, "health": "tokenway.v1.ChatService",
         "metrics": metrics["orchestrator"],
         "cmd": [py, "-m", "tokenway_orchestrator", "--host", host, "--port", str(orch), "--tokenizer-address",
                 f"{host}:{tok}", "--inference-addresses", f"{host}:{inf}",
                 "--metrics-port", str(metrics["orchestrator"])]},
        {"name": "envoy", "port": rest, "admin": admin, "label": "REST (Envoy)",
         "cmd": [py, str(ROOT / "tools" / "envoy.py"), "run",
                 "--out", str(RUN / "envoy.yaml")]},
    ]


def ready(s: dict) -> str:
    if "admin" in s:  # Envoy: GET /health is 200 once it sees the orchestrator SERVING
        context = None
        if os.environ.get("TOKENWAY_ENVOY_TLS_CERT"):  # HTTPS edge; a client certificate when it requires one
            ca, cert, key = tls_client()
            context = ssl.create_default_context(cafile=ca)
            if cert:
                context.load_cert_chain(cert, key)
        scheme = "https" if context else "http"
        try:
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{s['port']}/health", timeout=1, context=context) as r:
                return "SERVING" if r.status == 200 else "NOT_SERVING"
        except urllib.error.HTTPError:
            return "NOT_SERVING"
        except OSError:
            return "DOWN"
    return check(s["port"], s["health"], name=s["name"])


def tls_client(env=os.environ) -> tuple[str | None, str | None, str | None]:
    """The CA that verifies the services' certificates and the client certificate and key the suite presents to
    those that require one: TOKENWAY_SUITE_TLS_CA/_CERT/_KEY, else the orchestrator's PEER_TLS_* ones."""
    def pick(k: str) -> str | None:
        return env.get(f"TOKENWAY_SUITE_TLS_{k}") or env.get(f"TOKENWAY_ORCHESTRATOR_PEER_TLS_{k}") or None
    return pick("CA"), pick("CERT"), pick("KEY")


def channel(name: str, port: int) -> grpc.Channel:
    """Plaintext, or TLS when the service serves it (TOKENWAY_<NAME>_TLS_CERT set)."""
    if not os.environ.get(f"TOKENWAY_{name.upper()}_TLS_CERT"):
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    ca, cert, key = (Path(p).read_bytes() if p else None for p in tls_client())
    return grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca, key, cert))


def check(port: int, service: str, timeout: float = 1.0, name: str = "") -> str:
    try:
        with channel(name, port) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except grpc.RpcError as e:
        return "DOWN" if e.code() == grpc.StatusCode.UNAVAILABLE else e.code().name


def port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_serving(procs: list[tuple[dict, subprocess.Popen]], timeout: float) -> bool:
    """Polls each service's readiness until all are SERVING, one exits, or the deadline passes."""
    deadline = time.monotonic() + timeout
    pending = {s["name"]: (s, p) for s, p in procs}
    while pending:
        for name, (s, p) in list(pending.items()):
            if p.poll() is not None:
                print(f"!! {name} exited with code {p.returncode}; see {RUN / (name + '.log')}", flush=True)
                return False
            if ready(s) == "SERVING":
                print(f"   {name:<12} SERVING on 127.0.0.1:{s['port']}", flush=True)
                del pending[name]
        if time.monotonic() > deadline:
            print(f"!! not SERVING after {timeout:.0f}s: {', '.join(pending)}", flush=True)
            return False
        time.sleep(0.2)  # readiness poll interval
    return True


def start_all(detach: bool) -> list[tuple[dict, subprocess.Popen]]:
    RUN.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    # Everything shares this host. The transformers engine takes every core: it sizes each step's torch
    # threads by the step's work (a small decode step runs on one, a prefill chunk on all) and its idle
    # threads sleep (2 cores, end to end, c=1/8/32: 155/351/448 tok/s vs 131/326/423 on one thread).
    # vLLM's CPU worker spins on every core it gets: it leaves the CPU tier one.
    if env.get("TOKENWAY_INFERENCE_ENGINE", "transformers") == "vllm":
        env.setdefault("TOKENWAY_INFERENCE_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
    for name, n in cpu_tier_processes(os.cpu_count() or 2).items():
        env.setdefault(f"TOKENWAY_{name.upper()}_PROCESSES", str(n))
    print(f"   CPU tier on {os.cpu_count()} cores: orchestrator {env['TOKENWAY_ORCHESTRATOR_PROCESSES']} "
          f"process(es), tokenizer {env['TOKENWAY_TOKENIZER_PROCESSES']} (TOKENWAY_ORCHESTRATOR_PROCESSES / "
          "TOKENWAY_TOKENIZER_PROCESSES override)", flush=True)
    if env.get("TOKENWAY_INFERENCE_ENGINE") == "vllm":  # vLLM's compile cache survives restarts, under .tokenway/
        env.setdefault("VLLM_CACHE_ROOT", str(ROOT / ".tokenway" / "vllm-cache"))
    for s in services():
        for port, what in ((s["port"], s["name"]), (s.get("metrics", 0), f"{s['name']} metrics")):
            if port and port_taken(port):
                sys.exit(f"port {port} ({what}) is already taken (is the suite up? `make down`)")
    env.setdefault("TOKENWAY_ORCHESTRATOR_STORE", str(ROOT / ".tokenway" / "tokenway.db"))
    ensure_dev_key(env)
    procs = []
    for s in services():
        if port_taken(s["port"]):
            sys.exit(f"port {s['port']} ({s['name']}) is already taken (is the suite up? `make down`)")
        log = open(RUN / f"{s['name']}.log", "ab")
        kwargs = {"stdout": log, "stderr": subprocess.STDOUT} if detach else {}
        p = subprocess.Popen(s["cmd"], env=env, cwd=ROOT,
                             start_new_session=detach, **kwargs)
        (RUN / f"{s['name']}.pid").write_text(str(p.pid))
        procs.append((s, p))
    return procs


def _alive(pid: int, proc: subprocess.Popen | None) -> bool:
    if proc is not None:  # our own child: reap it, or it lingers as a zombie that looks alive
        return proc.poll() is None
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop(procs: list[tuple[str, int, subprocess.Popen | None]], timeout: float = 30.0) -> None:
    """SIGTERM each service (they drain), wait for them, SIGKILL any that outlive the timeout."""
    for name, pid, _ in procs:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for name, pid, proc in procs:
        while _alive(pid, proc) and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting for a process to exit
        if _alive(pid, proc):
            print(f"!! {name} ignored SIGTERM; killing", flush=True)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        print(f"   {name:<12} stopped", flush=True)


def print_metrics() -> None:
    urls = [f"{s['name']} http://127.0.0.1:{s['metrics']}/metrics" for s in services() if s.get("metrics")]
    if urls:
        print(f"   metrics (Prometheus): {'  |  '.join(urls)}", flush=True)
    env = os.environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    off = env.get("OTEL_SDK_DISABLED", "").lower() == "true" or "none" in env.get("OTEL_TRACES_EXPORTER", "").lower()
    if endpoint and not off:  # every process inherits the OTEL_* variables (each service's log says what it does)
        print(f"   traces (OpenTelemetry): every service and Envoy export to {endpoint}", flush=True)


def cmd_run(timeout: float) -> int:
    print("==> starting tokenizer, inference, orchestrator and Envoy (Ctrl-C stops all)", flush=True)
    procs = start_all(detach=False)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ok = wait_serving(procs, timeout)
    if ok:
        orch, rest = services()[2]["port"], services()[3]["port"]
        print(f"==> tokenway is up: grpcurl -plaintext 127.0.0.1:{orch} list  |  REST: http://127.0.0.1:{rest}/v1"
              f"  |  API key: $(cat {dev_key_file(os.environ)})", flush=True)
        print_metrics()
    while ok and not stopping and all(p.poll() is None for _, p in procs):
        time.sleep(0.5)  # supervisor idle loop: wakes for a signal or a child's exit
    print("==> stopping", flush=True)
    stop([(s["name"], p.pid, p) for s, p in procs])
    return 0 if ok else 1


def cmd_up(timeout: float) -> int:
    print("==> starting tokenway in the background (logs in .tokenway/run/)", flush=True)
    procs = start_all(detach=True)
    if not wait_serving(procs, timeout):
        stop([(s["name"], p.pid, p) for s, p in procs])
        return 1
    print("==> tokenway is up; `make down` stops it", flush=True)
    print_metrics()
    return 0


def cmd_down() -> int:
    found = [(f.stem, int(f.read_text()), None) for f in sorted(RUN.glob("*.pid"))] if RUN.exists() else []
    if not found:
        print("nothing to stop")
        return 0
    order = {"envoy": 0, "orchestrator": 1, "tokenizer": 2, "inference": 3}
    stop(sorted(found, key=lambda x: order.get(x[0], 9)))
    return 0


def cmd_status() -> int:
    bad = 0
    for s in services():
        state = ready(s)
        bad += state != "SERVING"
        live = "" if "admin" in s else f"  liveness={check(s['port'], '', name=s['name'])}"
        metrics = f"  metrics=http://127.0.0.1:{s['metrics']}/metrics" if s.get("metrics") else ""
        print(f"{s['name']:<12} 127.0.0.1:{s['port']}{live}  readiness={state}{metrics}")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "up", "down", "status"))
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("TOKENWAY_STARTUP_TIMEOUT", 300)))
    args = parser.parse_args()
    return {"run": lambda: cmd_run(args.timeout), "up": lambda: cmd_up(args.timeout), "down": cmd_down,
            "status": cmd_status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
