"""`bench/run.py --quick`: the benchmark harness itself works end to end (no timing is asserted).

A tiny run (the synthetic engine through Envoy, through gRPC and directly; the CPU budget; the tokenizer)
must produce every metric for every run with zero errors, the bars and ratios, and the Markdown tables,
and must write only into the directory it was given (never bench/results/ or the README).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import METRICS  # noqa: E402


def _state() -> tuple[str, list[str]]:
    """The README's bench block (others may edit the rest meanwhile) and the files in bench/results/."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.find("<!-- bench:begin -->"):readme.find("<!-- bench:end -->")]
    results = ROOT / "bench" / "results"
    return hashlib.sha256(block.encode()).hexdigest(), sorted(p.name for p in results.iterdir()) if results.is_dir() else []


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    before = _state()
    proc = subprocess.Popen([sys.executable, "bench/run.py", "--quick", "--out", str(out), "--no-readme"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the harness stops the servers it started
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout[-4000:] + stderr[-4000:]
    assert _state() == before, "a --quick --out DIR --no-readme run touched the README or bench/results/"
    [js] = out.glob("bench-*.json")
    [md] = out.glob("bench-*.md")
    assert (out / "LATEST.md").read_text() == md.read_text()
    return json.loads(js.read_text()), md.read_text(), stdout


def test_every_run_has_every_metric_and_no_errors(quick_run):
    doc, _, log = quick_run
    plan = doc["settings"]["plan"]
    scenarios = doc["scenarios"]
    assert {"hop", "cpu", "tokenizer"} <= set(scenarios)
    expected = {("hop", s, s, c) for s in ("direct", "grpc", "envoy") for c in plan["hop_levels"]}
    expected |= {("cpu", v, p, plan["cpu_level"]) for v in ("plain", "top_logprobs=5") for p in ("envoy", "grpc")}
    seen = set()
    for name in ("hop", "cpu"):
        sc = scenarios[name]
        assert sc["skipped"] is None
        assert all("error" not in s for s in sc["servers"]), sc["servers"]
        for run in sc["runs"]:
            assert "failed" not in run, run.get("failed")
            m = run["metrics"]
            where = f"{name} {run['server']} {run['variant']} c={run['level']}"
            assert m["errors"] == 0 and m["no_text"] == 0, (where, m["error_kinds"])
            assert set(METRICS) <= set(m), where
            assert all(m[k] is not None for k in METRICS), (where, m)
            assert m["requests"] == m["ok"] == len(run["requests_raw"])
            assert m["output_tokens"] == m["requests"] * plan["max_tokens"], where  # the synthetic engine never stops early
            assert run["cpu_groups_s"].keys() >= {"inference", "client"}, where
            if run["server"] != "direct":
                assert run["cpu_groups_s"].keys() >= {"orchestrator", "tokenizer", "envoy"}, where
            seen.add((name, run["server"], run["variant"], run["level"]))
    assert seen == expected, log[-3000:]
    [tok] = scenarios["tokenizer"]["results"]
    assert tok["encode"]["service_us_per_token"] > 0 and tok["encode"]["prompt_tokens"] > 1500
    for variant in ("no_stops", "with_stops"):
        assert set(tok["detokenize"][variant]) == {"after_1k_us_per_token", "after_8k_us_per_token", "after_32k_us_per_token"}


def test_every_bar_is_computed_and_judged(quick_run):
    doc, _, _ = quick_run
    rows = doc["rows"]
    bars = [r for r in rows if r["op"] is not None]
    assert {r["scenario"] for r in bars} == {"hop", "cpu", "tokenizer"}
    assert all(r["value"] is not None and isinstance(r["met"], bool) for r in bars), [r for r in bars if r["value"] is None]
    hop = {r["what"].split(" ")[0] + " " + r["what"].split(" ")[1] for r in bars if r["scenario"] == "hop"}
    assert {"TTFT p50", "output tok/s"} <= hop and ({"ITL p50", "ITL p99"} <= hop or {"TPOT p50", "TPOT p99"} <= hop)
    assert sum(r["scenario"] == "cpu" for r in bars) == 4  # plain and top_logprobs=5, through Envoy and over gRPC


def test_the_markdown_has_the_summary_and_a_table_per_scenario(quick_run):
    doc, md, _ = quick_run
    assert "## Bars and ratios" in md and "| scenario | measure | bar | result (median of rounds) | met |" in md
    for name in ("hop", "cpu", "tokenizer"):
        assert f"## {name}:" in md
    assert "| server | path | c | rounds |" in md and "CPU seconds per 10k output tokens" in md
    assert doc["meta"]["git_commit"] and doc["meta"]["command"].endswith("--no-readme")
    assert "met" in md or "missed" in md
