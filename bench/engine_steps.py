"""Engine step time and memory vs batch and width: the transformers engine's decode step, measured.

    python bench/engine_steps.py [--model tiny|small|DIR ...] [--batch 1,8,32] [--width 256,1024,1900]
        [--steps N] [--threads 1] [--cell-timeout S] [--budget S] [--rev REV] [--out bench/results]
        [--label before|after|...] [--quick]

For each model a fresh TransformersEngine (in its own child process, so one model's memory never shows in
the next one's figures) and, for each cell (batch B, width T):

1. submit B distinct prompts of T token ids (drawn from the tokenizer's ordinary vocabulary, seeded by the
   cell), greedy, ignore_eos; `prefill s` is submission until every sequence has its first token (on the
   current engine that includes the first decode step of the whole batch: prefill and decode share a step);
2. let `--warm` decode steps pass, then time `--steps` decode steps between two `wait_until` points
   (Load.steps) -> `decode ms/step`; the batch's KV grows by one token per row per step meanwhile;
3. read the process's memory while the batch is still decoding, then abort it and wait until nothing runs.

Memory is the process's VmRSS; `peak` is VmHWM since the cell began (reset through /proc/self/clear_refs).
`KV held` is what the batch's cache really holds, B x (T + generated) x kv_bytes_per_token; `budget` is
kv_bytes_per_token x the engine's kv_cache_tokens, what admission lets the cache grow to. A cell that runs
past `--cell-timeout` is aborted and recorded as `timeout` (with the decode steps it managed, if any):
on an engine that copies its whole cache every step the largest cells are far slower than the rest.
With `--budget`, the whole run stays within that many seconds: a cell's timeout shrinks to what is left,
and cells not started in time are recorded as `not_run`. Cells run smallest (B x T) first.

The engine measured is the working tree's; with `--rev REV` it is the one committed at REV (its
services/inference/src and libs/ taken with `git archive` into a temporary directory put first on the
worker's PYTHONPATH), so a figure can be retaken for a commit while the tree is being edited. The JSON
records which engine source was imported and whether it is the committed one.

The tool drives the engine only through from_settings, start, generate, abort, load, wait_until,
generated_tokens and close, so the same command measures the engine before and after a rewrite.
Writes engine-steps-<label>-<UTC YYYYMMDD-HHMM>.json and .md into --out and prints the Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime as dt
import gc
import hashlib
import importlib.metadata as md
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from procs import host  # noqa: E402

MODELS = {"tiny": ROOT / ".tokenway" / "models" / "tokenway-tiny", "small": ROOT / ".tokenway" / "models" / "tokenway-small"}
ENGINE_SOURCE = "services/inference/src/tokenway_inference/engines/transformers_engine.py"
MIB = 2**20
#: Time a cell may take to give its rows back after an abort (one in-flight step: a prefill or a decode).
ABORT_S = 180.0


# ---- the parent: plan, one child per model, report -------------------------------------------------


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--model", nargs="+", default=None, help="tiny, small or a model directory (default: tiny small; "
                                                             "--quick: tiny)")
    ap.add_argument("--batch", type=_ints, default=None, help="batch sizes (default 1,8,32; --quick: 2)")
    ap.add_argument("--width", type=_ints, default=None, help="prompt lengths in tokens (default 256,1024,1900; "
                                                              "--quick: 64)")
    ap.add_argument("--steps", type=int, default=None, help="decode steps timed per cell (default 16; --quick: 4)")
    ap.add_argument("--warm", type=int, default=2, help="decode steps let pass before timing (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="the engine's torch threads (default 1: one core's "
                                                           "work, comparable across engine versions)")
    ap.add_argument("--cell-timeout", type=float, default=None, help="seconds one cell may take from submission to "
                                                                     "its last timed step (default 120; --quick: 60)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole run, loads included "
                                                              "(default: none; each cell is still bounded)")
    ap.add_argument("--rev", help="measure the engine as committed at this git revision instead of the working tree")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="directory for the .json and .md")
    ap.add_argument("--label", default="run", help="names the output files: before, after, ...")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny model, one small cell, few steps")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure this model directory
    ap.add_argument("--jsonl", type=Path, help=argparse.SUPPRESS)  # internal: where the worker appends its records
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)  # internal: time.time() to start no cell after
    ap.add_argument("--source-commit", help=argparse.SUPPRESS)  # internal: the commit the imported engine should match
    args = ap.parse_args(argv)
    quick = args.quick
    args.model = args.model or (["tiny"] if quick else ["tiny", "small"])
    args.batch = args.batch or ([2] if quick else [1, 8, 32])
    args.width = args.width or ([64] if quick else [256, 1024, 1900])
    args.steps = args.steps or (4 if quick else 16)
    args.cell_timeout = args.cell_timeout or (60.0 if quick else 120.0)
    if args.steps < 1 or args.warm < 0 or args.threads < 0 or args.cell_timeout <= 0 or (args.budget or 1) <= 0:
        ap.error("--steps >= 1, --warm >= 0, --threads >= 0, --cell-timeout > 0 and --budget > 0")
    if not args.label.replace("-", "").replace("_", "").isalnum():
        ap.error("--label: letters, digits, - and _ only (it names files)")
    return args


def log(msg: str) -> None:
    print(f"[engine-steps] {msg}", file=sys.stderr, flush=True)


def resolve_model(name: str) -> tuple[str, Path]:
    """(display name, directory); builds tiny when absent and small on demand with the repo's builder."""
    if name not in MODELS:
        path = Path(name).resolve()
        if not (path / "config.json").is_file():
            raise SystemExit(f"--model {name}: not tiny, small or a model directory with a config.json")
        return path.name, path
    path = MODELS[name]
    if name == "small" or not (path / "config.json").is_file():  # the builder reuses a directory whose stamp matches
        log(f"building {name} into {os.path.relpath(path, ROOT)}")
        subprocess.run([sys.executable, "tools/model/build_model.py", "--size", name, "--out", str(path)], cwd=ROOT,
                       check=True, stdout=sys.stderr, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return name, path


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine() -> dict:
    cpu_model, mem_gib = host()

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    exe = Path(sys.executable)
    exe_s = exe.relative_to(ROOT).as_posix() if exe.is_relative_to(ROOT) else str(exe)
    return {
        "cpu_model": cpu_model, "cores": os.cpu_count(), "ram_gib": mem_gib, "os": platform.platform(),
        "hostname": platform.node(), "python": platform.python_version(), "loadavg_start": loadavg(),
        "versions": {d: version(d) for d in ("torch", "transformers", "tokenizers", "safetensors")},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": shlex.join([exe_s, *sys.argv]),
    }


def engine_tree(rev: str | None, tmp: Path) -> dict:
    """Which engine the workers import: the working tree's, or REV's sources extracted under tmp."""
    if rev is None:
        return {"from": "working tree", "commit": _git("rev-parse", "HEAD")}
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if not commit:
        raise SystemExit(f"--rev {rev}: not a commit")
    archive = subprocess.run(["git", "archive", commit, "services/inference/src", "libs"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    paths = [str(tmp / "services" / "inference" / "src"), *sorted(str(p) for p in (tmp / "libs").glob("*/src"))]
    log(f"engine sources of {rev} ({commit[:12]}) extracted to {tmp}")
    return {"from": f"git archive of {rev}", "rev": rev, "commit": commit, "pythonpath": paths}


def run_model(args: argparse.Namespace, name: str, path: Path, jsonl: Path, deadline: float | None,
              source: dict) -> dict:
    """Measures one model in a child process; returns its record (cells the child never reached: not_run)."""
    cells = len(args.batch) * len(args.width)
    limit = 300 + cells * (args.cell_timeout + ABORT_S + 30)
    if deadline is not None:  # the worker starts no cell after the deadline; one in flight may still need its abort
        limit = min(limit, max(0.0, deadline - time.time()) + args.cell_timeout + ABORT_S + 60)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path), "--jsonl", str(jsonl),
           "--batch", ",".join(map(str, args.batch)), "--width", ",".join(map(str, args.width)),
           "--steps", str(args.steps), "--warm", str(args.warm), "--threads", str(args.threads),
           "--cell-timeout", str(args.cell_timeout), "--source-commit", source["commit"]]
    cmd += ["--deadline", str(deadline)] if deadline is not None else []
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if source.get("pythonpath"):
        env["PYTHONPATH"] = os.pathsep.join([*source["pythonpath"], *filter(None, [env.get("PYTHONPATH")])])
    status, error = "ok", None
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=sys.stderr, timeout=limit)
        if proc.returncode != 0:
            status, error = "error", f"the worker exited with {proc.returncode}"
    except subprocess.TimeoutExpired:  # subprocess.run kills it
        status, error = "killed", f"the worker ran past {limit:.0f} s"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    model = next((r["model"] for r in records if "model" in r), {"dir": str(path)})
    done = {(c["batch"], c["width"]): c for c in (r["cell"] for r in records if "cell" in r)}
    model["cells"] = [done.get((b, t), {"batch": b, "width": t, "status": "not_run"})
                      for b in args.batch for t in args.width]
    model.update(name=name, status=status)
    if error:
        model["error"] = error
    return model


