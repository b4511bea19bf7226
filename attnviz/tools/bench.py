"""Benchmark attnviz against its floor and its peer, in one run.

    python -m attnviz.bench [--quick] [--device cpu|cuda] [--json PATH] [--no-load]
    python -m attnviz.bench --attributions [--models ...]   every attribution method's time
                                                             beside its peers' (tools/)

Per model: capture vs a plain forward; Grad-CAM (``attnviz.explain`` on a batch tensor with
targets, maps upsampled to the input) vs the peer, raw Captum ``LayerGradCam`` + bilinear
upsampling (``LayerAttribution.interpolate``), vs the floor, one forward plus the gradient at the
Grad-CAM layer (a hook and ``torch.autograd.grad``, nothing else), at batch 1 and batch 32; a
full inspect (analysis, every overlay, the figure each kind tab shows). The sides of each ratio
are timed alternately (rotating order) in one run and the medians compared. Every ratio is
printed with its target; the bench reports and never fails on timing.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import create_model, kinds, list_models
from ..capture.recorder import capture
from ..system import machine_info
from .bench_attribution import main as bench_attributions
from .bench_serving import main as bench_serving
from .timing import _CLOCK, CLOCKS, _sync, interleaved, load_model, paired, set_clock, timed  # noqa: F401
from ..data.synthetic import make_shapes
from ..attribution.explain import Explainer
from ..analysis.inspect import inspect
from ..scores.faithfulness import deletion_auc, insertion_auc
from ..data.images import preprocess
from ..render.overlay import overlay
from ..render.figures import figures_for
import attnviz
from ..scores.faithfulness import _ranks, deletion_curve
from ..scores.road import impute
from ..render.figures import figure_kb
from .bench_discovered import bench_discovered
from .bench_load import bench_load
from .bench_discovered import line

TARGETS = {"capture_overhead": 1.05, "gradcam_over_captum": 1.0, "gradcam_over_floor": 1.05,
           "inspect_ms_lite": 250.0, "deletion_insertion_ms": 1000.0, "road_curve_ms": 1000.0,
           "figure_kb_max": 1024.0, "response_kb": 3072.0}
BATCHES = (1, 32)
BIG = ("scnet50", "cbam_resnet50")


def sample_image(size: int):
    return make_shapes(1, seed=12345, size=size).images[0]


def autocast(device, enabled):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------- measurements
def bench_model(name, device, reps, amp=False, batches=None, scoring=True):

    model = load_model(name, device, channels_last=device.type == "cuda")
    size = model.info.input_size
    img = sample_image(size if model.info.family == "lite" else 256)
    x, pre = preprocess(model, img)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    out = {}

    def plain():
        with torch.no_grad(), autocast(device, amp):
            model(x)

    def captured():
        with torch.no_grad(), autocast(device, amp), capture(model):
            model(x)

    t_plain, t_cap = paired(plain, captured, reps, device)
    out["forward_ms"] = t_plain * 1e3
    out["capture_overhead"] = t_cap / t_plain

    with torch.no_grad():
        target = int(model(x).argmax(1))
    exp = Explainer(model, "gradcam")
    for b in BATCHES if (batches is None) else batches:
        r = bench_gradcam(model, x, b, device, amp, reps if b == 1 else max(3, reps // 3),
                          warmup=2 if b == 1 else 1)
        for k, v in r.items():
            out[f"{k}_b{b}"] = v

    def full_inspect():
        a = inspect(model, img)
        shown = [r for r in a.maps if kinds.is_spatial(r)]
        for r in shown:
            overlay(a.image, a.spatial_map(r))
        for att in a.attributions.values():
            overlay(a.image, att.map)
        shown_figures(a.maps)

    t_inspect = timed(full_inspect, reps, device)
    out["inspect_ms"] = t_inspect * 1e3
    out["inspect_over_forward"] = t_inspect / t_plain

    if model.info.family == "lite" and scoring:
        ig = Explainer(model, "integrated_gradients")
        t_unb, t_bat = paired(lambda: ig.attribute(x, target, n_steps=32, internal_batch_size=1),
                              lambda: ig.attribute(x, target, n_steps=32, internal_batch_size=32),
                              max(3, reps // 3), device, warmup=1)
        out["ig_batched_speedup"] = t_unb / t_bat
        att = exp.attribute(x, target=target)[0].sum(0).detach()
        cam = pre.to_image(att.clamp_min(0))

        def scoring():
            deletion_auc(model, img, cam, target=target)
            insertion_auc(model, img, cam, target=target)

        out["deletion_insertion_ms"] = timed(scoring, max(3, reps // 3), device) * 1e3
    model = exp = None  # freed before the next model is built
    gc.collect()
    return out


def shown_figures(maps) -> dict:
    """The figures the app draws for one analysis: one per kind tab (every layer of a grouped
    kind in its one figure, the deepest layer of the others); the rest are built on demand."""
    by: dict[str, list] = {}
    for r in maps:
        by.setdefault(r.kind, []).append(r)
    return {k: figures_for(rs if kinds.get(k).grouped else rs[-1:])[k] for k, rs in by.items()}


def bench_gradcam(model, x1, batch: int, device, amp: bool, reps: int, warmup: int = 2) -> dict:
    """Grad-CAM maps for ``batch`` inputs with given targets: attnviz vs raw Captum LayerGradCam
    + bilinear upsampling vs the floor (forward + gradient at the layer), interleaved."""
    from captum.attr import LayerAttribution, LayerGradCam
    x = x1.expand(batch, *x1.shape[1:]).contiguous()
    x = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(batch)).to(x)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        t = model(x).argmax(1)
    targets = t.tolist()
    layer = model.get_submodule(model.info.cam_layer)
    lgc = LayerGradCam(model, layer)
    size = tuple(x.shape[-2:])

    def ours():
        with autocast(device, amp):
            return attnviz.explain(model, x, target=targets, batch_size=batch)

    def captum():
        with autocast(device, amp):
            a = lgc.attribute(x, target=t, relu_attributions=True)
            return LayerAttribution.interpolate(a, size, "bilinear").detach().float().cpu().numpy()

    def floor():
        acts = []
        h = layer.register_forward_hook(lambda m, i, o: acts.append(o))
        try:
            with torch.enable_grad(), autocast(device, amp):
                y = model(x)
                g = torch.autograd.grad(y.gather(1, t[:, None]).sum(), acts[0])[0]
        finally:
            h.remove()
        return g

    t_ours, t_captum, t_floor = interleaved([ours, captum, floor], reps, device, warmup)
    return {"gradcam_ms": t_ours * 1e3, "captum_ms": t_captum * 1e3, "floor_ms": t_floor * 1e3,
            "gradcam_over_captum": t_ours / t_captum, "gradcam_over_floor": t_ours / t_floor}


def bench_road(device, reps: int = 5) -> dict:
    """One 32-step deletion curve with ROAD removal (attnviz.road: 31 sparse solves, batched)
    for lite_cbam on a 128 px image: the whole curve, the imputation alone, the forward passes
    alone, and the same curve with a constant (mean) fill for contrast; milliseconds."""
    model = load_model("lite_cbam", device)
    img = sample_image(128)
    x, _ = preprocess(model, img)
    x = x.to(device)
    m = np.random.RandomState(0).rand(16, 16)
    cam = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None], size=(128, 128),
                                          mode="bilinear", align_corners=False)[0, 0].numpy()
    counts = torch.linspace(0, 128 * 128, 33).round().long().view(-1, 1, 1, 1)
    removed = (_ranks(torch.from_numpy(cam)) < counts).to(device)
    batch = x.expand(33, -1, -1, -1).contiguous()

    def forward():
        with torch.no_grad():
            model(batch)

    def cpu_seconds(f, n=reps):  # CPU time of this process: what the curve costs on a busy host
        f()
        t0 = time.process_time()
        for _ in range(n):
            f()
        return (time.process_time() - t0) / n

    out = {"threads": torch.get_num_threads(), "steps": 32, "image_px": 128,
           "curve_cpu_ms": cpu_seconds(lambda: deletion_curve(model, x, cam)) * 1e3,
           "curve_ms": timed(lambda: deletion_curve(model, x, cam),
                             reps, device) * 1e3,
           "impute_ms": timed(lambda: impute(batch, removed), reps, device) * 1e3,
           "forward_ms": timed(forward, reps, device) * 1e3,
           "mean_fill_curve_ms": timed(lambda: deletion_curve(model, x, cam, removal="mean"),
                                       reps, device) * 1e3}
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}


def bench_affinity_memory(device):
    """Bytes held by the affinity records of danet_resnet50 at 224 px, with and without a budget,
    and the process's peak memory growth while capturing (CUDA: max_memory_allocated)."""
    model = create_model("danet_resnet50").to(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    res = {}
    for label, opts in (("full", {}), ("budget_1mb", {"budget_mb": 1.0})):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with torch.no_grad(), capture(model, kinds=kinds.pairwise_kinds(), **opts) as rec:
            model(x)
        held = sum(m.tensor.numel() * m.tensor.element_size() for m in rec.maps)
        entry = {"held_mb": held / 2**20, "full_mb": rec.memory["bytes_full"] / 2**20,
                 "capped": rec.memory["affinity_capped"]}
        if device.type == "cuda":
            entry["peak_cuda_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        res[label] = entry
        del rec
    return res


def bench_figures():
    """Largest serialized Plotly figure over every kind (lite models + danet_resnet50 at 224)."""
    sizes = {}
    names = [n for n in list_models("lite")] + ["danet_resnet50"]
    for name in names:
        m = create_model(name)
        s = m.info.input_size
        with torch.no_grad(), capture(m) as rec:
            m(torch.randn(1, 3, s, s))
        figs = figures_for(rec.maps)
        flat = [f for v in (figs.values() if isinstance(figs, dict) else [figs]) for f in
                (v if isinstance(v, list) else [v])]
        flat = [f[1] if isinstance(f, tuple) else f for f in flat]
        if flat:
            sizes[name] = max(figure_kb(f) for f in flat)
    return sizes


# ---------------------------------------------------------------------------- load test
def run(quick=False, device="cpu", load=True, models=None, extras=True, clock="wall",
        reps=None, scoring=True):
    device = torch.device(device)
    _CLOCK[0] = CLOCKS[clock]
    reps = reps or (5 if quick else 21)
    lite = list_models("lite")
    names = models or ((["lite_cbam", "lite_nonlocal"] if quick else lite) + list(BIG))
    batches = (1, 4) if quick else BATCHES
    result = {"machine": machine_info(device), "device": str(device), "quick": quick,
              "clock": clock, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg")
              else None,
              "targets": TARGETS, "batches": list(batches), "models": list(names),
              "capture_overhead": {}, "inspect_ms": {}, "inspect_over_forward": {},
              "forward_ms": {}, "ig_batched_speedup": {}, "deletion_insertion_ms": {}}
    for name in names:
        r = bench_model(name, device, reps if name.startswith("lite") else max(3, reps // 3),
                        amp=device.type == "cuda", batches=batches, scoring=scoring)
        for k, v in r.items():
            result.setdefault(k, {})[name] = round(v, 3)
        print(f"  measured {name}", file=sys.stderr, flush=True)
    if not extras:  # only the per-model table
        return result
    result["road"] = bench_road(device, 3 if quick else 7)
    result["road_curve_ms"] = result["road"]["curve_ms"]
    result["capture_overhead_discovered"] = bench_discovered(device, max(3, reps // 3))
    result["affinity_peak_mb"] = bench_affinity_memory(device)
    figs = bench_figures()
    result["figure_kb"] = {k: round(v, 1) for k, v in figs.items()}
    result["figure_kb_max"] = round(max(figs.values()), 1) if figs else None
    if load:
        try:
            ld = bench_load(per_user=2 if quick else 5)
            result["load"] = ld
            kb = ld["response_kb_max"]
            result["response_kb"] = round(kb, 1) if kb else None
        except Exception as e:  # noqa: BLE001 - reported, never fatal
            result["load"] = {"error": repr(e)[:300]}
    return result


def _cell(v, fmt, target=None, upper=True) -> str:
    """A figure, marked ' !' when it misses its target."""
    if v is None:
        return "-"
    miss = target is not None and (v > target if upper else v < target)
    return fmt.format(v) + (" !" if miss else "")


def table(r) -> str:
    T = r["targets"]
    bs = r.get("batches", [1, 32])
    lines = [f"attnviz bench on {r['machine']['cpu']} ({r['machine']['cores']} cores), "
             f"device {r['device']}, torch {r['machine']['torch']}, clock {r.get('clock', 'wall')}"
             + (f", load average {r['load_average'][0]:.1f}" if r.get("load_average") else ""),
             "Grad-CAM = attnviz.explain; Captum = raw LayerGradCam + bilinear upsampling; "
             "floor = forward + gradient at the Grad-CAM layer. Targets in brackets; ' !' marks "
             "a miss."]
    cols = [("fwd ms", "forward_ms", "{:.1f}", None),
            (f"capture/fwd [<={T['capture_overhead']}]", "capture_overhead", "{:.3f}",
             T["capture_overhead"])]
    for b in bs:
        cols.append((f"GC/Captum b{b} [<={T['gradcam_over_captum']}]",
                     f"gradcam_over_captum_b{b}", "{:.3f}", T["gradcam_over_captum"]))
    for b in bs:
        cols.append((f"GC/floor b{b} [<={T['gradcam_over_floor']}]", f"gradcam_over_floor_b{b}",
                     "{:.3f}", T["gradcam_over_floor"]))
    cols += [(f"inspect ms [<={T['inspect_ms_lite']:.0f} lite]", "inspect_ms", "{:.0f}", "lite"),
             ("IG batched x", "ig_batched_speedup", "{:.1f}", None),
             (f"del+ins ms [<={T['deletion_insertion_ms']:.0f}]", "deletion_insertion_ms",
              "{:.0f}", T["deletion_insertion_ms"])]
    widths = [max(len(h), 9) for h, *_ in cols]
    lines.append(f"{'model':16} " + " ".join(f"{h:>{w}}" for (h, *_), w in zip(cols, widths)))
    lines.append("-" * len(lines[-1]))
    for name in r.get("models") or r["capture_overhead"]:
        cells = []
        for (_h, key, fmt, target), w in zip(cols, widths):
            if target == "lite":
                target = T["inspect_ms_lite"] if name.startswith("lite") else None
            cells.append(f"{_cell(r.get(key, {}).get(name), fmt, target):>{w}}")
        lines.append(f"{name:16} " + " ".join(cells))
    ms = [f"{name} b{b}: Grad-CAM {r[f'gradcam_ms_b{b}'][name]:.1f} / Captum "
          f"{r[f'captum_ms_b{b}'][name]:.1f} / floor {r[f'floor_ms_b{b}'][name]:.1f} ms"
          for name in (r.get("models") or []) for b in bs
          if name in r.get(f"gradcam_ms_b{b}", {})]
    if ms:
        lines.append("medians: " + "; ".join(ms))
    if r.get("capture_overhead_discovered"):
        lines.append(line(r["capture_overhead_discovered"]))
    a = r.get("affinity_peak_mb", {})
    if a:
        lines.append("affinity records of danet_resnet50 @224: " + ", ".join(
            f"{k}: {v['held_mb']:.2f} MB held (full {v['full_mb']:.2f} MB)" for k, v in a.items()))
    road = r.get("road")
    if road:
        lines.append(f"ROAD deletion curve, lite_cbam {road['image_px']} px, "
                     f"{road['steps']} steps, "
                     f"{road['threads']} thread(s): {road['curve_ms']:.0f} ms wall "
                     f"[<={T.get('road_curve_ms', 1000):.0f}], {road['curve_cpu_ms']:.0f} ms CPU "
                     f"(imputation {road['impute_ms']:.0f} ms, forward passes "
                     f"{road['forward_ms']:.0f} ms; mean fill {road['mean_fill_curve_ms']:.0f} ms)")
    if "figure_kb_max" in r:
        lines.append(f"largest figure: {r['figure_kb_max']} KB [<={T['figure_kb_max']:.0f}]")
    ld = r.get("load")
    if ld:
        if "error" in ld:
            lines.append(f"load: failed to run ({ld['error']})")
        else:
            lines.append(f"load: {ld['users']} users x {ld['requests'] // ld['users']} /inspect: "
                         f"{ld['throughput_rps']:.2f} req/s, p50 {ld['p50_ms']:.0f} ms, "
                         f"p95 {ld['p95_ms']:.0f} ms, errors {ld['errors']}, largest response "
                         f"{r.get('response_kb')} KB [<={T['response_kb']:.0f}]")
    return "\n".join(lines)


def markdown(r) -> str:
    """The per-model table as Markdown (the README's performance table), targets in headers."""
    T, bs = r["targets"], r.get("batches", [1, 32])

    def f(key, name, fmt, target=None):
        return _cell(r.get(key, {}).get(name), fmt, target).replace(" !", " ✗")

    head = ["model", "forward ms", f"capture / forward (≤ {T['capture_overhead']})"]
    head += [f"Grad-CAM / Captum, batch {b} (≤ {T['gradcam_over_captum']:.2f})" for b in bs]
    head += [f"Grad-CAM / floor, batch {b} (≤ {T['gradcam_over_floor']})" for b in bs]
    head += [f"full inspect ms (≤ {T['inspect_ms_lite']:.0f} lite)", "IG 32 steps: unbatched / "
             "batched", f"deletion + insertion ms (≤ {T['deletion_insertion_ms']:.0f})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in r.get("models") or r["capture_overhead"]:
        row = [f"`{name}`", f("forward_ms", name, "{:.1f}"),
               f("capture_overhead", name, "{:.3f}", T["capture_overhead"])]
        row += [f(f"gradcam_over_captum_b{b}", name, "{:.3f}", T["gradcam_over_captum"])
                for b in bs]
        row += [f(f"gradcam_over_floor_b{b}", name, "{:.3f}", T["gradcam_over_floor"])
                for b in bs]
        row += [f("inspect_ms", name, "{:.0f}",
                  T["inspect_ms_lite"] if name.startswith("lite") else None),
                f("ig_batched_speedup", name, "{:.1f}x"),
                f("deletion_insertion_ms", name, "{:.0f}", T["deletion_insertion_ms"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--attributions" in argv:  # every attribution method beside its peers (its own options)
        return bench_attributions([a for a in argv if a != "--attributions"])
    if "--serving" in argv:  # the app as served: HTTP vs in-process, server CPU, 1/8/16 clients

        return bench_serving([a for a in argv if a != "--serving"])
    p = argparse.ArgumentParser(prog="python -m attnviz.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer models and repetitions (CI)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--no-load", action="store_true", help="skip the concurrent-client load test")
    p.add_argument("--models", nargs="*", help="only these models")
    p.add_argument("--models-only", action="store_true",
                   help="only the per-model table (no ROAD, discovery, memory, figure or load "
                        "runs)")
    p.add_argument("--reps", type=int, help="repetitions per lite-model figure (default 21, "
                                              "--quick 5; the 224 px models a third)")
    p.add_argument("--no-scoring", action="store_true",
                   help="skip the IG batching and deletion/insertion columns")
    p.add_argument("--clock", choices=list(CLOCKS), default="wall",
                   help="the model table's clock: wall time, or this process's CPU time (for a "
                        "CPU shared with other jobs)")
    p.add_argument("--markdown", action="store_true", help="also print the per-model table as "
                                                           "Markdown (the README's)")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if a.clock == "cpu" and a.device == "cuda":
        p.error("--clock cpu measures CPU time; on CUDA use wall time")
    r = run(a.quick, a.device, not a.no_load, a.models, extras=not a.models_only, clock=a.clock,
            reps=a.reps, scoring=not a.no_scoring)
    print(table(r))
    if a.markdown:
        print(markdown(r))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=2, default=str))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
