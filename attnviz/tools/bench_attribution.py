"""Every attribution method's time, beside a peer's where one is installed, in one run.

    python -m attnviz.bench --attributions [--models lite_cbam cbam_resnet50] [--device cuda]
    python -m attnviz.tools.bench_attribution [--models ...] [--reps N] [--markdown]

Per model and method: one attribution of one image (its predicted class, the method's default
layer and options; the map at the model-input size) through ``Explainer.attribute`` plus the
same upsampling the app draws. Where a peer implements the method in this environment it is
timed alternately with attnviz in the same run (medians compared): TorchCAM (``torchcam``,
pure torch: Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, Score-CAM) and pytorch-grad-cam
(``pytorch_grad_cam``, when importable: it needs torchvision). The bench reports, never fails
on timing."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .timing import CLOCKS, interleaved, load_model, set_clock
from ..attribution.explain import METHODS, Explainer
from ..capture.discover import cam_layer_of

# options that keep the slow Captum methods at the app's settings
OPTIONS = {"integrated_gradients": {"n_steps": 32, "internal_batch_size": 16},
           "smoothgrad": {"nt_samples": 16}, "gradient_shap": {"n_samples": 16}}
# (peer, module, class name) per method
PEERS = {
    "gradcam": [("TorchCAM", "torchcam.methods", "GradCAM"),
                ("pytorch-grad-cam", "pytorch_grad_cam", "GradCAM")],
    "gradcam++": [("TorchCAM", "torchcam.methods", "GradCAMpp"),
                  ("pytorch-grad-cam", "pytorch_grad_cam", "GradCAMPlusPlus")],
    "xgradcam": [("TorchCAM", "torchcam.methods", "XGradCAM"),
                 ("pytorch-grad-cam", "pytorch_grad_cam", "XGradCAM")],
    "layercam": [("TorchCAM", "torchcam.methods", "LayerCAM"),
                 ("pytorch-grad-cam", "pytorch_grad_cam", "LayerCAM")],
    "hirescam": [("pytorch-grad-cam", "pytorch_grad_cam", "HiResCAM")],
    "scorecam": [("TorchCAM", "torchcam.methods", "ScoreCAM"),
                 ("pytorch-grad-cam", "pytorch_grad_cam", "ScoreCAM")],
    "ablationcam": [("pytorch-grad-cam", "pytorch_grad_cam", "AblationCAM")],
    "eigencam": [("pytorch-grad-cam", "pytorch_grad_cam", "EigenCAM")],
}
HEAVY = ("integrated_gradients", "smoothgrad", "occlusion", "gradient_shap", "scorecam",
         "ablationcam")


def _peers(method: str) -> list:
    """[(peer name, class)] of the installed peers of ``method``."""
    out = []
    for name, module, cls in PEERS.get(method, []):
        try:
            out.append((name, getattr(importlib.import_module(module), cls)))
        except Exception as e:  # noqa: BLE001 - not installed, or its own imports fail
            print(f"  no {name} for {method}: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def _peer_call(name, cls, model, layer, x, target):
    if name == "TorchCAM":
        def run():
            with cls(model, layer, input_shape=tuple(x.shape[1:])) as extractor:
                scores = model(x)
                cam = extractor(class_idx=target, scores=scores)[0]
                return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear")
        return run
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run_pgc():
        with cls(model=model, target_layers=[model.get_submodule(layer)]) as peer:
            return peer(input_tensor=x, targets=[ClassifierOutputTarget(target)])
    return run_pgc


def bench_attributions(name: str, device, reps: int = 5, methods=METHODS) -> list[dict]:
    """One row per method: attnviz's median ms and each installed peer's, timed in turn."""
    model = load_model(name, device).eval()
    size = int(model.info.input_size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        target = int(model(x).argmax(1))
    layer = cam_layer_of(model)
    rows = []
    for method in methods:
        exp = Explainer(model, method)
        opts = OPTIONS.get(method, {})

        def ours(exp=exp, opts=opts):
            raw = exp.attribute(x, target, **opts)
            return F.interpolate(raw.float().sum(1, keepdim=True), size=x.shape[-2:],
                                 mode="bilinear")

        n = max(1, reps // 3) if method in HEAVY else reps
        peers = _peers(method)
        fns = [ours] + [_peer_call(p, cls, model, layer, x, target) for p, cls in peers]
        times = interleaved(fns, n, device, warmup=1)
        row = {"model": name, "method": method, "size": size, "ms": times[0] * 1e3,
               "peers": {p: t * 1e3 for (p, _), t in zip(peers, times[1:])}}
        rows.append(row)
        print(f"  {name} {method}: {row['ms']:.1f} ms "
              + " ".join(f"({p} {t:.1f} ms)" for p, t in row["peers"].items()), file=sys.stderr,
              flush=True)
    return rows


def _ms(v: float) -> str:
    return f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def markdown(rows: list[dict]) -> str:
    """Methods down, models across: "ms", with each peer's "(peer ms)"."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = {r["model"]: r["size"] for r in rows}
    by = {(r["model"], r["method"]): r for r in rows}
    head = "| method | " + " | ".join(f"`{m}` ({sizes[m]} px)" for m in models) + " |"
    out = [head, "|" + "---|" * (len(models) + 1)]
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for m in models:
            r = by.get((m, method))
            if r is None:
                cells.append("-")
                continue
            cell = _ms(r["ms"])
            if r["peers"]:
                cell += " (" + "; ".join(f"{p} {_ms(t)}" for p, t in r["peers"].items()) + ")"
            cells.append(cell)
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m attnviz.tools.bench_attribution",
                                description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", default=["lite_cbam", "cbam_resnet50"])
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--reps", type=int, default=5, help="repetitions (a third for slow methods)")
    p.add_argument("--clock", choices=list(CLOCKS), default="wall")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", action="store_true")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    set_clock(a.clock)
    device = torch.device(a.device)
    rows = [r for m in a.models for r in bench_attributions(m, device, a.reps, a.methods)]
    print(markdown(rows))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
