"""`make bench-routing`: the figures of issue 12's inference router — prefix-aware routing against
round-robin, a replica killed under load, a slow replica's share of the traffic.

    python bench/routing.py [--out bench/results] [--only prefix,kill,slow]

One run starts everything it measures and stops it at the end (also on failure or Ctrl-C): one tokenizer
service, inference replicas (`bench/servers.inference_only`, each its own process and port) and an
orchestrator (`bench/policy.orchestrator`) per measurement on `--inference-addresses a,b,c`, with
`TOKENWAY_ORCHESTRATOR_AUTH=off` (the keys are not what is measured; usage is still computed and checked).

Measurements (each a function below):
  prefix  3 transformers replicas (THREADS=1, a small KV budget each), closed-loop streaming clients whose
          chats start with one of several long system prompts (together more than one replica's KV budget:
          beside its running batch, a replica holds about a third of them; the embedded engine copies a
          cached prefix into each running sequence's region, so the batch holds its prompts' KV too):
          ROUTING=round_robin vs ROUTING=prefix, then ROUTING=prefix through two orchestrators sharing the
          replicas (no coordination: each keeps its own view), fresh replicas for each (empty caches), the
          same seeded request sequence, two tokenizer replicas behind every orchestrator. TTFT p50/p90,
          output tok/s, cached prompt share.
  kill    3 synthetic replicas, closed-loop streaming clients (ignore_eos, fixed max_tokens); one replica is
          SIGKILLed mid-run. Client-visible failures (all, and among streams mid-generation at the kill),
          usage exact (completion_tokens == max_tokens) for every stream.
  slow    3 synthetic replicas, one with a 3x step time, each behind a counting gRPC proxy in this process
          (requests and tokens per replica); ROUTING=least_load and ROUTING=prefix (the default; distinct
          prompts, so it falls back to the least loaded). Share of requests/tokens vs the ideal share by speed.

Writes routing-YYYYMMDD-HHMM.{json,md} under --out. Timed numbers live here, never as assertions in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from tokenway.inference.v1 import inference_pb2  # noqa: E402
from tokenway.v1 import chat_pb2, chat_pb2_grpc, common_pb2  # noqa: E402

from loadgen import WORDS, ms, percentile  # noqa: E402
from policy import VERDICT, Peers, orchestrator  # noqa: E402
from procs import host  # noqa: E402
from servers import (PY, ROOT, TOKENIZER_SERVICE, Server, _grpc_status, _launch, _stop_group, _wait,  # noqa: E402
                     free_port, inference_only, settings_of)

MODEL = "tokenway-tiny"
PREFIX_KEY = 200  # prompt ids that tell the system prompts apart (the counting proxy's per-prefix tally)
T0 = time.monotonic()
BARS = {
    "prefix_ttft": "shared-prefix load: TTFT p90 with prefix-aware routing <= 0.5x round-robin's",
    "prefix_throughput": "shared-prefix load: throughput with prefix-aware routing >= 1.0x round-robin's",
    "prefix_x2": "the same through two orchestrators sharing the replicas (each its own view, half the clients "
                 "each): TTFT p90 <= 0.5x and throughput >= 1.0x round-robin's (one orchestrator)",
    "kill": "kill -9 of one of three replicas under load: 0 client-visible failures for streams mid-generation, every usage exact",
    "slow": "a replica 3x slower gets proportionally less traffic (read here: its request share within 0.75-1.25x of 1/7, "
            "the share by speed, under ROUTING=least_load)",
}


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def pstats(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": ms(percentile(values, 50)), "p90_ms": ms(percentile(values, 90)),
            "p99_ms": ms(percentile(values, 99)), "mean_ms": ms(sum(values) / len(values)) if values else None}


# -- processes -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def tokenizer(env: dict, run_dir: Path, name: str = "tokenizer"):
    """A tokenizer service (shared by every orchestrator of the run); yields its address."""
    port = free_port()
    log_file = run_dir / f"{name}.log"
    proc = _launch([PY, "-m", "tokenway_tokenizer", "--host", "127.0.0.1", "--port", str(port)], env, log_file)
    try:
        _wait(lambda: _grpc_status(port, TOKENIZER_SERVICE) == "SERVING", proc, "the tokenizer service", log_file, 300)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_group(proc, 30)


@contextlib.contextmanager
def replicas(name: str, envs: list[dict], run_dir: Path):
    """Inference replicas started together (one process each), SERVING on entry, all stopped on exit."""
    started: list[Server] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(len(envs)) as pool:
            futs = [pool.submit(inference_only, f"{name}-{i}", e, run_dir / f"{name}-{i}") for i, e in enumerate(envs)]
            errs = []
            for f in futs:
                try:
                    started.append(f.result())
                except Exception as exc:  # noqa: BLE001 - stop the others, then raise
                    errs.append(exc)
            if errs:
                raise errs[0]
        log(f"{name}: {len(started)} replicas up ({', '.join(s.addresses['inference'] for s in started)}; "
            f"{max(s.started_s for s in started):.1f}s)")
        yield started
    finally:
        for s in started:
            s.stop()


# -- one streaming call --------------------------------------------------------------------------------


@dataclasses.dataclass
class Call:
    start: float
    first: float | None = None
    end: float = 0.0
    code: str = "OK"
    details: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0
    tag: int = 0  # which system prompt (prefix)
    last: float | None = None
    max_gap: float = 0.0  # longest pause between text chunks (a migrated stream's hand-over shows here)


def chat_req(messages: list[tuple[str, str]], max_tokens: int) -> chat_pb2.StreamChatCompletionRequest:
    return chat_pb2.StreamChatCompletionRequest(
        model=MODEL, max_tokens=max_tokens, temperature=0.0, ignore_eos=True,
        messages=[chat_pb2.ChatRequestMessage(role=r, content=struct_pb2.Value(string_value=t)) for r, t in messages],
        stream_options=common_pb2.StreamOptions(include_usage=True))


async def stream(stub, req, tag: int = 0) -> Call:
    call = Call(time.perf_counter(), tag=tag)
    try:
        async for chunk in stub.StreamChatCompletion(req, timeout=300):
            if any(c.delta.content for c in chunk.choices):
                now = time.perf_counter()
                call.chunks += 1
                call.first = call.first or now
                if call.last is not None:
                    call.max_gap = max(call.max_gap, now - call.last)
                call.last = now
            if chunk.HasField("usage"):
                u = chunk.usage
                call.prompt_tokens, call.completion_tokens = u.prompt_tokens, u.completion_tokens
                call.cached_tokens = u.prompt_tokens_details.cached_tokens
    except grpc.aio.AioRpcError as exc:
        call.code, call.details = exc.code().name, (exc.details() or "")[:200]
    call.end = time.perf_counter()
    return call


async def closed_loop(address: str, workers: int, make_req, *, requests: int | None = None,
                      seconds: float | None = None) -> tuple[list[Call], float, float]:
    """`workers` clients each sending its next request when the last one ended, until `requests` were sent
    (make_req(i) -> (request, tag), in order) or `seconds` passed; returns (calls, t0, wall s)."""
    calls: list[Call] = []
    nxt = 0
    t0 = time.perf_counter()
    async with grpc.aio.insecure_channel(address) as ch:
        stub = chat_pb2_grpc.ChatServiceStub(ch)

        async def worker() -> None:
            nonlocal nxt
            while True:
                if requests is not None and nxt >= requests:
                    return
                if seconds is not None and time.perf_counter() - t0 >= seconds:
                    return
                i, nxt = nxt, nxt + 1
                req, tag = make_req(i)
                calls.append(await stream(stub, req, tag))

        await asyncio.gather(*(worker() for _ in range(workers)))
    return calls, t0, time.perf_counter() - t0


def codes(calls: list[Call]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in calls:
        out[c.code] = out.get(c.code, 0) + 1
    return dict(sorted(out.items()))


# -- 1. prefix-aware routing vs round-robin ------------------------------------------------------------


def prefix_vs_round_robin(env: dict, tok: str, run_dir: Path, args: argparse.Namespace, opening: str = "distinct") -> dict:
    """opening "distinct": each system prompt differs from its first word; "shared": they all open with the
    same words ("You are assistant number k."), so with the chat template's header their first 16-token
    block is the same for every request (as a common preamble is in practice)."""
    rng = random.Random(12)
    body = [" ".join(rng.choice(WORDS) for _ in range(args.system_words)) for _ in range(args.prefixes)]
    systems = ([f"You are assistant number {k}. {b}" for k, b in enumerate(body)] if opening == "shared"
               else [f"{b} (assistant number {k})" for k, b in enumerate(body)])
    plan = [(rng.randrange(args.prefixes), " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + f" ({i})")
            for i in range(args.prefix_requests)]

    def make_req(i: int):
        k, q = plan[i]
        return chat_req([("system", systems[k]), ("user", q)], args.prefix_max_tokens), k

    renv = dict(env, TOKENWAY_INFERENCE_THREADS="1", TOKENWAY_INFERENCE_KV_CACHE_TOKENS=str(args.kv_tokens),
                TOKENWAY_INFERENCE_PREFIX_CACHING="true", OMP_NUM_THREADS="1")
    out: dict = {"opening": opening, "replicas": 3, "engine": "transformers (tokenway-tiny), THREADS=1", "kv_cache_tokens": args.kv_tokens,
                 "prefixes": args.prefixes, "system_words": args.system_words, "requests": args.prefix_requests,
                 "workers": args.prefix_workers, "max_tokens": args.prefix_max_tokens,
                 "replica_settings": settings_of(renv), "runs": {}}
    async def one(run: str):
        routing = run.split("_x")[0]  # "prefix_x2": two orchestrators, each with its own view, share the replicas
        count = 2 if run.endswith("_x2") else 1
        with contextlib.ExitStack() as stack:
            reps = await asyncio.to_thread(stack.enter_context, replicas(f"prefix-{opening}-{run}", [renv] * 3, run_dir))
            proxies = [CountingProxy(r.addresses["inference"]) for r in reps]
            try:
                for p in proxies:
                    await p.start()
                orchs = [await asyncio.to_thread(stack.enter_context, orchestrator(
                    f"prefix-{opening}-{run}-{j}", env, Peers(tok, ",".join(p.address for p in proxies)), run_dir,
                    str(run_dir / f"prefix-{opening}-{run}.db"), auth="off", routing=routing)) for j in range(count)]
                # only the orchestrators' and the engines' first-call costs are warmed, with an unrelated prompt
                for o in orchs:
                    await closed_loop(o.address, 1, lambda i: (chat_req([("user", f"warm up {i}")], 4), -1), requests=3)
                before = [(p.requests, p.hits, dict(p.prefixes)) for p in proxies]
                # the same request sequence, dealt out in turn to the orchestrators, the clients split among them
                got = await asyncio.gather(*(closed_loop(
                    o.address, args.prefix_workers // count + (j < args.prefix_workers % count),
                    lambda i, j=j: make_req(i * count + j), requests=len(range(j, args.prefix_requests, count)))
                    for j, o in enumerate(orchs)))
                calls, wall = [c for g in got for c in g[0]], max(g[2] for g in got)
                per = [{"requests": p.requests - b[0], "hits": p.hits - b[1],
                        "per_prefix": sorted((v - b[2].get(k, 0) for k, v in p.prefixes.items() if v - b[2].get(k, 0)),
                                             reverse=True)} for p, b in zip(proxies, before)]
            finally:
                await asyncio.to_thread(stack.close)
                for p in proxies:
                    await p.stop()
        return calls, wall, per

    for routing in ("round_robin", "prefix", "prefix_x2"):
        calls, wall, per = asyncio.run(one(routing))
        ok = [c for c in calls if c.code == "OK"]
        prompt = sum(c.prompt_tokens for c in ok)
        r = {"codes": codes(calls), "wall_s": round(wall, 2),
             "ttft": pstats([c.first - c.start for c in ok if c.first]),
             "latency": pstats([c.end - c.start for c in ok]),
             "output_tok_s": round(sum(c.completion_tokens for c in ok) / wall, 2),
             "req_s": round(len(ok) / wall, 3),
             "prompt_tokens_mean": round(prompt / len(ok), 1) if ok else None,
             "cached_share": round(sum(c.cached_tokens for c in ok) / prompt, 4) if prompt else None,
             "usage_exact": sum(c.completion_tokens == args.prefix_max_tokens for c in ok),
             "per_replica": per,
             "ttft_hits": pstats([c.first - c.start for c in ok if c.first and c.cached_tokens >= 256]),
             "ttft_misses": pstats([c.first - c.start for c in ok if c.first and c.cached_tokens < 256])}
        out["runs"][routing] = r
        log(f"prefix-{opening}/{routing}: {r['codes']}, TTFT p50/p90 {r['ttft']['p50_ms']}/{r['ttft']['p90_ms']} ms, "
            f"{r['output_tok_s']} tok/s, cached {r['cached_share']}, {r['wall_s']} s; per replica "
            f"{[(x['requests'], x['hits'], len(x['per_prefix'])) for x in per]} (requests, hits, system prompts)")
    rr, px = out["runs"]["round_robin"], out["runs"]["prefix"]
    out["ttft_p90_ratio"] = round(px["ttft"]["p90_ms"] / rr["ttft"]["p90_ms"], 3)
    out["ttft_p50_ratio"] = round(px["ttft"]["p50_ms"] / rr["ttft"]["p50_ms"], 3)
    out["throughput_ratio"] = round(px["output_tok_s"] / rr["output_tok_s"], 3)
    x2 = out["runs"]["prefix_x2"]
    out["x2_ttft_p90_ratio"] = round(x2["ttft"]["p90_ms"] / rr["ttft"]["p90_ms"], 3)
    out["x2_throughput_ratio"] = round(x2["output_tok_s"] / rr["output_tok_s"], 3)
    return out


# -- 2. a replica killed under load --------------------------------------------------------------------


def kill_one_of_three(env: dict, tok: str, run_dir: Path, args: argparse.Namespace) -> dict:
    renv = dict(env, TOKENWAY_INFERENCE_ENGINE="synthetic", TOKENWAY_INFERENCE_SYNTHETIC_STEP_MS=str(args.kill_step_ms),
                TOKENWAY_INFERENCE_MAX_BATCH_SIZE="64", TOKENWAY_INFERENCE_KV_CACHE_TOKENS="1000000")
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) for _ in range(4000)]
    mt = args.kill_max_tokens
    out: dict = {"replicas": 3, "engine": f"synthetic, {args.kill_step_ms} ms per step", "workers": args.kill_workers,
                 "max_tokens": mt, "seconds": args.kill_seconds, "kill_at_s": args.kill_at, "routing": "prefix (default)",
                 "replica_settings": settings_of(renv)}
    with replicas("kill", [renv] * 3, run_dir) as reps, \
            orchestrator("kill", env, Peers(tok, ",".join(r.addresses["inference"] for r in reps)), run_dir,
                         str(run_dir / "kill.db"), auth="off") as o:
        victim = reps[1]
        killed_at: list[float] = []

        async def main():
            async def killer():
                await asyncio.sleep(args.kill_at)
                os.kill(victim.roots["inference"], signal.SIGKILL)
                killed_at.append(time.perf_counter())
                log(f"kill: SIGKILL inference pid {victim.roots['inference']} ({victim.addresses['inference']})")
            k = asyncio.create_task(killer())
            res = await closed_loop(o.address, args.kill_workers, lambda i: (chat_req([("user", texts[i % len(texts)])], mt), 0),
                                    seconds=args.kill_seconds)
            await k
            return res

        calls, t0, wall = asyncio.run(main())
    tk = killed_at[0]
    mid = [c for c in calls if c.first is not None and c.first <= tk < c.end]
    started_before = [c for c in calls if c.start <= tk < c.end]
    after = [c for c in calls if c.start > tk]
    failed = [c for c in calls if c.code != "OK"]
    out.update({
        "calls": len(calls), "codes": codes(calls), "wall_s": round(wall, 2),
        "mid_generation_at_kill": len(mid), "mid_generation_failed": sum(c.code != "OK" for c in mid),
        "in_flight_at_kill": len(started_before), "in_flight_at_kill_failed": sum(c.code != "OK" for c in started_before),
        "started_after_kill": len(after), "started_after_kill_failed": sum(c.code != "OK" for c in after),
        "usage_exact": sum(c.code == "OK" and c.completion_tokens == mt for c in calls),
        "usage_exact_mid_generation": sum(c.code == "OK" and c.completion_tokens == mt for c in mid),
        "failures": [{"code": c.code, "details": c.details, "start_s": round(c.start - t0, 3),
                      "first_s": round(c.first - t0, 3) if c.first else None} for c in failed][:20],
        "mid_generation_latency": pstats([c.end - c.start for c in mid]),
        "mid_generation_max_gap_ms": sorted(round(c.max_gap * 1e3, 1) for c in mid),
        "max_gap_others": pstats([c.max_gap for c in calls if c not in mid and c.code == "OK"]),
        "latency_not_at_kill": pstats([c.end - c.start for c in calls if c not in mid and c.code == "OK"]),
    })
    log(f"kill: {out['calls']} calls {out['codes']}; {len(mid)} mid-generation at the kill, "
        f"{out['mid_generation_failed']} failed; usage exact {out['usage_exact']}/{len(calls)}")
    return out


# -- 3. a slow replica's share -------------------------------------------------------------------------


class CountingProxy:
    """A pass-through gRPC proxy in front of one replica (raw bytes, every method), counting Generate calls
    and the token ids they returned."""

    UNARY_STREAM = ("/tokenway.inference.v1.InferenceService/Generate", "/grpc.health.v1.Health/Watch")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests = 0
        self.tokens = 0
        self.address = ""
        self.prefixes: dict[int, int] = {}  # hash of a prompt's first PREFIX_KEY ids -> Generate calls
        self.hits = 0  # calls whose first message said >= 256 cached prompt tokens

    async def start(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.upstream)
        self.server = grpc.aio.server(options=[("grpc.keepalive_permit_without_calls", 1),
                                               ("grpc.http2.min_ping_interval_without_data_ms", 500),
                                               ("grpc.http2.max_ping_strikes", 0)])
        proxy = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                m = details.method

                async def unary_stream(req, ctx):
                    async for msg in proxy._stream(m, req, ctx):
                        yield msg

                async def unary_unary(req, ctx):
                    return await proxy._unary(m, req, ctx)

                if m in CountingProxy.UNARY_STREAM:
                    return grpc.unary_stream_rpc_method_handler(unary_stream)
                return grpc.unary_unary_rpc_method_handler(unary_unary)

        self.server.add_generic_rpc_handlers((Handler(),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.server.stop(0)
        await self.channel.close()

    @staticmethod
    def _md(ctx):
        return tuple((k, v) for k, v in ctx.invocation_metadata() if not k.startswith((":", "grpc-")) and k != "user-agent")

    async def _unary(self, method, req, ctx):
        try:
            return await self.channel.unary_unary(method)(req, timeout=ctx.time_remaining(), metadata=self._md(ctx))
        except grpc.aio.AioRpcError as exc:
            await ctx.abort(exc.code(), exc.details() or "", exc.trailing_metadata())

    async def _stream(self, method, req, ctx):
        gen = method.endswith("/Generate")
        if gen:
            self.requests += 1
            key = hash(tuple(inference_pb2.GenerateRequest.FromString(req).prompt_token_ids[:PREFIX_KEY]))
            self.prefixes[key] = self.prefixes.get(key, 0) + 1
        call = self.channel.unary_stream(method)(req, timeout=ctx.time_remaining(), metadata=self._md(ctx))
        try:
            async for msg in call:
                if gen:
                    resp = inference_pb2.GenerateResponse.FromString(msg)
                    self.tokens += len(resp.token_ids)
                    if resp.HasField("prompt_info") and resp.prompt_info.cached_tokens >= 256:
                        self.hits += 1
                yield msg
        except grpc.aio.AioRpcError as exc:
            await ctx.abort(exc.code(), exc.details() or "", exc.trailing_metadata())
        finally:
            call.cancel()


def slow_replica_share(env: dict, tok: str, run_dir: Path, args: argparse.Namespace) -> dict:
    steps = [args.slow_step_ms, args.slow_step_ms, 3 * args.slow_step_ms]
    envs = [dict(env, TOKENWAY_INFERENCE_ENGINE="synthetic", TOKENWAY_INFERENCE_SYNTHETIC_STEP_MS=str(s),
                 TOKENWAY_INFERENCE_MAX_BATCH_SIZE="64", TOKENWAY_INFERENCE_KV_CACHE_TOKENS="1000000") for s in steps]
    speed = [1 / s for s in steps]
    ideal = [round(v / sum(speed), 4) for v in speed]
    rng = random.Random(5)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) for _ in range(4000)]
    mt = args.slow_max_tokens
    out: dict = {"step_ms": steps, "ideal_share": ideal, "workers": args.slow_workers, "max_tokens": mt,
                 "seconds": args.slow_seconds, "runs": {}}
    with replicas("slow", envs, run_dir) as reps:
        async def main() -> None:
            proxies = [CountingProxy(r.addresses["inference"]) for r in reps]
            for p in proxies:
                await p.start()
            try:
                for routing in ("least_load", "prefix"):
                    with contextlib.ExitStack() as stack:
                        cm = orchestrator(f"slow-{routing}", env, Peers(tok, ",".join(p.address for p in proxies)),
                                          run_dir, str(run_dir / f"slow-{routing}.db"), auth="off", routing=routing)
                        o = await asyncio.to_thread(stack.enter_context, cm)
                        try:
                            before = [(p.requests, p.tokens) for p in proxies]
                            calls, _, wall = await closed_loop(
                                o.address, args.slow_workers,
                                lambda i: (chat_req([("user", texts[i % len(texts)])], mt), 0), seconds=args.slow_seconds)
                            got = [(p.requests - b[0], p.tokens - b[1]) for p, b in zip(proxies, before)]
                        finally:
                            await asyncio.to_thread(stack.close)
                    nreq, ntok = sum(g[0] for g in got), sum(g[1] for g in got)
                    r = {"codes": codes(calls), "wall_s": round(wall, 2), "requests": [g[0] for g in got],
                         "tokens": [g[1] for g in got],
                         "request_share": [round(g[0] / nreq, 4) for g in got] if nreq else None,
                         "token_share": [round(g[1] / ntok, 4) for g in got] if ntok else None,
                         "output_tok_s": round(sum(c.completion_tokens for c in calls if c.code == "OK") / wall, 1),
                         "latency": pstats([c.end - c.start for c in calls if c.code == "OK"])}
                    r["slow_share_over_ideal"] = round(r["request_share"][2] / ideal[2], 3) if nreq else None
                    out["runs"][routing] = r
                    log(f"slow/{routing}: {r['codes']}, requests {r['requests']} share {r['request_share']} "
                        f"(ideal {ideal}), tokens share {r['token_share']}")
            finally:
                for p in proxies:
                    await p.stop()

        asyncio.run(main())
    return out


# -- the run -------------------------------------------------------------------------------------------


def bars(doc: dict) -> list[dict]:
    out = []
    for key in ("prefix", "prefix_shared_opening"):
        if key not in doc:
            continue
        p = doc[key]
        rr, px = p["runs"]["round_robin"], p["runs"]["prefix"]
        which = f"[{p['opening']} openings] "
        out.append({"bar": "prefix_ttft", "text": which + BARS["prefix_ttft"], "met": p["ttft_p90_ratio"] <= 0.5,
                    "figure": f"{p['ttft_p90_ratio']}x (p90 {px['ttft']['p90_ms']} vs {rr['ttft']['p90_ms']} ms; p50 "
                              f"{p['ttft_p50_ratio']}x; cached prompt share {px['cached_share']} vs {rr['cached_share']}; "
                              f"requests per replica {[x['requests'] for x in px['per_replica']]} vs "
                              f"{[x['requests'] for x in rr['per_replica']]})"})
        out.append({"bar": "prefix_throughput", "text": which + BARS["prefix_throughput"], "met": p["throughput_ratio"] >= 1.0,
                    "figure": f"{p['throughput_ratio']}x ({px['output_tok_s']} vs {rr['output_tok_s']} output tok/s)"})
        x2 = p["runs"]["prefix_x2"]
        out.append({"bar": "prefix_x2", "text": which + BARS["prefix_x2"],
                    "met": p["x2_ttft_p90_ratio"] <= 0.5 and p["x2_throughput_ratio"] >= 1.0,
                    "figure": f"TTFT p90 {p['x2_ttft_p90_ratio']}x ({x2['ttft']['p90_ms']} ms), throughput "
                              f"{p['x2_throughput_ratio']}x ({x2['output_tok_s']} output tok/s); cached prompt share "
                              f"{x2['cached_share']}; requests per replica {[x['requests'] for x in x2['per_replica']]}"})
    if "kill" in doc:
        k = doc["kill"]
        ok = (k["mid_generation_failed"] == 0 and k["usage_exact"] == k["calls"] and k["mid_generation_at_kill"] > 0)
        out.append({"bar": "kill", "text": BARS["kill"], "met": ok,
                    "figure": f"{k['mid_generation_failed']} of {k['mid_generation_at_kill']} mid-generation streams failed; "
                              f"{k['calls'] - k['codes'].get('OK', 0)} of {k['calls']} calls failed in all; usage exact "
                              f"{k['usage_exact']}/{k['calls']}"})
    if "slow" in doc:
        s = doc["slow"]
        ll = s["runs"]["least_load"]
        ratio = ll["slow_share_over_ideal"]
        out.append({"bar": "slow", "text": BARS["slow"], "met": ratio is not None and 0.75 <= ratio <= 1.25,
                    "figure": f"least_load: slow replica {ll['request_share'][2]} of requests (ideal {s['ideal_share'][2]}, "
                              f"{ratio}x); prefix: {s['runs']['prefix']['request_share'][2]} "
                              f"({s['runs']['prefix']['slow_share_over_ideal']}x)"})
    return out


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def run(args: argparse.Namespace) -> dict:
    started = dt.datetime.now(dt.timezone.utc)
    run_dir = ROOT / ".tokenway" / "bench-runs" / f"routing-{started.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1",
               TOKENWAY_MODEL=os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway" / "models" / "tokenway-tiny")))
    cpu_model, mem_gib = host()
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    py = Path(sys.executable)
    doc: dict = {"meta": {
        "date_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "host": platform.node(), "cpu_model": cpu_model,
        "cores": os.cpu_count(), "ram_gib": mem_gib, "python": platform.python_version(), "git_commit": git,
        "command": shlex.join([py.relative_to(ROOT).as_posix() if py.is_relative_to(ROOT) else str(py), *sys.argv]),
        "auth": "TOKENWAY_ORCHESTRATOR_AUTH=off on every orchestrator of this bench",
        "run_dir": os.path.relpath(run_dir, ROOT), "loadavg_start": _loadavg(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"}}}
    only = set(args.only.split(","))
    log(f"bench-routing: logs in {os.path.relpath(run_dir, ROOT)}")
    with tokenizer(env, run_dir) as tok, tokenizer(env, run_dir, "tokenizer-2") as tok2:
        for name, fn in (("kill", kill_one_of_three), ("slow", slow_replica_share),
                         ("prefix", prefix_vs_round_robin), ("prefix_shared_opening", prefix_vs_round_robin)):
            if name.split("_")[0] in only:
                t = time.monotonic()
                # every orchestrator of the prefix runs has both tokenizer replicas (the others need one)
                doc[name] = (fn(env, f"{tok},{tok2}", run_dir, args, "shared") if name == "prefix_shared_opening"
                             else fn(env, f"{tok},{tok2}", run_dir, args) if name == "prefix" else fn(env, tok, run_dir, args))
                doc[name]["measure_s"] = round(time.monotonic() - t, 1)
    doc["bars"] = bars(doc)
    doc["wall_s"] = round(time.monotonic() - T0, 1)
    doc["meta"]["loadavg_end"] = _loadavg()
    return doc


def markdown(doc: dict, json_name: str) -> str:
    m = doc["meta"]
    L = [f"# make bench-routing — {m['date_utc']}", "",
         f"`{m['command']}` · {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB · commit {m['git_commit'][:10]} · "
         f"{m['auth']} · {doc['wall_s']:.0f} s · load average {m['loadavg_start']} at the start, {m['loadavg_end']} at "
         f"the end · raw figures: `{json_name}`", "", "## Bars", "", "| bar | met | figure |", "|---|---|---|"]
    L += [f"| {b['text']} | {VERDICT[b['met']]} | {b['figure']} |" for b in doc["bars"]]
    for key in ("prefix", "prefix_shared_opening"):
        if key not in doc:
            continue
        p = doc[key]
        L += ["", f"## 1{'a' if key == 'prefix' else 'b'}. Shared-prefix load: prefix-aware vs round-robin — "
              f"{p['opening']} openings", "",
              {"distinct": "The system prompts differ from their first word, so their first 16-token block already tells "
                           "them apart (the case prefix routing is built for).",
               "shared": "Every system prompt opens with the same words (\"You are assistant number k. …\"): with the chat "
                         "template's header, the first 16-token block is the same for every request, as a common preamble "
                         "is in practice."}[p["opening"]], "",
              f"{p['replicas']} replicas, {p['engine']}, KV_CACHE_TOKENS={p['kv_cache_tokens']} each; {p['prefixes']} system "
              f"prompts of {p['system_words']} words (~{p['runs']['prefix']['prompt_tokens_mean']} prompt tokens a request "
              f"with the user turn), each request one of them (seeded, uniform) + a short unique user turn; "
              f"{p['workers']} closed-loop streaming clients, {p['requests']} requests, max_tokens {p['max_tokens']} "
              "(ignore_eos); fresh replicas (empty caches) for each policy, the same request sequence; each replica behind a "
              "counting pass-through proxy in the bench process (requests, cache hits and system prompts per replica).", "",
              "| routing | answers | TTFT p50 / p90 / p99 ms | latency p50 / p90 ms | output tok/s | req/s | cached prompt share | usage exact | wall s |",
              "|---|---|---|---|---|---|---|---|---|"]
        for name, r in p["runs"].items():
            L.append(f"| {name} | {r['codes']} | {r['ttft']['p50_ms']} / {r['ttft']['p90_ms']} / {r['ttft']['p99_ms']} | "
                     f"{r['latency']['p50_ms']} / {r['latency']['p90_ms']} | {r['output_tok_s']} | {r['req_s']} | "
                     f"{r['cached_share']} | {r['usage_exact']} | {r['wall_s']} |")
        L += ["", "| routing | replica | requests | cache hits (>= 256 cached tokens) | system prompts sent to it (requests each) |",
              "|---|---|---|---|---|"]
        for name, r in p["runs"].items():
            L += [f"| {name} | {i + 1} | {x['requests']} | {x['hits']} | {len(x['per_prefix'])} ({x['per_prefix']}) |"
                  for i, x in enumerate(r["per_replica"])]
        L += ["", "| routing | TTFT p50 / p90 ms, cache hits | TTFT p50 / p90 ms, misses |", "|---|---|---|"]
        L += [f"| {name} | {r['ttft_hits']['p50_ms']} / {r['ttft_hits']['p90_ms']} (n={r['ttft_hits']['n']}) | "
              f"{r['ttft_misses']['p50_ms']} / {r['ttft_misses']['p90_ms']} (n={r['ttft_misses']['n']}) |" for name, r in p["runs"].items()]
        L += ["", f"prefix / round_robin: TTFT p90 x{p['ttft_p90_ratio']}, p50 x{p['ttft_p50_ratio']}, throughput x{p['throughput_ratio']}."]
    if "kill" in doc:
        k = doc["kill"]
        L += ["", "## 2. kill -9 of one of three replicas under load", "",
              f"{k['replicas']} replicas, {k['engine']}; routing {k['routing']}; {k['workers']} closed-loop streaming clients, "
              f"max_tokens {k['max_tokens']} (ignore_eos), {k['seconds']} s; SIGKILL of replica 2 at {k['kill_at_s']} s.", "",
              "| calls | answers | mid-generation at the kill (failed) | in flight at the kill (failed) | started after (failed) | "
              "usage exact | latency p50 / max ms, mid-generation | latency p50 / max ms, others |", "|---|---|---|---|---|---|---|---|",
              f"| {k['calls']} | {k['codes']} | {k['mid_generation_at_kill']} ({k['mid_generation_failed']}) | "
              f"{k['in_flight_at_kill']} ({k['in_flight_at_kill_failed']}) | {k['started_after_kill']} ({k['started_after_kill_failed']}) | "
              f"{k['usage_exact']}/{k['calls']} | {k['mid_generation_latency']['p50_ms']} / {k['mid_generation_latency']['p99_ms']} (p99) | "
              f"{k['latency_not_at_kill']['p50_ms']} / {k['latency_not_at_kill']['p99_ms']} (p99) |"]
        L += ["", f"Longest pause between text chunks of each stream mid-generation at the kill (ms; the streams on the killed "
              f"replica were handed over): {k['mid_generation_max_gap_ms']}; other streams: p50 {k['max_gap_others']['p50_ms']}, "
              f"p99 {k['max_gap_others']['p99_ms']} ms."]
        if k["failures"]:
            L += ["", "Failures: " + "; ".join(f"{f['code']} at {f['start_s']} s ({f['details']})" for f in k["failures"])]
    if "slow" in doc:
        s = doc["slow"]
        L += ["", "## 3. A replica 3x slower", "",
              f"3 synthetic replicas, step {s['step_ms']} ms, each behind a counting pass-through proxy in the bench process; "
              f"{s['workers']} closed-loop streaming clients, max_tokens {s['max_tokens']} (ignore_eos), distinct prompts, "
              f"{s['seconds']} s per routing. Ideal share by speed: {s['ideal_share']}.", "",
              "| routing | answers | requests per replica | request share | token share | slow share / ideal | output tok/s | latency p50 / p99 ms |",
              "|---|---|---|---|---|---|---|---|"]
        for name, r in s["runs"].items():
            L.append(f"| {name} | {r['codes']} | {r['requests']} | {r['request_share']} | {r['token_share']} | "
                     f"{r['slow_share_over_ideal']} | {r['output_tok_s']} | {r['latency']['p50_ms']} / {r['latency']['p99_ms']} |")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where the JSON and Markdown go")
    ap.add_argument("--only", default="prefix,kill,slow", help="which measurements (comma-separated)")
    ap.add_argument("--prefixes", type=int, default=9, help="distinct system prompts")
    ap.add_argument("--system-words", type=int, default=330, help="words per system prompt")
    # 8192: three ~880-token system prompts cached beside 4 running sequences (~3600 tokens of copied KV); the
    # 6144 of earlier runs left room for two, so even perfect routing evicted
    ap.add_argument("--kv-tokens", type=int, default=8192, help="KV_CACHE_TOKENS of each transformers replica")
    ap.add_argument("--prefix-requests", type=int, default=150)
    ap.add_argument("--prefix-workers", type=int, default=4)
    ap.add_argument("--prefix-max-tokens", type=int, default=16)
    ap.add_argument("--kill-step-ms", type=float, default=20.0)
    ap.add_argument("--kill-workers", type=int, default=6)
    ap.add_argument("--kill-max-tokens", type=int, default=64)
    ap.add_argument("--kill-seconds", type=float, default=12.0)
    ap.add_argument("--kill-at", type=float, default=5.0)
    ap.add_argument("--slow-step-ms", type=float, default=10.0)
    ap.add_argument("--slow-workers", type=int, default=12)
    ap.add_argument("--slow-max-tokens", type=int, default=32)
    ap.add_argument("--slow-seconds", type=float, default=20.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"routing-{doc['meta']['date_utc'][:16].replace('-', '').replace('T', '-').replace(':', '')}"
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
