"""Render one example of each visual form into assets/ (PNG overlays, Plotly figures as small HTML
plus a PNG drawn with matplotlib), and assets/GALLERY.md listing them.

    python scripts/make_assets.py [--out assets] [--seed 3]

Uses the trained lite models (models/lite_*.safetensors) when present, random weights otherwise;
every picture says which. Images come from attnviz.datasets.make_shapes (a drawn test image if
that is unavailable). Run it again once trained models exist.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import attnviz  # noqa: E402
from attnviz.maps import to_spatial  # noqa: E402
from attnviz.render import (affinity_explorer, affinity_overlay, bars_figure, caption,  # noqa: E402
                            channel_affinity_heatmap, channel_gate_bars, colorbar, figure_kb,
                            fit, group_factor_grid, kernel_selection_bars, line_figure, overlay,
                            save_png, shared_range, spatial_heatmap)
from attnviz.render.static import figure_png  # noqa: E402

DISPLAY = 256  # px side of the images the overlays are drawn on
MAX_PNG_KB = 300
_FONT = cv2.FONT_HERSHEY_SIMPLEX


# -- inputs -----------------------------------------------------------------------------------
def sample_image(seed: int, index: int = 0):
    """(HxWx3 uint8 image at DISPLAY px, mask or None, class name or None)."""
    try:
        from attnviz.datasets import make_shapes
        data = make_shapes(index + 1, seed=seed, size=DISPLAY)
        mask = None if data.masks is None else data.masks[index]
        return data.images[index], mask, data.classes[int(data.labels[index])]
    except Exception as e:  # datasets not ready: draw a test image
        print(f"make_shapes unavailable ({e}); drawing a test image")
        img = np.full((DISPLAY, DISPLAY, 3), 40, np.uint8)
        img[:] = np.linspace(30, 90, DISPLAY, dtype=np.uint8)[:, None, None]
        cv2.circle(img, (150, 110), 50, (230, 200, 40), -1)
        mask = np.zeros(img.shape[:2], bool)
        cv2.circle(mask.view(np.uint8), (150, 110), 50, 1, -1)
        return img, mask, "circle"


def load_model(name: str):
    """(model, weights label). Trained weights when models/<name>.safetensors exists."""
    ckpt = ROOT / "models" / f"{name}.safetensors"
    if ckpt.exists():
        try:
            return attnviz.create_model(name, pretrained=True), "trained on shapes"
        except Exception as e:
            print(f"{name}: could not load {ckpt.name} ({e}); using random weights")
    torch.manual_seed(0)
    return attnviz.create_model(name), "RANDOM WEIGHTS"


def to_input(model, image):
    try:
        from attnviz.preprocess import preprocess
        return preprocess(model, image)[0]
    except Exception:
        s = model.info.input_size
        a = cv2.resize(image, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        a = (a - np.array(model.info.mean, np.float32)) / np.array(model.info.std, np.float32)
        return torch.from_numpy(a.transpose(2, 0, 1).copy())[None]


def run(model, image):
    """(records, probabilities) of one forward pass."""
    x = to_input(model, image)
    with torch.no_grad(), attnviz.capture(model) as rec:
        probs = model(x).softmax(1)[0]
    return rec.maps, probs


def gradcam(model, image) -> np.ndarray:
    try:
        from attnviz.explain import explain
        return explain(model, image, "gradcam").map
    except Exception as e:  # explain not ready: a direct Captum call
        print(f"attnviz.explain unavailable ({e}); calling Captum directly")
        from captum.attr import LayerGradCam
        layer = model.get_submodule(model.info.cam_layer)
        x = to_input(model, image).requires_grad_(True)
        target = int(model(x).argmax(1))
        cam = LayerGradCam(model, layer).attribute(x, target=target).clamp_min(0).sum(1)[0]
        return cv2.resize(cam.detach().numpy(), image.shape[1::-1], interpolation=cv2.INTER_LINEAR)


# -- pictures ---------------------------------------------------------------------------------
def banner(text: str, width: int, warn: bool = False) -> np.ndarray:
    """A strip of text (in a red strip when ``warn``)."""
    lines = text.split("\n")
    bar = np.full((18 * len(lines) + 6, width, 3), 255, np.uint8)
    if warn:
        bar[:] = (250, 225, 225)
    for i, line in enumerate(lines):
        cv2.putText(bar, line, (6, 17 + 18 * i), _FONT, 0.45, (150, 20, 20) if warn and i else
                    (20, 20, 20), 1, cv2.LINE_AA)
    return bar


def pad_to(img, h):
    return np.vstack([img, np.full((h - img.shape[0], img.shape[1], 3), 255, np.uint8)])


def panel(image, over, title: str, weights: str) -> np.ndarray:
    """[image | overlay with its colour bar] under a title naming the model and its weights."""
    h = max(image.shape[0], over.shape[0])
    gap = np.full((h, 6, 3), 255, np.uint8)
    body = np.hstack([pad_to(image, h), gap, pad_to(over, h)])
    warn = weights != "trained on shapes"
    return np.vstack([banner(f"{title}\n{weights}", body.shape[1], warn), body])


def save_small_png(path: Path, img) -> None:
    side = max(img.shape[:2])
    while True:
        save_png(path, fit(img, side))
        if path.stat().st_size <= MAX_PNG_KB * 1024 or side < 128:
            return
        side = int(side * 0.8)


def save_figure(out: Path, stem: str, fig, gallery: list, text: str) -> None:
    kb = figure_kb(fig)
    assert kb < 1024, f"{stem}: {kb:.0f} KB of JSON"
    fig.write_html(out / f"{stem}.html", include_plotlyjs="cdn", full_html=True)
    png = out / f"{stem}.png"
    figure_png(fig, png)
    save_small_png(png, cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB))
    gallery.append((png.name, f"{text} ([interactive]({stem}.html), {kb:.0f} KB of JSON)"))


def ablation(model, image, records):
    """Probability change of the predicted class when each module's map is neutralised; uses
    attnviz.metrics.gate_ablation when it exists."""
    try:
        from attnviz.metrics import gate_ablation
        rows = gate_ablation(model, image)  # [{"tap", "delta", ...}] in forward order
        return [r["tap"] for r in rows], [float(r["delta"]) for r in rows]
    except Exception as e:
        print(f"gate_ablation unavailable ({e}); ablating through attnviz.intervene")
    x = to_input(model, image)
    with torch.no_grad():
        p = model(x).softmax(1)[0]
        target = int(p.argmax())
        names, deltas = [], []
        for r in records:
            with attnviz.intervene(model, {r.tap: torch.ones_like}):
                q = model(x).softmax(1)[0, target]
            names.append(r.layer)
            deltas.append(float(q - p[target]))
    return names, deltas


def deletion_curves(model, image, maps: dict, steps: int = 16):
    """Probability of the predicted class as the most salient pixels are blurred away."""
    x = to_input(model, image)
    s = x.shape[-1]
    blurred = torch.nn.functional.avg_pool2d(x, 11, 1, 5, count_include_pad=False)
    with torch.no_grad():
        target = int(model(x).argmax(1))
        curves = {}
        for name, m in maps.items():
            m = cv2.resize(m.astype(np.float32), (s, s), interpolation=cv2.INTER_AREA)
            order = torch.from_numpy(np.argsort(-m.ravel()).copy())
            batch = []
            for k in np.linspace(0, s * s, steps).astype(int):
                keep = torch.ones(s * s)
                keep[order[:k]] = 0
                keep = keep.reshape(1, 1, s, s)
                batch.append(x * keep + blurred * (1 - keep))
            p = model(torch.cat(batch)).softmax(1)[:, target].numpy()
            frac = np.linspace(0, 1, steps)
            curves[f"{name} (AUC {np.trapezoid(p, frac):.3f})"] = (frac, p)
    return curves


# -- main -------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "assets"))
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--index", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    image, mask, cls = sample_image(args.seed, args.index)
    h, w = image.shape[:2]
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        qx, qy = float(xs.mean()), float(ys.mean())
    else:
        qx, qy = w / 2, h / 2
    gallery: list[tuple[str, str]] = []
    weights_used = {}

    def deepest(records, kind):
        return [r for r in records if r.kind == kind][-1]

    def overlay_asset(stem, model_name, weights, m, cap, text, **kw):
        over = overlay(image, m, colorbar=True, label=kw.pop("label", "per-map scale"), **kw)
        save_small_png(out / f"{stem}.png", panel(image, over, f"{model_name} · {cap}", weights))
        gallery.append((f"{stem}.png", text))

    models = {}
    for name in ("lite_cbam", "lite_se", "lite_sk", "lite_sge", "lite_scnet", "lite_sagan",
                 "lite_danet", "lite_nonlocal"):
        model, weights = load_model(name)
        records, probs = run(model, image)
        models[name] = (model, weights, records, probs)
        weights_used[name] = weights

    # overlays
    model, weights, recs, _ = models["lite_cbam"]
    r = deepest(recs, "spatial")
    overlay_asset("overlay_spatial", "lite_cbam", weights, to_spatial(r)[0], caption(r),
                  "CBAM spatial gate of the deepest stage over the image")
    cam = gradcam(model, image)
    overlay_asset("overlay_gradcam", "lite_cbam", weights, cam, "Grad-CAM (Captum LayerGradCam)",
                  "Grad-CAM of the predicted class, same model", colormap="inferno",
                  label="Grad-CAM, per-map scale")
    _, weights, recs, _ = models["lite_sge"]
    r = deepest(recs, "group")
    overlay_asset("overlay_group", "lite_sge", weights, to_spatial(r)[0], caption(r) + " (mean)",
                  "SGE group factors, mean over the groups", colormap="viridis")
    _, weights, recs, _ = models["lite_scnet"]
    r = deepest(recs, "calibration")
    overlay_asset("overlay_calibration", "lite_scnet", weights, to_spatial(r)[0],
                  caption(r) + " (mean)", "SCNet calibration gate, mean over channels",
                  colormap="turbo")
    _, weights, recs, _ = models["lite_sagan"]
    r = deepest(recs, "affinity")
    over = affinity_overlay(image, r, qx, qy, colorbar=True)
    save_small_png(out / "overlay_affinity.png",
                   panel(image, over, f"lite_sagan · {caption(r)} · query ({qx:.0f}, {qy:.0f})",
                         weights))
    gallery.append(("overlay_affinity.png", "SAGAN self-attention: the affinity row of one query "
                    "(marked, at the shape's centre) over the image"))

    # shared versus per-map scales across models
    names = ("lite_cbam", "lite_sge", "lite_scnet")
    kinds = {"lite_cbam": "spatial", "lite_sge": "group", "lite_scnet": "calibration"}
    maps = {n: to_spatial(deepest(models[n][2], kinds[n]))[0].numpy() for n in names}
    shared = shared_range(maps.values())
    rows = []
    for norm, tag in (("minmax", "per-map scale"), (shared, "shared scale")):
        cells = [overlay(image, maps[n], norm=norm, colorbar=True,
                         label=f"{n} {tag}") for n in names]
        rows.append(np.hstack([np.pad(c, ((0, 0), (0, 4), (0, 0)), constant_values=255)
                               for c in cells]))
    weights_note = ", ".join(f"{n}: {models[n][1]}" for n in names)
    grid = np.vstack([banner("Top: each map on its own scale. Bottom: one scale for all three "
                             f"models.\n{weights_note}", rows[0].shape[1],
                             any(models[n][1] != "trained on shapes" for n in names)), *rows])
    save_small_png(out / "compare_scales.png", grid)
    gallery.append(("compare_scales.png", "Per-map versus shared normalisation across models"))
    save_png(out / "colorbar.png", colorbar(0.0, 1.0, "jet", "gate value", width=256))

    # figures
    def tag(name):
        return f" · {name}, {models[name][1]}"

    _, _, recs, _ = models["lite_cbam"]
    r = deepest(recs, "spatial")
    save_figure(out, "figure_spatial_heatmap",
                spatial_heatmap(r, title=caption(r) + tag("lite_cbam")), gallery,
                "Spatial map as a heatmap with hover values")
    _, _, recs, _ = models["lite_se"]
    save_figure(out, "figure_channel_gates",
                channel_gate_bars([x for x in recs if x.kind == "channel"][::-1]), gallery,
                "SE channel gates, sorted, with a layer selector (deepest layer shown)")
    _, _, recs, _ = models["lite_sk"]
    save_figure(out, "figure_kernel_selection",
                kernel_selection_bars([x for x in recs if x.kind == "kernel"],
                                      title="SK kernel selection" + tag("lite_sk"),
                                      branch_names=["3x3", "3x3 dilation 2"]), gallery,
                "SK kernel-selection weights: each branch's share per layer, and the "
                "per-channel spread")
    _, _, recs, _ = models["lite_sge"]
    r = deepest(recs, "group")
    save_figure(out, "figure_group_factors",
                group_factor_grid(r, title=caption(r) + tag("lite_sge")), gallery,
                "SGE group factors as a grid on one shared colour scale")
    _, _, recs, _ = models["lite_sagan"]
    r = deepest(recs, "affinity")
    save_figure(out, "figure_affinity_explorer",
                affinity_explorer(r, qx, qy, (h, w), title=f"{caption(r)} · query ({qx:.0f}, "
                                  f"{qy:.0f}) px" + tag("lite_sagan")), gallery,
                "Affinity explorer: one query's row over the key grid, query marked")
    _, _, recs, _ = models["lite_danet"]
    r = deepest(recs, "channel_affinity")
    save_figure(out, "figure_channel_affinity",
                channel_affinity_heatmap(r, title=caption(r) + " · reordered" + tag("lite_danet")),
                gallery, "DANet channel affinity, channels reordered by their leading principal "
                "component")
    _, _, recs, _ = models["lite_scnet"]
    r = deepest(recs, "calibration")
    save_figure(out, "figure_calibration_heatmap",
                spatial_heatmap(r, title=caption(r) + " (mean)" + tag("lite_scnet"),
                                colormap="turbo"), gallery,
                "SCNet calibration gate (mean over channels) as a heatmap")
    model, _, recs, _ = models["lite_cbam"]
    names, deltas = ablation(model, image, recs)
    names = [n[:-len("_tap")].rsplit(".", 1)[0] if n.endswith("_tap") else n for n in names]
    save_figure(out, "figure_gate_ablation",
                bars_figure(names, deltas, "Gate ablation" + tag("lite_cbam"),
                            "change of the predicted class's probability", "module"), gallery,
                "Gate ablation: probability change when each module is neutralised")
    attn = to_spatial(deepest(recs, "spatial"))[0].numpy()
    rnd = np.random.default_rng(0).random(attn.shape).astype(np.float32)
    curves = deletion_curves(model, image, {"Grad-CAM": cam, "CBAM spatial": attn,
                                            "random map": rnd})
    save_figure(out, "figure_deletion_curves",
                line_figure(curves, "Deletion curves" + tag("lite_cbam"),
                            "fraction of pixels removed (most salient first)",
                            "probability of the predicted class"), gallery,
                "Deletion curves (lower area = more faithful map)")

    # gallery page
    lines = ["# attnviz renderings", "",
             f"Produced by `python scripts/make_assets.py` on a synthetic `{cls}` image "
             f"(`make_shapes`, seed {args.seed}).", "",
             "Weights: " + ", ".join(f"{n}: **{wt}**" for n, wt in weights_used.items()) + ".",
             ""]
    for fname, text in gallery:
        lines += [f"### {text}", "", f"![{text}]({fname})", ""]
    (out / "GALLERY.md").write_text("\n".join(lines))
    for fname, _ in gallery:
        print(f"{fname:36s} {(out / fname).stat().st_size / 1024:6.1f} KB")


if __name__ == "__main__":
    main()
