"""`python -m attnviz.bench --quick` runs and reports every figure (it never fails on timing)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("capture_overhead", "gradcam_over_captum_b1", "gradcam_over_captum_b4",
        "gradcam_over_floor_b1", "gradcam_over_floor_b4", "captum_ms_b1", "floor_ms_b4",
        "inspect_ms", "inspect_over_forward",
        "ig_batched_speedup", "deletion_insertion_ms", "affinity_peak_mb", "figure_kb_max",
        "response_kb", "load", "road", "road_curve_ms")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI core can make the quick bench slow
def test_bench_quick_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "attnviz.bench", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    for key in KEYS:
        assert key in r, key
    for name in ("lite_cbam", "scnet50", "cbam_resnet50"):
        assert r["capture_overhead"][name] > 0
        for b in (1, 4):  # Grad-CAM beside raw Captum and the floor, same run
            assert r[f"gradcam_over_captum_b{b}"][name] > 0
            assert r[f"gradcam_over_floor_b{b}"][name] > 0
        assert r["inspect_ms"][name] > 0
    assert r["ig_batched_speedup"]["lite_cbam"] > 0
    full, budget = r["affinity_peak_mb"]["full"], r["affinity_peak_mb"]["budget_1mb"]
    assert budget["held_mb"] < full["held_mb"] and budget["capped"] >= 1
    assert 0 < r["figure_kb_max"] < 1024
    assert r["load"].get("errors") == 0, r["load"]
    assert r["load"]["requests"] == 16 and r["load"]["p95_ms"] >= r["load"]["p50_ms"] > 0
    assert "capture/fwd [<=1.05]" in proc.stdout  # the printed table, targets beside ratios
    for name in ("se_resnet50", "cbam_spatial_resnet50"):  # discovered, not tapped, 224 px
        d = r["capture_overhead_discovered"][name]
        assert d["maps"] == 16 and d["capture_overhead"] > 0
    assert "discovered (not tapped)" in proc.stdout
    assert "GC/Captum b4 [<=1.0]" in proc.stdout and "GC/floor b1" in proc.stdout
    road = r["road"]  # one 32-step ROAD deletion curve: whole, imputation, forward passes
    assert road["curve_ms"] > 0 and road["curve_cpu_ms"] > 0 and road["impute_ms"] > 0
    assert road["forward_ms"] > 0 and "ROAD deletion curve" in proc.stdout


def test_serving_table_prints_every_figure_beside_its_target():
    """The serving benchmark's tables (what the README holds): both paths per model, the
    clients on both paths, the browser, each figure with its target and the load."""
    from attnviz.tools.bench_serving import table
    path = {"http_inspect_ms": 50.0, "http_models_ms": 8.0, "overhead_ratio": 4.2,
            "response_kb": 53.0, "server_cpu_ms": 45.0, "cpu_ratio": 6.4}
    lean = dict(path, http_inspect_ms=20.0, http_models_ms=1.0, overhead_ratio=1.9,
                cpu_ratio=2.6)
    run = {"cores": 2, "load_start": 1.5, "load_end": 1.7,
           "ratio": [{"model": "lite_cbam", "inprocess_inspect_ms": 10.0,
                      "inprocess_cpu_ms": 7.0, "load": 1.6, "gradio": path, "lean": lean}],
           "clients": [{"route": r, "clients": n, "rps": 12.0, "p50_ms": 80.0, "p95_ms": 90.0,
                        "server_cpu_ms_per_request": 40.0, "errors": 0, "load": 1.6}
                       for r in ("gradio", "lean") for n in (1, 8, 16)],
           "browser": {"uploads": 3, "first_results_ms": 300.0, "scores_ms": 1500.0,
                       "load": 1.6}}
    t = table(run)
    assert "4.2x (over)" in t and "6.4x (over)" in t  # the Gradio path, over its targets
    assert "1.9x (ok)" in t and "2.6x (ok)" in t  # the lean route
    assert "target <= 3" in t and "target <= 500" in t and "300 (ok)" in t
    assert t.count("| lite_cbam |") == 2 and t.count("| lean |") == 3
    assert "load average 1.5 at the start, 1.7 at the end" in t
