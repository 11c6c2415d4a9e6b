"""Huge prompts against a running suite: how fast they are refused and what they cost everyone else.

    python bench/hostile.py   (after `make up`; honours TOKENWAY_ENVOY_PORT, TOKENWAY_*_PORT, TOKENWAY_RUN_DIR)

For one 60 MB chat prompt and for four concurrent 8 MB ones (far past the context), it reports: the time
to reject each, the latency of small chat requests sent meanwhile against their idle latency (bar: at
most 2x idle + 50 ms), the peak RSS growth of the tokenizer and the orchestrator (bar: 200 MB), and the
latency of health checks (gRPC Check on each service, Envoy GET /health) while it lasts (bar: 100 ms).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx2 as httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
ENV = os.environ
REST = f"http://127.0.0.1:{ENV.get('TOKENWAY_ENVOY_PORT', '8080')}"
RUN = Path(ENV.get("TOKENWAY_RUN_DIR", ROOT / ".tokenway" / "run"))
SERVICES = {"orchestrator": (ENV.get("TOKENWAY_ORCHESTRATOR_PORT", "50051"), "tokenway.v1.ChatService"),
            "tokenizer": (ENV.get("TOKENWAY_TOKENIZER_PORT", "50052"), "tokenway.tokenizer.v1.TokenizerService"),
            "inference": (ENV.get("TOKENWAY_INFERENCE_PORT", "50053"), "tokenway.inference.v1.InferenceService")}
SMALL = {"model": "tokenway-tiny", "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 2}
ORCHESTRATOR = f"127.0.0.1:{SERVICES['orchestrator'][0]}"


def rss_mb(service: str, key: str) -> float:
    pid = int((RUN / f"{service}.pid").read_text())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def small_latency(http: httpx.Client) -> float:
    t = time.perf_counter()
    r = http.post("/v1/chat/completions", json=SMALL)
    assert r.status_code == 200, r.text
    return (time.perf_counter() - t) * 1e3


class Prober:
    """Until stopped: small chat requests back to back, and health checks every 20 ms on every service.
    Runs in its own process, so that the senders' work on huge bodies cannot delay its measurements."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.small: list[float] = []
        self.health: dict[str, list[float]] = {name: [] for name in [*SERVICES, "envoy /health"]}

    def run(self, conn) -> None:
        threading.Thread(target=self._health, daemon=True).start()
        threading.Thread(target=lambda: (conn.poll(None), self.stop.set()), daemon=True).start()
        conn.send("started")
        with httpx.Client(base_url=REST, timeout=120) as http:
            while not self.stop.is_set():
                self.small.append(small_latency(http))
        time.sleep(0.1)  # let the health thread finish its round
        conn.send((self.small, self.health))

    def _health(self) -> None:
        channels = {n: grpc.insecure_channel(f"127.0.0.1:{port}") for n, (port, _) in SERVICES.items()}
        stubs = {n: health_pb2_grpc.HealthStub(ch) for n, ch in channels.items()}
        with httpx.Client(base_url=REST, timeout=30) as http:
            while not self.stop.is_set():
                for name, (_, service) in SERVICES.items():
                    t = time.perf_counter()
                    stubs[name].Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
                    self.health[name].append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                http.get("/health")
                self.health["envoy /health"].append((time.perf_counter() - t) * 1e3)
                self.stop.wait(0.02)  # probe pacing


def _rest_sender(mb: float):
    body = json.dumps({"model": "tokenway-tiny", "max_tokens": 2, "messages": [
        {"role": "user", "content": "lorem ipsum dolor " * int(mb * 1024 * 1024 // 18)}]}).encode()

    def send() -> tuple:
        with httpx.Client(base_url=REST, timeout=300) as http:
            t = time.perf_counter()
            r = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
            return f"HTTP {r.status_code}", (time.perf_counter() - t) * 1e3, r.json()["error"]["code"]
    return send


def _grpc_sender(mb: float):
    from google.protobuf import struct_pb2
    from tokenway.v1 import chat_pb2, chat_pb2_grpc

    from tokenway_common.errors import error_info

    req = chat_pb2.CreateChatCompletionRequest(model="tokenway-tiny", max_tokens=2, messages=[chat_pb2.ChatRequestMessage(
        role="user", content=struct_pb2.Value(string_value="lorem ipsum dolor " * int(mb * 1024 * 1024 // 18)))])

    def send() -> tuple:
        with grpc.insecure_channel(ORCHESTRATOR, options=[("grpc.max_send_message_length", 2**30)]) as ch:
            t = time.perf_counter()
            try:
                chat_pb2_grpc.ChatServiceStub(ch).CreateChatCompletion(req, timeout=300)
                return "OK", (time.perf_counter() - t) * 1e3, "-"
            except grpc.RpcError as e:
                info = error_info(e)
                return e.code().name, (time.perf_counter() - t) * 1e3, info.reason if info else e.details()
    return send


def scenario(name: str, sizes_mb: list[float], idle_ms: float, surface: str) -> list[str]:
    before = {s: rss_mb(s, "VmHWM") for s in ("tokenizer", "orchestrator")}
    senders_fn = [(_rest_sender if surface == "rest" else _grpc_sender)(mb) for mb in sizes_mb]
    results: list[tuple] = [()] * len(senders_fn)

    def send(i: int) -> None:
        results[i] = senders_fn[i]()

    here, there = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=Prober().run, args=(there,), daemon=True)
    proc.start()
    assert here.recv() == "started"
    senders = [threading.Thread(target=send, args=(i,)) for i in range(len(senders_fn))]
    for s in senders:
        s.start()
    for s in senders:
        s.join()
    here.send("stop")
    small_ms, health = here.recv()
    proc.join()
    small = sorted(small_ms)
    lines = [f"## {name}, {'REST through Envoy' if surface == 'rest' else 'gRPC to the orchestrator'}",
             "rejections: " + ", ".join(f"{c} {code} in {ms:.0f} ms" for c, ms, code in results),
             f"small requests meanwhile: n={len(small)} median {statistics.median(small):.0f} ms, "
             f"max {small[-1]:.0f} ms (idle median {idle_ms:.0f} ms; bar {2 * idle_ms + 50:.0f} ms)"]
    for service, b in before.items():
        lines.append(f"{service} peak RSS growth: {rss_mb(service, 'VmHWM') - b:.0f} MB")
    for probe, ms in health.items():
        if ms:
            lines.append(f"health {probe}: n={len(ms)} median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms")
    return lines


def main() -> int:
    with httpx.Client(base_url=REST, timeout=120) as http:
        for _ in range(3):
            small_latency(http)  # warm-up
        idle = statistics.median(small_latency(http) for _ in range(15))
    out = [f"idle small chat request (REST, 2 tokens): median {idle:.0f} ms"]
    for surface in ("rest", "grpc"):
        out += scenario("one 60 MB chat prompt", [60], idle, surface)
        out += scenario("four concurrent 8 MB chat prompts", [8, 8, 8, 8], idle, surface)
    # just under the orchestrator's 8 MiB request limit: parsed, then refused by their size
    out += scenario("four concurrent 7.5 MB chat prompts", [7.5] * 4, idle, "grpc")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
