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
