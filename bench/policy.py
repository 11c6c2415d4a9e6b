"""`make bench-policy`: the figures of issue 11's business tier — what API keys, limits, usage records and
admission cost, and how exactly they hold.

    python bench/policy.py [--window 20] [--out bench/results]

One run starts everything it measures and stops it at the end (also on failure or Ctrl-C): a tokenway
suite on the synthetic engine (5 ms per step, any batch: the model is not what is measured) on its own
ports and run directory (bench/servers.tokenway_suite), a throwaway PostgreSQL server (tests/pgserver.py),
and extra orchestrator processes on the suite's tokenizer and inference, each with the settings one
measurement needs. Keys are made with the `tokenway` CLI, as a user makes them; usage records are read
back with `tokenway usage --format json`.

Measurements (each a function below):
  auth       rejection latency seen by a gRPC client (no key, an unknown key) against a health Check on the
             same channel (the floor), and the orchestrator's own work per rejection in process
             (`Authenticator.authenticate` on a SQLite store, 10k calls)
  usage      store level: one `settle` per transaction on SQLite and PostgreSQL, and group commit through
             `UsageWriter` (records/s, records per fsync); end to end: the same streaming load on an
             orchestrator with auth on vs one with auth off, and the share of a request the write is
  limits     a request rate shared by two orchestrators on one PostgreSQL store, a token rate on one
             orchestrator (SQLite), a concurrency limit; error over the whole window and over 5 s windows
  overload   an orchestrator admitting K sequences: unloaded TTFT at c = 1, then 2K closed-loop clients
             (no queue; and a small queue with half the clients on a batch key): shed fraction, how fast a
             shed request hears RESOURCE_EXHAUSTED, the admitted requests' TTFT, the engine's running count

Writes policy-YYYYMMDD-HHMM.{json,md} under --out (the command, the machine, every figure, each bar met or
missed). Timed numbers live here, never as assertions in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.pgserver

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tokenway.inference.v1 import inference_pb2, inference_pb2_grpc  # noqa: E402
from tokenway.v1 import chat_pb2, chat_pb2_grpc, common_pb2  # noqa: E402
from tokenway_common import errors  # noqa: E402
from tokenway_orchestrator.policy.auth import Authenticator  # noqa: E402
from tokenway_orchestrator.policy.usage import UsageWriter  # noqa: E402
from tokenway_orchestrator.store import SqlStore, UsageRecord, open_store  # noqa: E402
from tokenway_orchestrator.store.sql import Settlement  # noqa: E402

from loadgen import WORDS, ChatGrpcClient, Options, ms, percentile, prompts, run_level, summarize  # noqa: E402
from procs import host  # noqa: E402
from servers import (PY, ROOT, Server, _grpc_status, _launch, _stop_group, _wait, free_port,  # noqa: E402
                     settings_of, tokenway_suite)

CHAT_SERVICE = "tokenway.v1.ChatService"
MODEL = "tokenway-tiny"
CLI = str(Path(PY).parent / "tokenway")
SYNTHETIC = {"TOKENWAY_INFERENCE_ENGINE": "synthetic", "TOKENWAY_INFERENCE_SYNTHETIC_STEP_MS": "5",
             "TOKENWAY_INFERENCE_MAX_BATCH_SIZE": "512", "TOKENWAY_INFERENCE_MAX_WAITING": "1024",
             "TOKENWAY_INFERENCE_KV_CACHE_TOKENS": "1000000"}
BARS = {
    "auth": "a rejected caller costs well under a millisecond of orchestrator work (in process, p99 < 1 ms)",
    "rpm_two_orchestrators": "two orchestrators sharing one PostgreSQL store enforce one key's request rate within ±5 %",
    "tpm": "one orchestrator enforces a key's token rate within ±5 % (the same bar, applied to tokens)",
    "concurrency": "never more of a key's requests running than its concurrency limit",
    "overload_ttft": "under twice the admitted capacity, admitted interactive TTFT p99 <= 2x its unloaded p99",
    "overload_shed": "shed requests get RESOURCE_EXHAUSTED promptly (read here: p99 < 100 ms; the issue gives no number)",
    "overload_running": "never more than MAX_RUNNING_SEQUENCES sequences running in the engine",
}


VERDICT = {True: "met", False: "**missed**", None: "n/a"}


T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def stats_ms(values: list[float]) -> dict:
    """p50 / p99 / mean in ms of durations in seconds."""
    return {"n": len(values), "p50_ms": ms(percentile(values, 50)), "p99_ms": ms(percentile(values, 99)),
            "mean_ms": ms(sum(values) / len(values)) if values else None}


def short_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


# -- processes -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Peers:
    tokenizer: str
    inference: str


def _port_arg(pid: int) -> int:
    """The --port a process was started with (the suite's tokenizer: tools/suite.py passes it)."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--port") + 1])


@dataclasses.dataclass
class Orchestrator:
    name: str
    address: str
    store: str  # its store (a SQLite path or a postgresql:// URL)


@contextlib.contextmanager
def orchestrator(name: str, env: dict, peers: Peers, run_dir: Path, store: str, **settings) -> Iterator[Orchestrator]:
    """An orchestrator process on the suite's peers (one process, `settings` as TOKENWAY_ORCHESTRATOR_*),
    SERVING on entry, stopped on exit."""
    port = free_port()
    env = dict(env, PYTHONUNBUFFERED="1", TOKENWAY_ORCHESTRATOR_PROCESSES="1", TOKENWAY_ORCHESTRATOR_STORE=store,
               **{f"TOKENWAY_ORCHESTRATOR_{k.upper()}": str(v) for k, v in settings.items()})
    cmd = [PY, "-m", "tokenway_orchestrator", "--host", "127.0.0.1", "--port", str(port), "--tokenizer-address",
           peers.tokenizer, "--inference-addresses", peers.inference]
    log_file = run_dir / f"orchestrator-{name}.log"
    proc = _launch(cmd, env, log_file)
    try:
        _wait(lambda: _grpc_status(port, CHAT_SERVICE) == "SERVING", proc, f"orchestrator {name}", log_file, 120)
        yield Orchestrator(name, f"127.0.0.1:{port}", store)
    finally:
        _stop_group(proc, 30)


def cli(store: str, *args: str):
    """`tokenway --store STORE ARGS --format json`, parsed."""
    out = subprocess.run([CLI, "--store", store, *args, "--format", "json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def create_key(store: str, name: str, *options: str) -> str:
    return cli(store, "keys", "create", name, *options)["key"]


def usage_records(store: str, key: str) -> list[dict]:
    return cli(store, "usage", "--since", "1h", "--key", key)


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


# -- one call, as a client sees it ---------------------------------------------------------------------


@dataclasses.dataclass
class Call:
    start: float
    end: float = 0.0
    first: float | None = None  # first chunk with text (streams)
    last: float | None = None  # last chunk with text: before it the request still held its lease and slot
    code: str = "OK"
    reason: str = ""
    billed: int = 0  # prompt + completion tokens, from the response's usage
    target: int = 0  # which orchestrator (limits over two)
    label: str = ""  # priority class (overload)

    @property
    def ok(self) -> bool:
        return self.code == "OK"


def _failed(call: Call, exc: grpc.RpcError) -> None:
    call.code = exc.code().name
    info = errors.error_info(exc)
    call.reason = info.reason if info else ""


def chat(text: str, max_tokens: int, stream: bool):
    cls = chat_pb2.StreamChatCompletionRequest if stream else chat_pb2.CreateChatCompletionRequest
    req = cls(model=MODEL, max_tokens=max_tokens, temperature=0.0, ignore_eos=True,
              messages=[chat_pb2.ChatRequestMessage(role="user", content=struct_pb2.Value(string_value=text))])
    if stream:
        req.stream_options.CopyFrom(common_pb2.StreamOptions(include_usage=True))
    return req


async def unary(stub, req, metadata, target: int = 0) -> Call:
    call = Call(time.perf_counter(), target=target)
    try:
        resp = await stub.CreateChatCompletion(req, metadata=metadata, timeout=60)
        call.billed = resp.usage.prompt_tokens + resp.usage.completion_tokens
    except grpc.aio.AioRpcError as exc:
        _failed(call, exc)
    call.end = time.perf_counter()
    return call


async def streamed(stub, req, metadata, label: str = "") -> Call:
    call = Call(time.perf_counter(), label=label)
    try:
        async for chunk in stub.StreamChatCompletion(req, metadata=metadata, timeout=120):
            if any(c.delta.content for c in chunk.choices):
                call.last = time.perf_counter()
                call.first = call.first or call.last
            if chunk.HasField("usage"):
                call.billed = chunk.usage.prompt_tokens + chunk.usage.completion_tokens
    except grpc.aio.AioRpcError as exc:
        _failed(call, exc)
    call.end = time.perf_counter()
    return call


async def hammer(seconds: float, workers: int, one: Callable[[int, int], Awaitable[Call]]) -> tuple[list[Call], float]:
    """`workers` closed-loop clients, each sending its next request as soon as the last one ended (admitted or
    refused: no back-off, the worst case for the server), for `seconds`; returns (calls, window start)."""
    calls: list[Call] = []
    t0 = time.perf_counter()
    end = t0 + seconds

    async def worker(k: int) -> None:
        i = 0
        while time.perf_counter() < end:
            calls.append(await one(k, i))
            i += 1

    await asyncio.gather(*(worker(k) for k in range(workers)))
    return calls, t0


def tally(calls: list[Call]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in calls:
        k = "OK" if c.ok else f"{c.code}/{c.reason or '?'}"
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


# -- 1. auth -------------------------------------------------------------------------------------------


def auth_client(address: str, n: int) -> dict:
    """Client-observed latency of refused unary chat calls vs a health Check, interleaved on one channel."""
    req = chat("hello", 1, stream=False)
    unknown = f"tw-{uuid.uuid4().hex[:12]}-{'x' * 43}"
    kinds = {"health_check": None, "no_key": (), "unknown_key": bearer(unknown)}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    seen: dict[str, set[str]] = {k: set() for k in kinds}
    with grpc.insecure_channel(address) as ch:
        health, stub = health_pb2_grpc.HealthStub(ch), chat_pb2_grpc.ChatServiceStub(ch)
        for i in range(n + 50):  # the first 50 rounds warm up
            for kind, md in kinds.items():
                t = time.perf_counter()
                try:
                    if md is None:
                        health.Check(health_pb2.HealthCheckRequest(service=CHAT_SERVICE), timeout=10)
                        got = "SERVING"
                    else:
                        stub.CreateChatCompletion(req, metadata=md or None, timeout=10)
                        got = "OK (not refused!)"
                except grpc.RpcError as exc:
                    info = errors.error_info(exc)
                    got = f"{exc.code().name}/{info.reason if info else '?'}"
                dt_s = time.perf_counter() - t
                if i >= 50:
                    times[kind].append(dt_s)
                    seen[kind].add(got)
    out = {k: {**stats_ms(v), "answers": sorted(seen[k])} for k, v in times.items()}
    floor = out["health_check"]["p50_ms"]
    for k in ("no_key", "unknown_key"):
        out[k]["p50_over_health_ms"] = round(out[k]["p50_ms"] - floor, 3)
    return out


def auth_in_process(run_dir: Path, n: int) -> dict:
    """`Authenticator.authenticate` as the interceptor calls it (SQLite store, on the event loop), µs per call."""
    store = open_store(str(run_dir / "auth-inprocess.db"))
    try:
        _, good = store.create_key("bench-auth")
        auth = Authenticator(store)
        cases = {"unknown_key": f"Bearer tw-{uuid.uuid4().hex[:12]}-{'y' * 43}", "no_key": None,
                 "malformed_key": "Bearer not-a-tokenway-key", "valid_key": f"Bearer {good}"}

        async def measure(header) -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                try:
                    await auth.authenticate(header)
                except errors.Unauthenticated:
                    pass
                out.append(time.perf_counter() - t)
            return out

        res = {}
        for name, header in cases.items():
            asyncio.run(measure(header))  # warm-up pass (page cache, statement cache)
            v = asyncio.run(measure(header))
            res[name] = {"n": n, "p50_us": round(percentile(v, 50) * 1e6, 2), "p99_us": round(percentile(v, 99) * 1e6, 2),
                         "mean_us": round(sum(v) / n * 1e6, 2)}
        return res
    finally:
        store.close()


# -- 2. usage ------------------------------------------------------------------------------------------


def _record(key) -> UsageRecord:
    return UsageRecord(f"bench-{uuid.uuid4().hex}", key.id, key.name, MODEL, 120, 64, "length", "ok", time.time(),
                       0.1, 12.0, 340.0)


def settle_cost(store: SqlStore, n: int, writers: int, per_writer: int) -> dict:
    """One settle per transaction (sequential), then group commit through UsageWriter at c = 1 and c = writers."""
    key, _ = store.create_key(f"bench-usage-{uuid.uuid4().hex[:6]}")
    for _ in range(20):  # warm-up
        store.settle([Settlement(_record(key), key)])
    single = []
    for _ in range(n):
        t = time.perf_counter()
        store.settle([Settlement(_record(key), key)])
        single.append(time.perf_counter() - t)
    out = {"settle_one_per_transaction": stats_ms(single)}

    async def group(concurrency: int, each: int) -> dict:
        writer = UsageWriter(store)
        lat: list[float] = []

        async def w() -> None:
            for _ in range(each):
                t = time.perf_counter()
                await writer.write(Settlement(_record(key), key))
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(w() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        await asyncio.to_thread(writer.close)
        return {"concurrency": concurrency, "records": writer.records, "batches": writer.batches,
                "records_per_batch": round(writer.records / max(1, writer.batches), 2),
                "records_per_s": round(writer.records / wall, 1), "write_latency": stats_ms(lat)}

    out["group_commit_c1"] = asyncio.run(group(1, n))
    out[f"group_commit_c{writers}"] = asyncio.run(group(writers, per_writer))
    return out


def usage_end_to_end(env: dict, peers: Peers, run_dir: Path, rounds: int, requests: int, concurrency: int) -> dict:
    """The same streaming load (gRPC, c, 64 tokens) on two orchestrators that differ only in auth; A B / B A."""
    on_store, off_store = str(run_dir / "e2e-auth-on.db"), str(run_dir / "e2e-auth-off.db")
    key = create_key(on_store, "bench-e2e")
    texts = prompts(requests * rounds * 2 + 1, seed=23)
    opts = Options(max_tokens=64, ignore_eos=True)
    runs: dict[str, list[dict]] = {"auth_on": [], "auth_off": []}
    client_latency: dict[str, list[float]] = {"auth_on": [], "auth_off": []}
    with orchestrator("auth-on", env, peers, run_dir, on_store) as on, \
            orchestrator("auth-off", env, peers, run_dir, off_store, auth="off") as off:
        targets = {"auth_on": (on, key), "auth_off": (off, "")}
        at = 0
        for r in range(rounds):
            for name in (("auth_on", "auth_off") if r % 2 == 0 else ("auth_off", "auth_on")):
                o, k = targets[name]
                level = (*texts[at:at + requests], texts[-1])
                at += requests
                records, wall = asyncio.run(run_level(ChatGrpcClient(o.address, level, opts, api_key=k),
                                                      concurrency, requests))
                s = summarize(records, wall)
                runs[name].append({k2: s[k2] for k2 in ("requests", "ok", "errors", "req_s", "tok_s", "ttft_p50_ms",
                                                        "ttft_p99_ms", "itl_p50_ms", "latency_p50_ms")})
                client_latency[name] += [x.end - x.start for x in records if x.error is None]
                log(f"usage e2e r{r + 1} {name:<8} c={concurrency} {s['req_s']:6.2f} req/s  TTFT p50 "
                    f"{s['ttft_p50_ms']:7.2f} ms  latency p50 {s['latency_p50_ms']:7.1f} ms  errors {s['errors']}")
    recs = {"auth_on": usage_records(on_store, "bench-e2e"), "auth_off": usage_records(off_store, "anonymous")}
    out: dict = {"concurrency": concurrency, "requests_per_run": requests, "rounds": rounds, "max_tokens": 64,
                 "runs": runs}
    for name, rs in recs.items():
        ok = [r for r in rs if r["status"] == "ok"]
        total = percentile([r["total_ms"] for r in ok], 50)
        client = ms(percentile(client_latency[name], 50))
        out[name] = {"usage_records": len(rs), "requests_sent": sum(x["requests"] for x in runs[name]) + rounds,
                     "server_total_ms_p50": round(total, 3) if total is not None else None,
                     "server_queue_ms_p50": round(percentile([r["queue_ms"] for r in ok], 50), 3),
                     "server_ttft_ms_p50": round(percentile([r["ttft_ms"] for r in ok], 50), 3),
                     "client_latency_ms_p50": client,
                     # what the client waits beyond the server's total_ms (taken before the record is written):
                     # the durable record write, the last chunk's transport and auth; an upper bound of the write
                     "client_minus_server_total_ms_p50": round(client - total, 3) if total and client else None,
                     "req_s_mean": round(sum(x["req_s"] for x in runs[name]) / rounds, 3),
                     "ttft_p50_ms_mean": round(sum(x["ttft_p50_ms"] for x in runs[name]) / rounds, 3)}
    out["req_s_ratio_on_over_off"] = round(out["auth_on"]["req_s_mean"] / out["auth_off"]["req_s_mean"], 4)
    out["ttft_p50_ratio_on_over_off"] = round(out["auth_on"]["ttft_p50_ms_mean"] / out["auth_off"]["ttft_p50_ms_mean"], 4)
    return out


# -- 3. limits -----------------------------------------------------------------------------------------


def window_error(calls: list[Call], t0: float, seconds: float, per_second: float, weight) -> dict:
    """Admitted (weighted: 1 per request, or billed tokens) in [t0, t0 + seconds) vs per_second * seconds."""
    got = sum(weight(c) for c in calls if c.ok and t0 <= c.start < t0 + seconds)
    want = per_second * seconds
    return {"window_s": seconds, "admitted": got, "expected": round(want, 2),
            "error_pct": round(100 * (got - want) / want, 2)}


def sub_windows(calls: list[Call], t0: float, total: float, size: float, per_second: float, weight) -> dict:
    errs = [window_error(calls, t0 + i * size, size, per_second, weight) for i in range(int(total // size))]
    return {"window_s": size, "windows": len(errs), "admitted": [e["admitted"] for e in errs],
            "expected_each": errs[0]["expected"] if errs else None,
            "error_pct": [e["error_pct"] for e in errs],
            "max_abs_error_pct": max((abs(e["error_pct"]) for e in errs), default=None)}


def limit_rpm_two_orchestrators(env: dict, peers: Peers, run_dir: Path, pg_url: str, rpm: int, window: float,
                                workers: int, short: float) -> dict:
    """One key, --rpm, two orchestrators on one PostgreSQL database; workers alternate between them."""
    key = create_key(pg_url, "bench-rpm", "--rpm", str(rpm))
    req = chat("hi", 1, stream=False)
    with orchestrator("pg-a", env, peers, run_dir, pg_url) as a, orchestrator("pg-b", env, peers, run_dir, pg_url) as b:
        async def go() -> tuple[list[Call], float]:
            chans = [grpc.aio.insecure_channel(o.address) for o in (a, b)]
            stubs = [chat_pb2_grpc.ChatServiceStub(c) for c in chans]
            try:
                return await hammer(window, workers, lambda k, i: unary(stubs[(k + i) % 2], req, bearer(key), (k + i) % 2))
            finally:
                await asyncio.gather(*(c.close() for c in chans))

        calls, t0 = asyncio.run(go())
    records = usage_records(pg_url, "bench-rpm")
    out = {"rpm": rpm, "workers": workers, "orchestrators": 2, "store": "postgresql",
           "calls": len(calls), "answers": tally(calls),
           "admitted_per_orchestrator": [sum(c.ok and c.target == t for c in calls) for t in (0, 1)],
           "whole": window_error(calls, t0, window, rpm / 60, lambda c: 1),
           "short": sub_windows(calls, t0, window, short, rpm / 60, lambda c: 1),
           "usage_records": len(records), "usage_records_ok": sum(r["status"] == "ok" for r in records)}
    log(f"limits rpm={rpm} over 2 orchestrators (PostgreSQL): {out['whole']['admitted']} admitted in {window:.0f}s vs "
        f"{out['whole']['expected']} ({out['whole']['error_pct']:+.2f} %); {short:.0f}s windows max "
        f"|error| {out['short']['max_abs_error_pct']} %; {len(calls)} calls, {len(records)} usage records")
    return out


def limit_tpm(orch: Orchestrator, tpm: int, window: float, workers: int, short: float) -> dict:
    """One key, --tpm, one orchestrator (SQLite): billed tokens (prompt + completion) admitted per window."""
    key = create_key(orch.store, "bench-tpm", "--tpm", str(tpm))
    req = chat("hi", 16, stream=False)

    async def go() -> tuple[list[Call], float]:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            stub = chat_pb2_grpc.ChatServiceStub(ch)
            return await hammer(window, workers, lambda k, i: unary(stub, req, bearer(key)))

    calls, t0 = asyncio.run(go())
    billed = sorted({c.billed for c in calls if c.ok})
    records = usage_records(orch.store, "bench-tpm")
    out = {"tpm": tpm, "workers": workers, "orchestrators": 1, "store": "sqlite", "billed_tokens_per_request": billed,
           "calls": len(calls), "answers": tally(calls),
           "whole": window_error(calls, t0, window, tpm / 60, lambda c: c.billed),
           "short": sub_windows(calls, t0, window, short, tpm / 60, lambda c: c.billed),
           "usage_records": len(records),
           "usage_tokens_ok": sum(r["prompt_tokens"] + r["completion_tokens"] for r in records if r["status"] == "ok")}
    log(f"limits tpm={tpm} (SQLite): {out['whole']['admitted']} tokens admitted in {window:.0f}s vs "
        f"{out['whole']['expected']} ({out['whole']['error_pct']:+.2f} %); {short:.0f}s windows max |error| "
        f"{out['short']['max_abs_error_pct']} %; {billed} tokens per request")
    return out


def limit_concurrency(orch: Orchestrator, limit: int, seconds: float, workers: int) -> dict:
    """One key, --concurrency: streaming requests; the key's live leases polled in the store, and the most
    admitted streams the client saw streaming at once (first to last text chunk)."""
    made = cli(orch.store, "keys", "create", "bench-conc", "--concurrency", str(limit))
    key, key_id = made["key"], made["id"]
    req = chat(short_text(random.Random(5), 60), 32, stream=True)
    leases: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        store = open_store(orch.store)
        try:
            while not stop.is_set():
                leases.append(store.leases(key_id))
                time.sleep(0.005)  # the poll period
        finally:
            store.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    async def go() -> tuple[list[Call], float]:
        async with grpc.aio.insecure_channel(orch.address) as ch:
            stub = chat_pb2_grpc.ChatServiceStub(ch)
            return await hammer(seconds, workers, lambda k, i: streamed(stub, req, bearer(key)))

    try:
        calls, _ = asyncio.run(go())
    finally:
        stop.set()
        poller.join()
    # client side, first to last text chunk: the lease is dropped with the usage record, before the usage chunk
    # and the stream's end reach the client, so the end of one stream may come after the next one's start
    spans = [(c.first, c.last) for c in calls if c.ok and c.first]
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    now = seen = 0
    for _, d in edges:
        now += d
        seen = max(seen, now)
    out = {"limit": limit, "workers": workers, "seconds": seconds, "calls": len(calls), "answers": tally(calls),
           "max_leases_polled": max(leases, default=0), "lease_polls": len(leases),
           "max_streams_open_client_side": seen}
    log(f"limits concurrency={limit}: at most {out['max_leases_polled']} leases ({len(leases)} polls), at most {seen} "
        f"admitted streams streaming at once client side; {tally(calls)}")
    return out


# -- 4. overload ---------------------------------------------------------------------------------------


async def open_loop(rate: float, seconds: float, one: Callable[[int], Awaitable[Call]], seed: int) -> tuple[list[Call], float]:
    """Poisson arrivals at `rate` per second for `seconds`, each request on its own (nobody waits for an
    answer before the next arrival); returns (calls, window start)."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    at, i, tasks = t0, 0, []
    while True:
        at += rng.expovariate(rate)
        if at >= t0 + seconds:
            break
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
        i += 1
    return list(await asyncio.gather(*tasks)), t0


def overload_rows(calls: list[Call], base_ttft: list[float], wall: float) -> dict:
    """Per priority class: answers, admitted rate, shed fraction and latency, admitted TTFT vs unloaded."""
    out = {}
    for label in ("interactive", "batch"):
        mine = [c for c in calls if c.label == label]
        if not mine:
            continue
        admitted = [c for c in mine if c.ok]
        shed = [c for c in mine if c.code == "RESOURCE_EXHAUSTED"]
        ttft = [c.first - c.start for c in admitted if c.first]
        row = {"calls": len(mine), "answers": tally(mine), "admitted": len(admitted),
               "admitted_req_s": round(len(admitted) / wall, 2), "shed_fraction": round(len(shed) / len(mine), 4),
               "shed_latency": stats_ms([c.end - c.start for c in shed]),
               # OVERLOADED: refused on arrival; SHED / QUEUE_TIMEOUT: waited in the queue first
               "shed_latency_by_reason": {r: stats_ms([c.end - c.start for c in shed if c.reason == r])
                                          for r in sorted({c.reason for c in shed})},
               "admitted_ttft": stats_ms(ttft)}
        if ttft and base_ttft:
            row["ttft_p50_ratio"] = round(percentile(ttft, 50) / percentile(base_ttft, 50), 3)
            row["ttft_p99_ratio"] = round(percentile(ttft, 99) / percentile(base_ttft, 99), 3)
        out[label] = row
    return out


def overload(env: dict, peers: Peers, run_dir: Path, name: str, k: int, queued: int, queue_s: float,
             loads: list[dict], unloaded_n: int, seconds: float) -> dict:
    """An orchestrator with MAX_RUNNING_SEQUENCES=k: unloaded TTFT at c=1 (which gives its capacity, k / mean
    latency), then each load of `loads` for `seconds`, the engine's running count polled throughout:
      {"name", "open": factor, "batch_share"}: Poisson arrivals at factor x capacity, that share on a batch key;
      {"name", "clients": n, "batch_clients": m}: n closed-loop clients without back-off, m on a batch key."""
    store = str(run_dir / f"overload-{name}.db")
    keys = {"interactive": create_key(store, "bench-interactive", "--priority", "interactive"),
            "batch": create_key(store, "bench-batch", "--priority", "batch")}
    rng = random.Random(9)
    reqs = [chat(short_text(rng, 60), 64, stream=True) for _ in range(64)]
    settings = {"max_running_sequences": k, "max_queued_requests": queued, "max_queue_seconds": queue_s}
    out: dict = {"settings": settings, "loads": {}}
    with orchestrator(f"overload-{name}", env, peers, run_dir, store, **settings) as o:
        async def go() -> None:
            async with grpc.aio.insecure_channel(o.address) as ch, grpc.aio.insecure_channel(peers.inference) as ich:
                stub, engine = chat_pb2_grpc.ChatServiceStub(ch), inference_pb2_grpc.InferenceServiceStub(ich)

                def send(i: int, label: str) -> Awaitable[Call]:
                    return streamed(stub, reqs[i % len(reqs)], bearer(keys[label]), label)

                for i in range(5):  # warm-up
                    await send(i, "interactive")
                unloaded = [await send(i, "interactive") for i in range(unloaded_n)]
                base = [c.first - c.start for c in unloaded if c.ok and c.first]
                latency = [c.end - c.start for c in unloaded if c.ok]
                capacity = k / (sum(latency) / len(latency))
                out["unloaded"] = {"ttft": stats_ms(base), "latency": stats_ms(latency),
                                   "errors": sum(not c.ok for c in unloaded), "capacity_req_s": round(capacity, 2)}
                for load in loads:
                    running: list[int] = []
                    done = asyncio.Event()

                    async def poll() -> None:
                        while not done.is_set():
                            running.append((await engine.GetLoad(inference_pb2.GetLoadRequest(), timeout=5)).running)
                            await asyncio.sleep(0.01)  # the poll period

                    poller = asyncio.create_task(poll())
                    if "open" in load:
                        rate = load["open"] * capacity
                        every = round(1 / load["batch_share"]) if load["batch_share"] else 0
                        calls, t0 = await open_loop(rate, seconds, lambda i: send(
                            i, "batch" if every and i % every == 0 else "interactive"), seed=13)
                        desc = {"arrivals": "poisson", "rate_req_s": round(rate, 2), "x_capacity": load["open"],
                                "batch_share": load["batch_share"]}
                    else:
                        calls, t0 = await hammer(seconds, load["clients"], lambda w, i: send(
                            w * 7 + i, "batch" if w < load["batch_clients"] else "interactive"))
                        desc = {"arrivals": "closed loop, no back-off", "clients": load["clients"],
                                "batch_clients": load["batch_clients"]}
                    wall = time.perf_counter() - t0
                    done.set()
                    await poller
                    row = {**desc, "seconds": round(wall, 2), "offered_req_s": round(len(calls) / wall, 2),
                           "classes": overload_rows(calls, base, wall), "engine_running_max": max(running, default=0),
                           "engine_running_polls": len(running)}
                    out["loads"][load["name"]] = row
                    i = row["classes"].get("interactive", {})
                    log(f"overload {name} (K={k}, queue {queued}) {load['name']}: offered {row['offered_req_s']} req/s "
                        f"(capacity {capacity:.2f}); interactive TTFT p50/p99 {i.get('admitted_ttft', {}).get('p50_ms')}/"
                        f"{i.get('admitted_ttft', {}).get('p99_ms')} ms vs unloaded {out['unloaded']['ttft']['p50_ms']}/"
                        f"{out['unloaded']['ttft']['p99_ms']} (x{i.get('ttft_p99_ratio')} at p99); shed "
                        + ", ".join(f"{lb} {x['shed_fraction']} in p50/p99 {x['shed_latency']['p50_ms']}/"
                                    f"{x['shed_latency']['p99_ms']} ms" for lb, x in row["classes"].items())
                        + f"; engine running max {row['engine_running_max']}")

        asyncio.run(go())
    records = usage_records(store, "bench-interactive") + usage_records(store, "bench-batch")
    calls = 5 + unloaded_n + sum(sum(x["calls"] for x in r["classes"].values()) for r in out["loads"].values())
    out.update(usage_records=len(records), calls=calls)
    return out


# -- the run -------------------------------------------------------------------------------------------


def bars(doc: dict) -> list[dict]:
    """Each bar of the issue, met or missed, with the figure it was judged on."""
    out = []

    def bar(key: str, met: bool, figure: str) -> None:
        out.append({"bar": key, "text": BARS[key], "met": bool(met), "figure": figure})

    a = doc["auth"]["in_process"]
    worst = max(a["unknown_key"]["p99_us"], a["no_key"]["p99_us"], a["malformed_key"]["p99_us"])
    bar("auth", worst < 1000, f"unknown key p50 {a['unknown_key']['p50_us']} µs, p99 {a['unknown_key']['p99_us']} µs; "
                              f"no key p99 {a['no_key']['p99_us']} µs")
    r = doc["limits"]["rpm_two_orchestrators"]["whole"]
    bar("rpm_two_orchestrators", abs(r["error_pct"]) <= 5, f"{r['admitted']} admitted vs {r['expected']} expected over "
                                                            f"{r['window_s']:.0f} s: {r['error_pct']:+.2f} %")
    t = doc["limits"]["tpm"]["whole"]
    bar("tpm", abs(t["error_pct"]) <= 5, f"{t['admitted']} tokens vs {t['expected']} over {t['window_s']:.0f} s: "
                                         f"{t['error_pct']:+.2f} %")
    c = doc["limits"]["concurrency"]
    bar("concurrency", c["max_leases_polled"] <= c["limit"] and c["max_streams_open_client_side"] <= c["limit"],
        f"limit {c['limit']}: at most {c['max_leases_polled']} live leases polled, {c['max_streams_open_client_side']} "
        "streams streaming at once client side")
    for name, o in doc["overload"].items():
        k = o["settings"]["max_running_sequences"]
        for lname, ld in o["loads"].items():
            where = f" [{name}, {lname}]"
            i = ld["classes"].get("interactive", {})
            if "x_capacity" in ld:  # the issue's bars are about twice the admitted capacity: the open-loop loads
                out.append({"bar": "overload_ttft", "setting": name, "load": lname, "text": BARS["overload_ttft"] + where,
                            "met": bool(i.get("ttft_p99_ratio") is not None and i["ttft_p99_ratio"] <= 2),
                            "figure": f"unloaded p99 {o['unloaded']['ttft']['p99_ms']} ms, loaded p99 "
                                      f"{i.get('admitted_ttft', {}).get('p99_ms')} ms (x{i.get('ttft_p99_ratio')}); "
                                      f"p50 x{i.get('ttft_p50_ratio')}"})
                shed = {lb: x["shed_latency"]["p99_ms"] for lb, x in ld["classes"].items() if x["shed_latency"]["n"]}
                out.append({"bar": "overload_shed", "setting": name, "load": lname, "text": BARS["overload_shed"] + where,
                            "met": max(shed.values()) < 100 if shed else None,
                            "figure": ("shed p99 " + " / ".join(f"{lb} {v} ms" for lb, v in shed.items())) if shed
                            else "nothing was shed"})
            out.append({"bar": "overload_running", "setting": name, "load": lname, "text": BARS["overload_running"] + where,
                        "met": ld["engine_running_max"] <= k, "figure": f"K={k}, engine running max {ld['engine_running_max']}"})
    return out


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return ""


def metadata(args: argparse.Namespace, started: dt.datetime, run_dir: Path) -> dict:
    cpu_model, mem_gib = host()
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    py = Path(sys.executable)
    return {"date_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "hostname": platform.node(), "cpu_model": cpu_model,
            "cores": os.cpu_count(), "ram_gib": mem_gib, "os": platform.platform(), "python": platform.python_version(),
            "git_commit": git,
            "command": shlex.join([py.relative_to(ROOT).as_posix() if py.is_relative_to(ROOT) else str(py), *sys.argv]),
            "engine": "synthetic, 5 ms per step (any batch)", "run_dir": os.path.relpath(run_dir, ROOT),
            "loadavg_start": _loadavg(),
            "settings": vars(args) | {"out": os.path.relpath(args.out, ROOT) if Path(args.out).is_absolute() else args.out}}


def run(args: argparse.Namespace) -> dict:
    started = dt.datetime.now(dt.timezone.utc)
    run_dir = ROOT / ".tokenway" / "bench-runs" / f"policy-{started.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(run_dir)  # PostgreSQL's data directory on the same disk as the SQLite stores
    from tests.pgserver import PgServer  # noqa: PLC0415 - after TMPDIR

    env = dict(os.environ, HF_HUB_OFFLINE="1", **SYNTHETIC,
               TOKENWAY_MODEL=os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway" / "models" / "tokenway-tiny")))
    doc: dict = {"meta": metadata(args, started, run_dir), "settings": settings_of(env)}
    log(f"bench-policy: logs and stores in {os.path.relpath(run_dir, ROOT)}")
    with contextlib.ExitStack() as stack:
        pg = PgServer()
        stack.callback(pg.stop)
        log(f"PostgreSQL up (port {pg.port}, data in {os.path.relpath(pg.dir, ROOT)})")
        suite: Server = tokenway_suite("policy", env, run_dir / "suite")
        stack.callback(suite.stop)
        peers = Peers(f"127.0.0.1:{_port_arg(suite.roots['tokenizer'])}", suite.addresses["inference"])
        log(f"suite up in {suite.started_s:.1f}s (orchestrator {suite.addresses['grpc']}, peers {peers})")
        doc["suite"] = {"commands": suite.commands, "started_s": round(suite.started_s, 2)}

        doc["auth"] = {"client": auth_client(suite.addresses["grpc"], args.auth_calls),
                       "in_process": auth_in_process(run_dir, args.auth_inprocess)}
        c, p = doc["auth"]["client"], doc["auth"]["in_process"]
        log(f"auth: client p50/p99 health {c['health_check']['p50_ms']}/{c['health_check']['p99_ms']} ms, no key "
            f"{c['no_key']['p50_ms']}/{c['no_key']['p99_ms']} ms, unknown key {c['unknown_key']['p50_ms']}/"
            f"{c['unknown_key']['p99_ms']} ms; in process unknown key {p['unknown_key']['p50_us']}/"
            f"{p['unknown_key']['p99_us']} µs, valid {p['valid_key']['p50_us']}/{p['valid_key']['p99_us']} µs")

        doc["usage"] = {"store": {}}
        for label, spec in (("sqlite", str(run_dir / "usage-store.db")), ("postgresql", pg.new_database("usage"))):
            store = open_store(spec)
            try:
                doc["usage"]["store"][label] = s = settle_cost(store, args.settles, 64, 40)
            finally:
                store.close()
            g = s["group_commit_c64"]
            log(f"usage {label}: settle p50/p99 {s['settle_one_per_transaction']['p50_ms']}/"
                f"{s['settle_one_per_transaction']['p99_ms']} ms; group commit c=64 {g['records_per_s']} records/s, "
                f"{g['records_per_batch']} records per fsync, write p50 {g['write_latency']['p50_ms']} ms")
        doc["usage"]["end_to_end"] = e = usage_end_to_end(env, peers, run_dir, 2, args.e2e_requests, 8)
        share = e["auth_on"]["client_minus_server_total_ms_p50"] / e["auth_on"]["client_latency_ms_p50"]
        e["write_share_upper_bound"] = round(share, 4)
        sq = doc["usage"]["store"]["sqlite"]["group_commit_c1"]["write_latency"]["p50_ms"]
        e["write_share_from_store_p50"] = round(sq / e["auth_on"]["server_total_ms_p50"], 4)
        log(f"usage e2e: req/s on/off x{e['req_s_ratio_on_over_off']}, TTFT p50 on/off x{e['ttft_p50_ratio_on_over_off']}; "
            f"record write <= {100 * share:.2f} % of a request ({100 * e['write_share_from_store_p50']:.2f} % from the store's p50)")

        doc["limits"] = {"rpm_two_orchestrators": limit_rpm_two_orchestrators(
            env, peers, run_dir, pg.new_database("limits"), args.rpm, args.window, args.workers, args.short_window)}
        with orchestrator("limits-sqlite", env, peers, run_dir, str(run_dir / "limits.db")) as o:
            doc["limits"]["tpm"] = limit_tpm(o, args.tpm, args.window, args.workers, args.short_window)
            doc["limits"]["concurrency"] = limit_concurrency(o, args.concurrency, args.window / 2, 2 * args.concurrency + 2)

        doc["overload"] = {
            "no-queue": overload(env, peers, run_dir, "no-queue", args.k, 0, 10.0, [
                {"name": "open-2x", "open": 2.0, "batch_share": 0.0},
                {"name": f"closed-{2 * args.k}-clients", "clients": 2 * args.k, "batch_clients": 0}],
                args.unloaded, args.overload_s),
            # the defaults: interactive never waits, batch holds at most 75 % of the slots and may queue
            "batch-queue-4-half-batch": overload(env, peers, run_dir, "batch-queue-4-half-batch", args.k, 4, 2.0, [
                {"name": "open-2x-half-batch", "open": 2.0, "batch_share": 0.5},
                {"name": f"closed-{2 * args.k}-clients-half-batch", "clients": 2 * args.k, "batch_clients": args.k}],
                args.unloaded, args.overload_s),
        }
    doc["bars"] = bars(doc)
    doc["wall_s"] = round(time.monotonic() - T0, 1)
    doc["meta"]["loadavg_end"] = _loadavg()
    return doc


# -- the report ----------------------------------------------------------------------------------------


def _cell(st: dict) -> str:
    return f"{st['p50_ms']} / {st['p99_ms']}" if st["n"] else "—"


def markdown(doc: dict, json_name: str) -> str:
    m = doc["meta"]
    a, u, lim, ov = doc["auth"], doc["usage"], doc["limits"], doc["overload"]
    L = [f"# make bench-policy — {m['date_utc']}", "",
         f"`{m['command']}` · {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB · commit {m['git_commit'][:10]} · "
         f"engine: {m['engine']} · {doc['wall_s']:.0f} s · load average {m['loadavg_start']} at the start, "
         f"{m['loadavg_end']} at the end · raw figures: `{json_name}`", "",
         "## Bars", "", "| bar | met | figure |", "|---|---|---|"]
    L += [f"| {b['text']} | {VERDICT[b['met']]} | {b['figure']} |" for b in doc["bars"]]
    c, p = a["client"], a["in_process"]
    L += ["", "## 1. Auth rejection latency", "",
          f"Client (sync gRPC, one channel, {c['health_check']['n']} calls each, interleaved): unary CreateChatCompletion "
          "refused vs a health Check (the floor: a round trip with no work).", "",
          "| call | answer | p50 ms | p99 ms | p50 over health |", "|---|---|---|---|---|"]
    for k in ("health_check", "no_key", "unknown_key"):
        L.append(f"| {k} | {', '.join(c[k]['answers'])} | {c[k]['p50_ms']} | {c[k]['p99_ms']} | "
                 f"{c[k].get('p50_over_health_ms', '—')} |")
    L += ["", f"Orchestrator work per call, in process (`Authenticator.authenticate`, SQLite store, {p['unknown_key']['n']} calls):", "",
          "| presented | p50 µs | p99 µs | mean µs |", "|---|---|---|---|"]
    L += [f"| {k} | {v['p50_us']} | {v['p99_us']} | {v['mean_us']} |" for k, v in p.items()]
    L += ["", "## 2. Usage write cost", "", "| store | settle, 1 per tx p50 / p99 ms | UsageWriter c=1 write p50 / p99 ms | "
          "group commit c=64: records/s | records per fsync | write p50 / p99 ms |", "|---|---|---|---|---|---|"]
    for label, s in u["store"].items():
        one, g1, g = s["settle_one_per_transaction"], s["group_commit_c1"], s["group_commit_c64"]
        L.append(f"| {label} | {one['p50_ms']} / {one['p99_ms']} | {g1['write_latency']['p50_ms']} / {g1['write_latency']['p99_ms']} | "
                 f"{g['records_per_s']} | {g['records_per_batch']} | {g['write_latency']['p50_ms']} / {g['write_latency']['p99_ms']} |")
    e = u["end_to_end"]
    L += ["", f"End to end: streaming gRPC, c={e['concurrency']}, {e['max_tokens']} tokens, {e['requests_per_run']} requests "
          f"per run, {e['rounds']} rounds A B / B A, two orchestrators that differ only in `TOKENWAY_ORCHESTRATOR_AUTH` "
          "(with auth off the record is still written, as \"anonymous\").", "",
          "| | req/s (mean) | TTFT p50 ms (mean) | server total_ms p50 | server queue_ms p50 | client latency p50 ms | "
          "client − server total p50 ms | usage records / requests |", "|---|---|---|---|---|---|---|---|"]
    for k in ("auth_on", "auth_off"):
        x = e[k]
        L.append(f"| {k} | {x['req_s_mean']} | {x['ttft_p50_ms_mean']} | {x['server_total_ms_p50']} | {x['server_queue_ms_p50']} | "
                 f"{x['client_latency_ms_p50']} | {x['client_minus_server_total_ms_p50']} | {x['usage_records']} / {x['requests_sent']} |")
    L += ["", f"Auth on / off: req/s x{e['req_s_ratio_on_over_off']}, TTFT p50 x{e['ttft_p50_ratio_on_over_off']}. The record "
          f"write is at most {100 * e['write_share_upper_bound']:.2f} % of a request's client-seen time (client latency − the "
          f"server's total_ms, which is taken before the write; it also holds the last chunk's transport), "
          f"{100 * e['write_share_from_store_p50']:.2f} % by the store's own UsageWriter c=1 p50 over the server's total_ms."]
    r, t, cc = lim["rpm_two_orchestrators"], lim["tpm"], lim["concurrency"]
    L += ["", "## 3. Limiter error", "",
          "| limit | setup | admitted | expected | error | short windows (admitted each) | max abs error, short | answers |",
          "|---|---|---|---|---|---|---|---|",
          f"| --rpm {r['rpm']} | 2 orchestrators, 1 PostgreSQL store, {r['workers']} closed-loop clients alternating, "
          f"max_tokens 1 | {r['whole']['admitted']} in {r['whole']['window_s']:.0f} s "
          f"({r['admitted_per_orchestrator'][0]} + {r['admitted_per_orchestrator'][1]}) | {r['whole']['expected']} | "
          f"{r['whole']['error_pct']:+.2f} % | {r['short']['window_s']:.0f} s: {r['short']['admitted']} vs "
          f"{r['short']['expected_each']} | {r['short']['max_abs_error_pct']} % | {r['answers']} |",
          f"| --tpm {t['tpm']} | 1 orchestrator, SQLite, {t['workers']} clients, {t['billed_tokens_per_request']} billed "
          f"tokens per request | {t['whole']['admitted']} tokens in {t['whole']['window_s']:.0f} s | {t['whole']['expected']} | "
          f"{t['whole']['error_pct']:+.2f} % | {t['short']['window_s']:.0f} s: {t['short']['admitted']} vs "
          f"{t['short']['expected_each']} | {t['short']['max_abs_error_pct']} % | {t['answers']} |", "",
          f"Concurrency limit {cc['limit']} ({cc['workers']} streaming clients, {cc['seconds']:.0f} s): at most "
          f"{cc['max_leases_polled']} live leases in {cc['lease_polls']} polls of the store, at most "
          f"{cc['max_streams_open_client_side']} admitted streams streaming at once client side (first to last text "
          "chunk; not to the stream's end: the lease goes with the usage record, before the usage chunk is sent); "
          f"answers {cc['answers']}.", "",
          f"Usage records: rpm key {r['usage_records']} for {r['calls']} calls; tpm key {t['usage_records']} for {t['calls']} calls.",
          "", "## 4. Overload", ""]
    L += ["Capacity = K / the mean latency of an unloaded request (c = 1). Open-loop loads: Poisson arrivals at 2x "
          "that (the issue's \"twice the admitted capacity\"; the bars apply to these). Closed-loop loads: 2K clients "
          "that send again the moment they are answered or refused, no back-off (a stress far above 2x; figures only).",
          "", "| setting | unloaded TTFT p50 / p99 ms | load | offered req/s | class | admitted/s | shed fraction | "
          "shed latency p50 / p99 ms | admitted TTFT p50 / p99 ms | x unloaded p50 / p99 | engine running max |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, o in ov.items():
        s = o["settings"]
        for lname, ld in o["loads"].items():
            for label, x in ld["classes"].items():
                L.append(f"| {name}: K={s['max_running_sequences']}, queue {s['max_queued_requests']} "
                         f"({s['max_queue_seconds']:g} s) | {o['unloaded']['ttft']['p50_ms']} / {o['unloaded']['ttft']['p99_ms']} "
                         f"| {lname} | {ld['offered_req_s']} | {label} | {x['admitted_req_s']} | {x['shed_fraction']} | "
                         f"{_cell(x['shed_latency'])} | "
                         f"{_cell(x['admitted_ttft'])} | "
                         f"{x.get('ttft_p50_ratio', '—')} / {x.get('ttft_p99_ratio', '—')} | {ld['engine_running_max']} |")
    L.append("")
    for name, o in ov.items():
        L.append(f"- {name}: unloaded capacity {o['unloaded']['capacity_req_s']} req/s (latency p50 "
                 f"{o['unloaded']['latency']['p50_ms']} ms); usage records {o['usage_records']} for {o['calls']} calls")
        L += [f"  - {lname}: " + "; ".join(
            f"{lb} {x['answers']}" + "".join(f", {r} p50/p99 {v['p50_ms']}/{v['p99_ms']} ms"
                                              for r, v in x["shed_latency_by_reason"].items())
            for lb, x in ld["classes"].items()) for lname, ld in o["loads"].items()]
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where the JSON and Markdown go")
    ap.add_argument("--window", type=float, default=20.0, help="seconds of each limiter measurement (default 20)")
    ap.add_argument("--short-window", type=float, default=5.0, help="the short windows the limiter error is also given for")
    ap.add_argument("--workers", type=int, default=6, help="closed-loop clients of the rate limit measurements")
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--tpm", type=int, default=6000)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--k", type=int, default=4, help="MAX_RUNNING_SEQUENCES of the overload measurement")
    ap.add_argument("--overload-s", type=float, default=20.0, help="seconds of each overload run")
    ap.add_argument("--unloaded", type=int, default=100, help="requests of the unloaded TTFT baseline")
    ap.add_argument("--auth-calls", type=int, default=500)
    ap.add_argument("--auth-inprocess", type=int, default=10000)
    ap.add_argument("--settles", type=int, default=300, help="settle calls timed one per transaction")
    ap.add_argument("--e2e-requests", type=int, default=96, help="requests per run of the auth on/off comparison")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every process started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"policy-{doc['meta']['date_utc'][:16].replace('-', '').replace('T', '-').replace(':', '')}"
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    base.with_suffix(".md").write_text(markdown(doc, base.with_suffix(".json").name))
    print()
    for b in doc["bars"]:
        print(f"{VERDICT[b['met']].strip('*'):<6} {b['text']}: {b['figure']}")
    print(f"\nwrote {os.path.relpath(base.with_suffix('.json'))} and {os.path.relpath(base.with_suffix('.md'))}; "
          f"total {doc['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