def _num(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def markdown(doc: dict) -> str:
    m, s = doc["meta"], doc["settings"]
    tree = s.get("engine_tree") or {}
    budget = "" if s.get("budget_s") is None else f", run budget {s['budget_s']:.0f} s"
    lines = [
        f"# Engine steps: {s['label']}, {m['date_utc']}",
        "",
        f"- {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM; load average {m['loadavg_start']} at "
        f"the start, {m.get('loadavg_end', '?')} at the end",
        f"- torch {m['versions']['torch']}, transformers {m['versions']['transformers']}, Python {m['python']}; "
        f"commit {m['git_commit'][:12]}{' (with uncommitted changes to tracked files)' if m['git_dirty'] else ''}",
        f"- `{m['command']}`",
        f"- engine: {tree.get('from', '?')} ({str(tree.get('commit'))[:12]})",
        f"- engine threads {s['threads']}; {s['steps']} decode steps timed per cell after {s['warm']} warm-up "
        f"steps; cell timeout {s['cell_timeout_s']:.0f} s{budget}; whole run {m.get('wall_s', '?')} s",
    ]
    for mod in doc["models"]:
        src = mod.get("engine_source") or {}
        same = {True: "as committed at", False: "MODIFIED from", None: "?"}[src.get("matches_commit")]
        same = f"{src.get('imported', '?')}, {same} {str(src.get('commit'))[:12]}"
        cfg = mod.get("config", {})
        lines.append(
            f"- **{mod['name']}**: {cfg.get('layers', '?')} layers, hidden {cfg.get('hidden', '?')}, "
            f"{cfg.get('kv_heads', '?')} KV heads; {_num(mod.get('params_m'), 2)} M parameters; "
            f"load+warm {_num(mod.get('load_s'))} s; RSS {_num(mod.get('rss_before_load_mib'), 0)} MiB before load, "
            f"{_num(mod.get('rss_after_load_mib'), 0)} after; KV {mod.get('kv_bytes_per_token', '?')} B/token x "
            f"kv_cache_tokens {mod.get('kv_cache_tokens', '?')} = budget {_num(mod.get('kv_budget_mib'), 0)} MiB; "
            f"engine source {same}; run {mod['status']}{': ' + mod['error'] if mod.get('error') else ''}")
    lines += [
        "",
        "| model | B | T | prefill s | decode ms/step | decode tok/s | RSS MiB at decode | RSS - loaded MiB "
        "| peak MiB | KV held MiB | budget MiB | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mod in doc["models"]:
        for c in sorted(mod["cells"], key=lambda c: (c["batch"], c["width"])):
            status = c["status"]
            if status == "timeout":
                status = f"timeout in {c.get('phase')} after {_num(c.get('elapsed_s'), 0)} s"
                if c.get("decoding") is not None and c.get("phase") == "prefill":
                    status += f" ({c['decoding']}/{c['batch']} decoding)"
                if c.get("decode_steps"):
                    status += f"; {c['decode_steps']} steps timed"
            if status == "not_run" and c.get("reason"):
                status = f"not run ({c['reason']})"
            lines.append(
                f"| {mod['name']} | {c['batch']} | {c['width']} | {_num(c.get('prefill_s'), 2)} "
                f"| {_num(c.get('decode_ms_per_step'))} | {_num(c.get('decode_tok_s'))} | {_num(c.get('rss_decode_mib'), 0)} "
                f"| {_num(c.get('rss_over_loaded_mib'), 0)} | {_num(c.get('hwm_cell_mib'), 0)} "
                f"| {_num(c.get('kv_held_mib'))} | {_num(mod.get('kv_budget_mib'), 0)} | {status} |")
    lines += ["", f"Data: `{doc['json_name']}`. Columns: prefill s = submission until every row has its first token; "
              "decode ms/step = wall time of the timed steps / steps; RSS - loaded = RSS at decode minus RSS after "
              "the model was loaded and warmed; peak = VmHWM since the cell began; KV held = B x (T + generated) x "
              "KV bytes/token; budget = KV bytes/token x kv_cache_tokens.", ""]
    return "\n".join(lines)


def main_parent(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    meta = {"date_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"), **machine()}
    models = [resolve_model(m) for m in args.model]
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"engine-steps-{args.label}-{started.strftime('%Y%m%d-%H%M')}"
    doc = {"meta": meta, "json_name": base.with_suffix(".json").name,
           "settings": {"label": args.label, "models": args.model, "batches": args.batch, "widths": args.width,
                        "steps": args.steps, "warm": args.warm, "threads": args.threads,
                        "cell_timeout_s": args.cell_timeout, "budget_s": args.budget, "quick": args.quick},
           "models": []}
    deadline = time.time() + args.budget if args.budget else None
    with tempfile.TemporaryDirectory(prefix="engine-steps-") as tmp:
        source = engine_tree(args.rev, Path(tmp))
        doc["settings"]["engine_tree"] = {k: v for k, v in source.items() if k != "pythonpath"}
        for name, path in models:
            jsonl = base.with_name(base.name + f".{name}.jsonl")
            jsonl.unlink(missing_ok=True)
            log(f"{name}: {os.path.relpath(path, ROOT)}")
            try:
                doc["models"].append(run_model(args, name, path, jsonl, deadline, source))
            finally:
                jsonl.unlink(missing_ok=True)
    meta["loadavg_end"] = loadavg()
    meta["wall_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    base.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    base.with_suffix(".md").write_text(text)
    print(text)
    log(f"wrote {base.with_suffix('.json')} and .md")
    return 0 if all(m["status"] == "ok" for m in doc["models"]) else 1


# ---- the worker: one model, every cell --------------------------------------------------------------


def memory() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def give_back_memory() -> None:
    """Returns freed heap to the kernel, so a cell's RSS is not the previous cell's leftovers."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def engine_source(module, commit: str) -> dict:
    """Where the engine module this process imported lies, and whether it is `commit`'s (git blob ids compared)."""
    path = Path(module.__file__).resolve()
    data = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's object id
    committed = _git("rev-parse", f"{commit}:{ENGINE_SOURCE}")
    return {"imported": os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path), "blob": blob,
            "commit": commit, "committed_blob": committed, "matches_commit": blob == committed,
            "working_tree_engines_status": _git("status", "--porcelain", "--", os.path.dirname(ENGINE_SOURCE)).splitlines()}


def ordinary_ids(model_dir: Path) -> list[int]:
    """The tokenizer's ids that are not added/special tokens, ascending."""
    from tokenizers import Tokenizer  # noqa: PLC0415

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    special = set(tok.get_added_tokens_decoder())
    return sorted(i for i in tok.get_vocab(with_added_tokens=False).values() if i not in special)


def prompts(ids: list[int], batch: int, width: int) -> list[tuple[int, ...]]:
    rng = random.Random(f"engine-steps {batch}x{width}")
    out: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while len(out) < batch:
        p = tuple(rng.choices(ids, k=width))
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.model_dir = Path(args.worker)
        self.jsonl: Path = args.jsonl
        cfg = json.loads((self.model_dir / "config.json").read_text())
        self.cfg = cfg.get("text_config", cfg)
        self.eng = None
        self.rss_loaded = None

    def emit(self, record: dict) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")

    async def run(self) -> int:
        from tokenway_inference.config import InferenceSettings  # noqa: PLC0415
        from tokenway_inference.engines import transformers_engine  # noqa: PLC0415
        from tokenway_inference.engines.base import kv_bytes_per_token  # noqa: PLC0415
        from tokenway_inference.engines.transformers_engine import TransformersEngine  # noqa: PLC0415

        source = engine_source(transformers_engine, self.args.source_commit or _git("rev-parse", "HEAD"))
        give_back_memory()
        before = memory()
        settings = InferenceSettings(port=0, model=str(self.model_dir), threads=self.args.threads,
                                     max_batch_size=max(self.args.batch), max_waiting=max(self.args.batch))
        dtype = "float32" if settings.dtype == "auto" else settings.dtype  # auto is float32 on this engine
        self.kv_per_token = kv_bytes_per_token(str(self.model_dir), dtype)
        self.kv_budget = self.kv_per_token * settings.kv_cache_tokens
        self.context = settings.max_model_len or int(self.cfg.get("max_position_embeddings") or 2048)
        t0 = time.perf_counter()
        self.eng = TransformersEngine.from_settings(settings)
        await self.eng.start()
        load_s = time.perf_counter() - t0
        give_back_memory()
        loaded = memory()
        self.rss_loaded = loaded["VmRSS"]
        params = None
        try:
            from safetensors import safe_open  # noqa: PLC0415

            with safe_open(str(self.model_dir / "model.safetensors"), "pt") as f:
                params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys()) / 1e6
        except (OSError, ImportError):
            pass
        self.emit({"model": {
            "dir": os.path.relpath(self.model_dir, ROOT) if self.model_dir.is_relative_to(ROOT) else str(self.model_dir),
            "config": {"layers": self.cfg["num_hidden_layers"], "hidden": self.cfg["hidden_size"],
                       "heads": self.cfg["num_attention_heads"],
                       "kv_heads": self.cfg.get("num_key_value_heads") or self.cfg["num_attention_heads"],
                       "vocab": self.cfg["vocab_size"], "context": self.context},
            "params_m": params, "builder_stamp": _read(self.model_dir / ".tokenway-build"),
            "engine_source": source, "threads": settings.threads, "dtype": dtype,
            "max_batch_size": settings.max_batch_size, "kv_cache_tokens": settings.kv_cache_tokens,
            "kv_bytes_per_token": self.kv_per_token, "kv_budget_mib": round(self.kv_budget / MIB, 1),
            "load_s": round(load_s, 2), "rss_before_load_mib": before["VmRSS"], "rss_after_load_mib": loaded["VmRSS"],
            "hwm_after_load_mib": loaded["VmHWM"], "peak_reset": reset_peak()}})
        ids = ordinary_ids(self.model_dir)
        cells = sorted(((b, t) for b in self.args.batch for t in self.args.width), key=lambda c: (c[0] * c[1], c[1]))
        try:
            for batch, width in cells:
                left = self.args.deadline - time.time() if self.args.deadline else None
                if left is not None and left < 5:
                    self.emit({"cell": {"batch": batch, "width": width, "status": "not_run", "reason": "--budget spent"}})
                    continue
                cell = await self.cell(ids, batch, width, min(self.args.cell_timeout, left or self.args.cell_timeout))
                self.emit({"cell": cell})
                log(f"{self.model_dir.name} B={batch} T={width}: {cell['status']} prefill "
                    f"{_num(cell.get('prefill_s'), 2)} s, decode {_num(cell.get('decode_ms_per_step'))} ms/step, "
                    f"RSS {_num(cell.get('rss_decode_mib'), 0)} MiB")
        finally:
            await self.eng.close()
        return 0

    async def wait(self, predicate, timeout: float) -> bool:
        return await asyncio.to_thread(self.eng.wait_until, predicate, max(0.0, timeout))

    async def cell(self, ids: list[int], batch: int, width: int, timeout: float) -> dict:
        from tokenway_inference.engines.base import GenerateRequest, SamplingOptions, StoppingOptions  # noqa: PLC0415

        a, eng = self.args, self.eng
        cell: dict = {"batch": batch, "width": width, "timeout_s": round(timeout, 1),
                      "started_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "loadavg_start": loadavg()}  # the host is shared: a busy neighbour shows here
        # all the context allows (the rows are aborted after the timed steps): an engine that prefills in
        # chunks starts decoding its first rows long before the last row's prefill ends
        max_tokens = self.context - width
        if max_tokens < a.warm + a.steps + 2:
            cell.update(status="skipped", reason=f"T={width} leaves {self.context - width} tokens of a "
                                                 f"{self.context}-token context")
            return cell
        cell["max_tokens"] = max_tokens
        give_back_memory()
        start_mem = memory()
        reset_peak()
        rids = [f"cell-{batch}x{width}-{i}" for i in range(batch)]
        reqs = [GenerateRequest(rid, p, SamplingOptions(temperature=0.0),
                                StoppingOptions(max_tokens=max_tokens, ignore_eos=True))
                for rid, p in zip(rids, prompts(ids, batch, width))]
        finishes: dict[str, str] = {}

        async def consume(req) -> None:
            try:
                async for chunk in eng.generate(req):
                    if chunk.finish_reason is not None:
                        finishes[req.request_id] = chunk.finish_reason.value
            except Exception as exc:  # noqa: BLE001 - recorded with the cell
                finishes[req.request_id] = f"error: {exc!r}"

        seen: dict = {}

        def gens() -> list[int | None]:
            return [eng.generated_tokens(r) for r in rids]

        def all_decoding(load) -> bool:
            g = gens()
            seen.update(steps=load.steps, gens=g, load=load)
            return all(n is not None and n >= 1 for n in g)

        def reached(target: int):
            def pred(load) -> bool:
                seen.update(steps=load.steps, gens=gens(), load=load)
                return load.steps >= target
            return pred

        t_submit = time.perf_counter()
        deadline = t_submit + timeout
        tasks = [asyncio.create_task(consume(r)) for r in reqs]
        phase = "prefill"
        try:
            if not await self.wait(all_decoding, deadline - time.perf_counter()):
                raise TimeoutError
            cell["prefill_s"] = round(time.perf_counter() - t_submit, 3)
            phase = "warm-up"
            if not await self.wait(reached(seen["steps"] + a.warm), deadline - time.perf_counter()):
                raise TimeoutError
            phase = "decode"
            s0, t0 = seen["steps"], time.perf_counter()
            met = await self.wait(reached(s0 + a.steps), deadline - time.perf_counter())
            t1 = time.perf_counter()
            if not met:
                seen["steps"] = eng.load().steps  # the steps finished by the deadline (one may be in flight)
            steps = seen["steps"] - s0
            if steps:
                cell.update(decode_steps=steps, decode_s=round(t1 - t0, 3),
                            decode_ms_per_step=round((t1 - t0) / steps * 1000, 2),
                            decode_tok_s=round(batch * steps / (t1 - t0), 1))
            self.memory_at_decode(cell, seen, batch, width)
            if not met:
                raise TimeoutError
            cell["status"] = "ok"
        except TimeoutError:
            g = gens()
            cell.update(status="timeout", phase=phase, elapsed_s=round(time.perf_counter() - t_submit, 1),
                        decoding=sum(1 for n in g if n), load=_load(eng.load()))
            if "rss_decode_mib" not in cell:
                mem = memory()
                cell.update(rss_timeout_mib=mem["VmRSS"], hwm_cell_mib=mem["VmHWM"])
        cell["rss_start_mib"] = start_mem["VmRSS"]
        t_abort = time.perf_counter()
        await eng.abort(rids)
        idle = await self.wait(lambda load: load.running == 0 and load.waiting == 0, ABORT_S)
        await asyncio.wait(tasks, timeout=ABORT_S)
        cell["abort_s"] = round(time.perf_counter() - t_abort, 2)
        if not idle:
            cell["abort_error"] = f"rows still running {ABORT_S:.0f} s after the abort: {_load(eng.load())}"
        early = {r: f for r, f in finishes.items() if f != "abort"}
        if early:  # a row ended before the abort: the timed batch was smaller than B
            cell["early_finishes"] = early
        give_back_memory()
        cell["rss_after_abort_mib"] = memory()["VmRSS"]
        cell["loadavg_end"] = loadavg()
        return cell

    def memory_at_decode(self, cell: dict, seen: dict, batch: int, width: int) -> None:
        mem = memory()
        gens = [n for n in seen["gens"] if n is not None]
        generated = round(sum(gens) / len(gens), 1) if gens else 0
        held = batch * (width + generated) * self.kv_per_token
        cell.update(rss_decode_mib=mem["VmRSS"], hwm_cell_mib=mem["VmHWM"],
                    rss_over_loaded_mib=round(mem["VmRSS"] - self.rss_loaded, 1),
                    generated_at_decode=generated, kv_held_bytes=int(held), kv_held_mib=round(held / MIB, 1),
                    kv_budget_mib=round(self.kv_budget / MIB, 1), load_at_decode=_load(seen["load"]))


def _load(load) -> dict:
    return {"running": load.running, "waiting": load.waiting, "kv_cache_usage": round(load.kv_cache_usage, 4),
            "steps": load.steps}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return asyncio.run(Worker(args).run())
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
