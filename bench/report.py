"""Ratios, bars and the Markdown of a `make bench` run (bench/run.py writes the JSON this reads).

Each comparison pairs two servers of one scenario round by round (the rounds alternate their order) and
reports every round's ratio (or difference) and their median; a bar is judged on the median and printed
met or missed. Latency between tokens: ITL (the gaps between successive output chunks, vLLM's
benchmark_serving definition) when every run of both sides got one token per arrival (at most 2 % more
tokens than arrivals; an arrival is a chunk or chunks less than 0.5 ms apart), else TPOT ((last chunk -
first chunk) / (tokens - 1) per request): a gap between chunks of several tokens, or the ~0 gaps inside a
clump of chunks read at once, is not a gap between tokens. Each row names the one it used.
"""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
from pathlib import Path

ONE_TOKEN_PER_CHUNK = 1.02
CPU_GROUPS = ("orchestrator", "tokenizer")
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"
NAMES = {"tok_s": "output tok/s", "ttft_p50_ms": "TTFT p50", "ttft_p90_ms": "TTFT p90", "ttft_p99_ms": "TTFT p99", "itl_p50_ms": "ITL p50", "itl_p99_ms": "ITL p99",
         "tpot_p50_ms": "TPOT p50", "tpot_p99_ms": "TPOT p99"}


@dataclasses.dataclass
class Row:
    scenario: str
    what: str  # e.g. "tok/s tokenway / vLLM"
    level: int | str | None
    rounds: list[float | None]
    value: float | None  # the median of the rounds
    unit: str  # "x" (ratio), "ms" (difference), "s/10k", "µs"
    op: str | None = None  # ">=" or "<=" when there is a bar
    bar: float | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.op is None or self.value is None:
            return None
        return self.value >= self.bar if self.op == ">=" else self.value <= self.bar


def _median(values) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _runs(sc: dict, server: str, variant: str | None = None) -> dict[tuple[int, int], dict]:
    """{(level, round): run} of a server's successful runs."""
    return {(r["level"], r["round"]): r for r in sc.get("runs", ())
            if r["server"] == server and (variant is None or r["variant"] == variant) and "metrics" in r}


def _gap_metric(runs: list[dict]) -> str:
    """ITL where every run got one token per arrival (so one per chunk too, and no clumps), else TPOT."""
    tpa = [r["metrics"]["tokens_per_arrival"] for r in runs]
    return "itl" if tpa and all(t is not None and t <= ONE_TOKEN_PER_CHUNK for t in tpa) else "tpot"


def _pair(sc: dict, a: tuple[str, str | None], b: tuple[str, str | None]):
    ra, rb = _runs(sc, *a), _runs(sc, *b)
    levels = sorted({lv for lv, _ in ra} | {lv for lv, _ in rb})
    rounds = sorted({r for _, r in ra} | {r for _, r in rb})
    for lv in levels:
        pairs = [(ra.get((lv, r)), rb.get((lv, r))) for r in rounds]
        yield lv, pairs


def _ratio(x, y):
    return None if x is None or y in (None, 0) else x / y


def _diff(x, y):
    return None if x is None or y is None else x - y


def _compare(sc_name: str, sc: dict, a, b, label: str, specs) -> list[Row]:
    """specs: (metric or 'gap_p50'/'gap_p99', kind ratio|diff, op, bar, only): `bar` a number that applies to
    the levels in `only` (None: every level), or a {level: bar} dict."""
    rows = []
    for lv, pairs in _pair(sc, a, b):
        both = [r for p in pairs for r in p if r is not None]
        gap = _gap_metric(both)
        for metric, kind, op, bar, only in specs:
            key = metric.replace("gap", gap)
            f = _ratio if kind == "ratio" else _diff
            vals = [f(x["metrics"][key] if x else None, y["metrics"][key] if y else None) for x, y in pairs]
            if isinstance(bar, dict):  # a bar per level
                bar, only = bar.get(lv), tuple(bar)
            has_bar = op is not None and bar is not None and (only is None or lv in only)
            name = NAMES[key] + (" difference" if kind == "diff" else "")
            rows.append(Row(sc_name, f"{name} {label}", lv, vals, _median(vals), "x" if kind == "ratio" else "ms",
                            op if has_bar else None, bar if has_bar else None))
    return rows


def _ok(sc: dict | None) -> bool:
    return bool(sc) and not sc.get("skipped")


