"""`bench/engine_steps.py --quick`: the step/memory tool runs the engine and writes well-formed results.

One tiny cell on the tiny model; no timing is asserted, only that every figure the report is about exists,
that the Markdown holds the table, and that the tool writes only into the directory it was given.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import MODEL_DIR, ROOT

pytestmark = pytest.mark.integration

CELL_FIGURES = ("prefill_s", "decode_steps", "decode_s", "decode_ms_per_step", "decode_tok_s", "rss_start_mib",
                "rss_decode_mib", "rss_over_loaded_mib", "hwm_cell_mib", "rss_after_abort_mib", "generated_at_decode",
                "kv_held_bytes", "kv_held_mib", "kv_budget_mib", "abort_s")
MODEL_FIGURES = ("dir", "config", "engine_source", "threads", "kv_cache_tokens", "kv_bytes_per_token", "kv_budget_mib",
                 "load_s", "rss_before_load_mib", "rss_after_load_mib", "hwm_after_load_mib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine-steps")
    proc = subprocess.run([sys.executable, "bench/engine_steps.py", "--quick", "--model", MODEL_DIR, "--out", str(out),
                           "--label", "smoke"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2, files
    [js] = out.glob("engine-steps-smoke-*.json")
    [md] = out.glob("engine-steps-smoke-*.md")
    return json.loads(js.read_text()), md.read_text(), proc.stdout


def test_every_cell_has_its_figures(quick_run):
    doc, _, _ = quick_run
    settings = doc["settings"]
    assert settings["label"] == "smoke" and settings["quick"] is True
    [model] = doc["models"]
    assert model["status"] == "ok", model.get("error")
    for key in MODEL_FIGURES:
        assert model.get(key) is not None, key
    assert model["config"]["layers"] >= 1 and model["kv_bytes_per_token"] > 0
    assert model["kv_budget_mib"] * 2**20 == pytest.approx(model["kv_bytes_per_token"] * model["kv_cache_tokens"], rel=1e-3)
    assert model["threads"] == settings["threads"] == 1
    [cell] = model["cells"]
    assert (cell["batch"], cell["width"]) == (settings["batches"][0], settings["widths"][0])
    assert cell["status"] == "ok", cell
    for key in CELL_FIGURES:
        assert isinstance(cell.get(key), (int, float)), key
    assert cell["decode_steps"] >= settings["steps"]
    assert cell["generated_at_decode"] >= settings["warm"] + settings["steps"]
    assert cell["kv_held_bytes"] == pytest.approx(
        cell["batch"] * (cell["width"] + cell["generated_at_decode"]) * model["kv_bytes_per_token"], abs=1)
    assert cell["load_at_decode"]["running"] == cell["batch"]
    assert "early_finishes" not in cell and "abort_error" not in cell
    assert cell["started_utc"] and cell["loadavg_start"] and cell["loadavg_end"]


def test_meta_names_the_machine_and_the_command(quick_run):
    doc, _, _ = quick_run
    meta = doc["meta"]
    for key in ("date_utc", "cpu_model", "cores", "loadavg_start", "loadavg_end", "git_commit", "command", "wall_s"):
        assert meta.get(key) not in (None, ""), key
    assert meta["versions"]["torch"] and meta["versions"]["transformers"]
    assert "bench/engine_steps.py" in meta["command"] and "--quick" in meta["command"]


def test_markdown_holds_the_table_and_is_printed(quick_run):
    doc, md, stdout = quick_run
    assert md.strip() == stdout.strip()
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    for column in ("prefill s", "decode ms/step", "RSS MiB at decode", "KV held MiB", "budget MiB"):
        assert column in header
    [cell] = doc["models"][0]["cells"]
    rows = [line for line in md.splitlines() if line.startswith(f"| {doc['models'][0]['name']} |")]
    assert len(rows) == 1 and f"| {cell['batch']} | {cell['width']} |" in rows[0] and rows[0].endswith("| ok |")
    assert doc["json_name"] in md
