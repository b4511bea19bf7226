"""The CUDA path, checked and timed on one device: the model resident there, what capture records
and what Grad-CAM computes kept there, bfloat16 autocast agreeing with float32, and the device's
float32 analysis agreeing with the CPU's.

    python -m attnviz.tools.bench_cuda [--device cuda] [--models ...] [--reps N] [--json PATH]

Per model (the lite models at their own size; the 224 px zoo models, random-initialised, at 224):

- **residency**: every parameter and buffer, every captured record and the Grad-CAM map are on
  the device (``resident``; a record copied to the host would show here);
- **agreement**: :func:`attnviz.scores.precision.precision_agreement` of bf16 autocast against
  float32 on the device (same top-1, largest probability difference, smallest rank correlation
  of any map), and of the device's float32 against the CPU's float32;
- **time**: the median ``attnviz.inspect`` in float32 and under bf16 autocast (timed alternately),
  and capture / forward at batch 1 and 32 (timed alternately), each a median of ``reps``.

It runs on a CPU too (``--device cpu``: autocast is then the CPU's bf16), which is how the tests
exercise it; the figures to quote come from a GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

from .. import list_models
from ..analysis.inspect import inspect
from ..attribution.explain import Explainer
from ..capture.recorder import capture
from ..data.images import preprocess
from ..scores.precision import precision_agreement
from ..system import machine_info
from .bench import sample_image
from .timing import load_model, paired, timed

QUICK = ("lite_cbam", "lite_danet", "lite_sge", "cbam_resnet50")


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on ``device`` (CUDA or CPU), or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type


def check_model(name: str, device, reps: int = 9, cpu_reference: bool = True) -> dict:
    """Residency, agreement and times of one model on ``device`` (see the module's docstring)."""
    device = torch.device(device)
    model = load_model(name, device)
    img = sample_image(model.info.input_size if model.info.family == "lite" else 224)
    x, _ = preprocess(model, img)
    x = x.to(device)
    out: dict = {"model": name, "device": str(device)}
    weights = list(model.parameters()) + list(model.buffers())
    with torch.no_grad(), capture(model) as rec:
        logits = model(x)
    target = int(logits.argmax(1))
    cam = Explainer(model, "gradcam").attribute(x, target=target)
    out["records"] = len(rec.maps)
    out["resident"] = {"weights": all(_on(t, device) for t in weights),
                       "records": all(_on(r.tensor, device) for r in rec.maps),
                       "gradcam": _on(cam, device), "logits": _on(logits, device)}
    a32 = inspect(model, img)
    with autocast(device):
        a16 = inspect(model, img)
    out["bf16_vs_fp32"] = precision_agreement(a32, a16, dtype="bfloat16")
    if cpu_reference and device.type != "cpu":
        ref = load_model(name, "cpu")
        out["device_vs_cpu"] = precision_agreement(inspect(ref, img), a32, dtype="float32")
        del ref

    def fp32():
        inspect(model, img)

    def bf16():
        with autocast(device):
            inspect(model, img)

    t32, t16 = paired(fp32, bf16, reps, device)
    out["inspect_ms"] = {"float32": t32 * 1e3, "bfloat16": t16 * 1e3}
    for b in (1, 32):
        xb = x.expand(b, -1, -1, -1).contiguous()

        def plain(xb=xb):
            with torch.no_grad():
                model(xb)

        def captured(xb=xb):
            with torch.no_grad(), capture(model):
                model(xb)

        tp, tc = paired(plain, captured, reps, device)
        out[f"forward_ms_b{b}"] = tp * 1e3
        out[f"capture_over_forward_b{b}"] = tc / tp
    out["inspect_gradcam_only_ms"] = timed(
        lambda: inspect(model, img, attributions=("gradcam",)), reps, device) * 1e3
    return out


def table(rows: list[dict]) -> str:
    """The figures as a Markdown table (the README's CUDA table)."""
    head = ["model", "resident", "bf16 top-1 / max Δp / min ρ", "device vs CPU top-1 / max Δp / "
            "min ρ", "inspect ms fp32 / bf16", "forward ms b1 / b32", "capture / forward b1 / b32"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def agree(d):
        if not d:
            return "-"
        return (f"{'same' if d['same_top1'] else 'DIFF'} / {d['max_prob_diff']:.4f} / "
                f"{d['min_spearman']:.3f}")

    for r in rows:
        res = "yes" if all(r["resident"].values()) else ", ".join(
            k for k, v in r["resident"].items() if not v) + " off"
        lines.append("| " + " | ".join([
            f"`{r['model']}`", res, agree(r["bf16_vs_fp32"]), agree(r.get("device_vs_cpu")),
            f"{r['inspect_ms']['float32']:.1f} / {r['inspect_ms']['bfloat16']:.1f}",
            f"{r['forward_ms_b1']:.2f} / {r['forward_ms_b32']:.2f}",
            f"{r['capture_over_forward_b1']:.3f} / {r['capture_over_forward_b32']:.3f}"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m attnviz.tools.bench_cuda",
                                description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", nargs="*", help=f"default: every model (--quick: {QUICK})")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available (use --device cpu)")
    names = a.models or (list(QUICK) if a.quick else list_models())
    rows = []
    for name in names:
        rows.append(check_model(name, device, a.reps))
        r = rows[-1]
        print(f"{name}: resident {r['resident']}, bf16 {r['bf16_vs_fp32']}, "
              f"vs cpu {r.get('device_vs_cpu')}, inspect {r['inspect_ms']}", flush=True)
    info = machine_info()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(info, default=str))
    print(table(rows))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