def evaluate(doc: dict) -> None:
    """Adds doc["rows"]: every ratio and bar of the run."""
    s = doc["scenarios"]
    rows: list[Row] = []
    peer = [("tok_s", "ratio", ">=", 0.95, None), ("ttft_p50_ms", "ratio", "<=", 1.10, None),
            ("gap_p50_ms", "ratio", "<=", 1.05, None)]
    if _ok(s.get("peers-vllm")):
        rows += _compare("peers-vllm", s["peers-vllm"], ("tokenway-vllm", None), ("vllm-server", None),
                         "tokenway / vLLM server", peer)
    if _ok(s.get("peers-transformers")):
        # issue 10: the embedded engine against transformers' own continuous batching
        rows += _compare("peers-transformers", s["peers-transformers"], ("tokenway-transformers", None),
                         ("transformers-serve", None), "tokenway / transformers serve",
                         [("tok_s", "ratio", ">=", 2.0, (8, 32)), ("ttft_p50_ms", "ratio", "<=", {1: 1.1, 8: 0.5, 32: 0.5}, None),
                          ("gap_p50_ms", "ratio", None, None, None)])
    if _ok(s.get("peers-transformers")) and _ok(s.get("peers-vllm")):
        # and against vLLM's own server on the same model (the runs of both peers scenarios, same run)
        both = {"runs": s["peers-transformers"]["runs"] + s["peers-vllm"]["runs"]}
        rows += _compare("embedded-vs-vllm", both, ("tokenway-transformers", None), ("vllm-server", None),
                         "tokenway (transformers engine) / vLLM server",
                         [("tok_s", "ratio", ">=", 0.8, (32,)), ("ttft_p50_ms", "ratio", None, None, None),
                          ("ttft_p99_ms", "ratio", "<=", 1.5, (32,))])
    el = s.get("engine-limit")
    if el and el.get("inprocess"):
        src = s.get(el.get("tokenway_from", ""), {})
        tw = _runs(src, "tokenway-transformers")
        for lv, best in ((int(k), v) for k, v in el["inprocess"]["levels"].items()):
            e2e = [r["metrics"]["tok_s"] for (l2, _), r in sorted(tw.items(), key=lambda kv: kv[0][1]) if l2 == lv]
            vals = [_ratio(x, best["engine"]["tok_s"]) for x in e2e]
            bar = lv == 32  # issue 10: end to end >= 0.9x the engine's own in-process limit at c=32
            rows.append(Row("engine-limit", "output tok/s tokenway end to end / its engine in process", lv, vals,
                            _median(vals), "x", ">=" if bar else None, 0.9 if bar else None))
            vals = [_ratio(x, best["best_tok_s"]) for x in e2e]
            rows.append(Row("engine-limit", "output tok/s tokenway / in-process best", lv, vals,
                            _median(vals), "x", note=best["best"]))
    if _ok(s.get("prefix")):  # issue 10: measured, no bar
        rows += _compare("prefix", s["prefix"], ("prefix-cache-on", None), ("prefix-cache-off", None),
                         "prefix cache on / off", [(m, "ratio", None, None, None)
                                                   for m in ("ttft_p50_ms", "ttft_p90_ms", "tok_s")])
    hop = s.get("hop")
    if _ok(hop):
        tput_levels = tuple(doc["settings"]["plan"]["hop_throughput_levels"])
        for path in ("envoy", "grpc"):
            rows += _compare("hop", hop, (path, None), ("direct", None), f"{path} / direct", [
                ("gap_p50_ms", "ratio", "<=", 1.03, None), ("gap_p99_ms", "ratio", "<=", 1.10, None),
                ("ttft_p50_ms", "diff", "<=", 5.0, None), ("tok_s", "ratio", ">=", 0.95, tput_levels)])
    cpu = s.get("cpu")
    if _ok(cpu):
        for variant, bar in (("plain", 1.0), ("top_logprobs=5", 2.0)):
            for path in ("envoy", "grpc"):
                runs = _runs(cpu, variant, path)
                vals = []
                for (_, _), r in sorted(runs.items(), key=lambda kv: kv[0][1]):
                    tokens = r["metrics"]["output_tokens"]
                    used = sum(v for k, v in r["cpu_groups_s"].items() if k in CPU_GROUPS)
                    vals.append(used / (tokens / 1e4) if tokens else None)
                lv = next(iter(runs))[0] if runs else None
                rows.append(Row("cpu", f"orchestrator + tokenizer CPU s per 10k tokens, {variant}, {path}", lv, vals,
                                _median(vals), "s/10k", "<=", bar))
    tok = s.get("tokenizer")
    if tok and tok.get("results"):
        res = [r for r in tok["results"] if "encode" in r]

        def add(what, get, op=None, bar=None, unit="µs", level=None):
            vals = [get(r) for r in res]
            rows.append(Row("tokenizer", what, level, vals, _median(vals), unit, op, bar))

        add("encode µs/token, 2k-token prompt (service path)", lambda r: r["encode"]["service_us_per_token"], "<=", 2.0)
        add("encode µs/token, 2k-token prompt (raw Rust, reference)", lambda r: r["encode"]["rust_us_per_token"])
        for k in ("1k", "8k", "32k"):
            add(f"detokenize µs/token after {k}, with stop strings", lambda r, k=k:
                r["detokenize"]["with_stops"][f"after_{k}_us_per_token"], "<=", 2.0)
        for k in ("1k", "8k", "32k"):
            add(f"detokenize µs/token after {k}, no stop strings", lambda r, k=k:
                r["detokenize"]["no_stops"][f"after_{k}_us_per_token"])
        for v, label in (("with_stops", "with stop strings"), ("no_stops", "no stop strings")):
            add(f"detokenize 32k / 1k, {label}", lambda r, v=v: _ratio(r["detokenize"][v]["after_32k_us_per_token"],
                                                                        r["detokenize"][v]["after_1k_us_per_token"]),
                "<=", 1.2, "x")
    doc["rows"] = [dataclasses.asdict(r) | {"met": r.met} for r in rows]


