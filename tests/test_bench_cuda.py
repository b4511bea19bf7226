"""The CUDA path checker (attnviz.tools.bench_cuda): residency and agreement are computed, not
assumed. On a CPU it checks the CPU path (bf16 autocast there); on a GPU host the second test
checks that a model, its records and its Grad-CAM stay on the GPU and agree with the CPU."""
import pytest
import torch

from attnviz.tools import bench_cuda


def test_cpu_path_is_resident_and_bf16_agrees():
    r = bench_cuda.check_model("lite_cbam", "cpu", reps=1)
    assert r["records"] > 0
    assert r["resident"] == {"weights": True, "records": True, "gradcam": True, "logits": True}
    agree = r["bf16_vs_fp32"]
    assert agree["same_top1"] and agree["min_spearman"] > 0.9
    for key in ("forward_ms_b1", "forward_ms_b32", "capture_over_forward_b1"):
        assert r[key] > 0  # measured (figures are reported, never judged, in tests)
    md = bench_cuda.table([r])
    assert "`lite_cbam`" in md and md.count("\n") == 2


def test_a_record_moved_off_the_device_is_reported():
    """The residency check must be able to fail: a tensor on another device reads False."""
    t = torch.zeros(1)
    assert bench_cuda._on(t, torch.device("cpu"))
    assert not bench_cuda._on(t, torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["lite_cbam", "lite_danet", "lite_sagan"])
def test_cuda_path_is_resident_and_agrees_with_cpu(name):
    r = bench_cuda.check_model(name, "cuda", reps=1)
    assert all(r["resident"].values()), r["resident"]
    assert r["bf16_vs_fp32"]["same_top1"] and r["bf16_vs_fp32"]["min_spearman"] > 0.9
    assert r["device_vs_cpu"]["exact_enough"], r["device_vs_cpu"]