# -- formatting -----------------------------------------------------------------------------------------


def _num(v, unit: str = "") -> str:
    if v is None:
        return "–"
    if unit == "ms":
        return f"{v:+.1f} ms" if abs(v) < 1000 else f"{v:+.0f} ms"
    if unit == "x":
        return f"{v:.2f}×"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _mark(met) -> str:
    return "–" if met is None else "met" if met else "**missed**"


def _bar(r: dict) -> str:
    if r["op"] is None:
        return "–"
    b = r["bar"]
    unit = {"x": "×", "ms": " ms", "s/10k": " s", "µs": " µs"}[r["unit"]]
    return f"{'≥' if r['op'] == '>=' else '≤'} {'+' if r['unit'] == 'ms' else ''}{b:g}{unit}"


def _grouped(rows: list[dict]) -> list[tuple[str, str, str, list[dict]]]:
    """Rows sharing scenario, measure and bar, in order of first appearance: (scenario, what, bar, rows)."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        out.setdefault((r["scenario"], r["what"], _bar(r)), []).append(r)
    return [(*k, v) for k, v in out.items()]


def summary_table(doc: dict) -> str:
    lines = ["| scenario | measure | bar | result (median of rounds) | met |", "|---|---|---|---|---|"]
    for scen, what, bar, rows in _grouped(doc.get("rows", [])):
        cells = []
        for r in rows:
            lv = f"c={r['level']}: " if isinstance(r["level"], int) and scen not in ("cpu",) else ""
            flag = "" if r["met"] is None else " ✓" if r["met"] else " ✗"
            note = f" ({r['note']})" if r["note"] else ""
            cells.append(f"{lv}{_num(r['value'], r['unit'])}{flag}{note}")
        judged = [r["met"] for r in rows if r["met"] is not None]
        met = "–" if not judged else "met" if all(judged) else f"**missed** ({judged.count(False)} of {len(judged)})"
        lines.append(f"| {scen} | {what} | {bar} | {', '.join(cells)} | {met} |")
    for name, sc in doc["scenarios"].items():
        if sc.get("skipped"):
            lines.append(f"| {name} | skipped: {sc['skipped']} | – | – | – |")
    return "\n".join(lines)


def summary_text(doc: dict) -> str:
    return "Bars and ratios (full tables in the Markdown file):\n" + summary_table(doc)


METRIC_COLUMNS = (("requests", "req"), ("errors", "errors"), ("no_text", "no text"), ("tok_s", "tok/s"), ("req_s", "req/s"),
                  ("ttft_p50_ms", "TTFT p50 ms"), ("ttft_p90_ms", "p90"), ("ttft_p99_ms", "p99"),
                  ("itl_p50_ms", "ITL p50 ms"), ("itl_p99_ms", "p99"), ("tpot_p50_ms", "TPOT p50 ms"),
                  ("tpot_p99_ms", "p99"), ("tokens_per_chunk", "tok/chunk"), ("tokens_per_arrival", "tok/arrival"))


def _runs_table(sc: dict) -> list[str]:
    keyed: dict[tuple[str, str, int], list[dict]] = {}
    for r in sc["runs"]:
        keyed.setdefault((r["server"], r["variant"], r["level"]), []).append(r)
    head = "| server | path | c | rounds | " + " | ".join(h for _, h in METRIC_COLUMNS) + " |"
    out = [head, "|" + "---|" * (4 + len(METRIC_COLUMNS))]
    cpu_rows = []
    groups = sorted({g for r in sc["runs"] if "cpu_groups_s" in r for g in r["cpu_groups_s"]},
                    key=lambda g: ("client" in g, g))
    for (server, variant, level), runs in keyed.items():
        ok = [r for r in runs if "metrics" in r]
        failed = [r for r in runs if "failed" in r]
        cells = []
        for key, _ in METRIC_COLUMNS:
            vals = [r["metrics"][key] for r in ok]
            if key in ("requests", "errors", "no_text"):
                cells.append(str(sum(v or 0 for v in vals)) if vals else "–")
            else:
                cells.append(_num(_median(vals)))
        note = f" ({len(failed)} failed)" if failed else ""
        out.append(f"| {server} | {variant} | {level} | {len(ok)}{note} | " + " | ".join(cells) + " |")
        if ok:
            per = []
            for g in groups:
                vals = [r["cpu_groups_s"].get(g, 0.0) / (r["metrics"]["output_tokens"] / 1e4)
                        for r in ok if r["metrics"]["output_tokens"]]
                per.append(_num(_median(vals)) if vals else "–")
            cpu_rows.append(f"| {server} | {variant} | {level} | " + " | ".join(per) + " |")
    out += ["", "CPU seconds per 10k output tokens, per process tree (median of rounds):", "",
            "| server | path | c | " + " | ".join(groups) + " |", "|" + "---|" * (3 + len(groups))] + cpu_rows
    return out


def _rows_table(rows: list[dict]) -> list[str]:
    nround = max((len(r["rounds"]) for r in rows), default=0)
    out = ["| measure | c | " + " | ".join(f"round {i + 1}" for i in range(nround)) + " | median | bar | |",
           "|" + "---|" * (nround + 5)]
    for r in rows:
        rounds = [_num(v, r["unit"]) for v in r["rounds"]] + [""] * (nround - len(r["rounds"]))
        what = r["what"] + (f" ({r['note']})" if r["note"] else "")
        out.append(f"| {what} | {r['level'] if r['level'] is not None else '–'} | " + " | ".join(rounds)
                   + f" | {_num(r['value'], r['unit'])} | {_bar(r)} | {_mark(r['met'])} |")
    return out


def markdown(doc: dict, json_name: str) -> str:
    m = doc["meta"]
    v = m["versions"]
    lines = [f"# make bench, {m['date_utc']}", "",
             f"- machine: {m['hostname']}, {m['cpu_model']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; load average "
             f"{m['loadavg_start']} at the start, {m.get('loadavg_end', '?')} at the end",
             f"- versions: Python {m['python']}, " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
             f"- commit {m['git_commit'][:12]}{' (with uncommitted changes)' if m['git_dirty'] else ''}; "
             f"command `{m['command']}`; total {doc['wall_s'] / 60:.1f} min",
             f"- settings: {doc['settings']['rounds']} round(s), servers alternating, fresh servers per run; "
             f"{doc['settings']['plan']['max_tokens']} output tokens, greedy; inference threads "
             f"{m['inference_threads']}; env {', '.join(f'{k}={val}' for k, val in m['env'].items()) or '(none set)'}",
             f"- raw data: `{json_name}` (every run's metrics, CPU per process, per-request figures, server commands)",
             "", "ITL = gaps between successive output chunks, pooled over requests; TPOT = (last chunk − first chunk) "
             "/ (tokens − 1) per request; an arrival = a chunk, or chunks less than 0.5 ms apart (read together). A "
             f"latency bar uses ITL where every run compared got one token per arrival (≤ {ONE_TOKEN_PER_CHUNK} tokens "
             "per arrival), else TPOT; each row names the one used. `no text`: requests that finished with output "
             "tokens but streamed no text (counted in tok/s, not in latencies); errors: failed requests.", "",
             "## Bars and ratios", "", summary_table(doc), ""]
    rows = doc.get("rows", [])
    for name, sc in doc["scenarios"].items():
        lines += [f"## {name}: {sc['title']}", ""]
        if sc.get("skipped"):
            lines += [f"Skipped: {sc['skipped']}", ""]
            continue
        for s in sc.get("servers", ()):
            if s.get("error"):
                lines.append(f"- **{s['server']} round {s['round']} did not start**: {s['error'][:400]}")
            elif s.get("first_start_error"):
                lines.append(f"- {s['server']} round {s['round']} started on its second try; the first: "
                             f"{s['first_start_error'][:300]}")
        starts = [s for s in sc.get("servers", ()) if "commands" in s]
        if starts:
            lines += [f"- `{s['server']}` round {s['round']} (ready in {s['started_s']} s): `{' ; '.join(s['commands'])}`"
                      for s in starts if s["round"] == 1] + [""]
        if name == "tokenizer":
            lines += [f"`{sc.get('command', '')}`: µs per token; detokenize pushes 1-token chunks and times the 1024 tokens "
                      f"after 1k, 8k and 32k; stop strings {', '.join(repr(x) for x in STOPS_OF(sc))}.", ""]
        if name == "engine-limit":
            ip = sc.get("inprocess")
            if ip:
                lines += [f"In process (`{sc.get('inprocess_command', '')}`, {ip['threads']} torch threads, "
                          f"{ip['prompts']} prompts, measured once), output tok/s:", "",
                          "| c / batch | transformers generate (padded, sorted) | TransformersEngine | best |",
                          "|---|---|---|---|"]
                for lv, x in ip["levels"].items():
                    lines.append(f"| {lv} | {_num(x['hf_generate']['tok_s'])} | {_num(x['engine']['tok_s'])} | {x['best']} |")
                lines += ["", f"tokenway end to end: the tokenway-transformers runs of `{sc.get('tokenway_from')}` "
                              "(REST through Envoy, no ignore_eos: compare output tokens).", ""]
            elif sc.get("inprocess_error"):
                lines += [f"In process: **failed** ({sc['inprocess_error']})", ""]
        if sc.get("runs"):
            lines += ["Per server and level (median of rounds; requests and errors summed):", ""] + _runs_table(sc) + [""]
            errs = [(r["server"], r["round"], r["level"], r["metrics"]["error_kinds"]) for r in sc["runs"]
                    if r.get("metrics", {}).get("errors")]
            fails = [(r["server"], r["round"], r["level"], r["failed"]) for r in sc["runs"] if "failed" in r]
            for server, rnd, lv, kinds in errs:
                lines.append(f"- errors, {server} round {rnd} c={lv}: " + "; ".join(f"{n} × {k}" for k, n in kinds.items()))
            for server, rnd, lv, why in fails:
                lines.append(f"- **failed run**, {server} round {rnd} c={lv}: {why}")
            if errs or fails:
                lines.append("")
        mine = [r for r in rows if r["scenario"] == name]
        if mine:
            lines += ["Ratios and bars, per round and median:", ""] + _rows_table(mine) + [""]
    return "\n".join(lines)


def STOPS_OF(sc: dict) -> list[str]:  # noqa: N802
    for r in sc.get("results", ()):
        if "detokenize" in r:
            return r["detokenize"]["stop_strings"]
    return []


def readme_block(doc: dict, md_path: Path, root: Path) -> str:
    m = doc["meta"]
    rel = os.path.relpath(md_path, root)
    return "\n".join([
        README_BEGIN,
        f"Latest run: {m['date_utc'][:10]}, {m['cores']} cores ({m['cpu_model']}), commit {m['git_commit'][:8]}, "
        f"{doc['wall_s'] / 60:.0f} min: `{m['command']}`. Full tables, per-round figures and CPU per process: "
        f"[{rel}]({rel}).",
        "",
        summary_table(doc),
        README_END])


def update_readme(readme: Path, doc: dict, md_path: Path) -> None:
    """Rewrites the block between the markers (the markers must be there: nothing else is touched)."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{readme}: markers {README_BEGIN} / {README_END} not found; the README was left alone")
    block = readme_block(doc, md_path, readme.parent)
    text = re.sub(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
    readme.write_text(text)
