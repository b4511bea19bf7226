"""Render one example of each visual form into assets/: PNG overlays, and every Plotly figure as
small HTML plus a PNG drawn with matplotlib (attnviz.render.static), and assets/GALLERY.md
listing them.

    python scripts/make_assets.py [--out assets] [--seed 3] [--index 0]

Uses the trained lite models (models/lite_*.safetensors) where they exist and random weights
otherwise; every picture and the gallery say which (random-weight pictures carry a red
"RANDOM WEIGHTS" banner or title). Images come from attnviz.datasets.make_shapes. The analysis
goes through the library's own entry points: attnviz.inspect (capture + Grad-CAM), the renderers
in attnviz.render, and attnviz.metrics for gate ablation and deletion / insertion curves.
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
from attnviz import metrics  # noqa: E402
from attnviz.data.synthetic import make_shapes  # noqa: E402
from attnviz.capture.maps import to_spatial  # noqa: E402
from attnviz.render import (affinity_explorer, affinity_overlay, bars_figure, caption,  # noqa: E402
                            channel_affinity_heatmap, channel_gate_bars, colorbar, figure_kb,
                            figure_png, fit, group_factor_grid, kernel_selection_bars,
                            line_figure, overlay, save_png, shared_range, spatial_heatmap)

DISPLAY = 256  # px side of the synthetic image the overlays are drawn on (models see 128)
MAX_PNG_KB = 300
MODELS = ("lite_cbam", "lite_se", "lite_sk", "lite_sge", "lite_scnet", "lite_sagan",
          "lite_danet", "lite_nonlocal")
TRAINED = "trained on shapes"
RANDOM = "RANDOM WEIGHTS (untrained: the mechanics, not learned attention)"
_FONT = cv2.FONT_HERSHEY_SIMPLEX


# -- inputs -----------------------------------------------------------------------------------
def load_model(name: str, random_weights: bool = False):
    """(model, weights label): the shipped checkpoint when models/<name>.safetensors exists."""
    if not random_weights and (ROOT / "models" / f"{name}.safetensors").exists():
        try:
            return attnviz.create_model(name, pretrained=True).eval(), TRAINED
        except Exception as e:  # a checkpoint being written, or stale
            print(f"{name}: checkpoint not usable ({e}); random weights")
    torch.manual_seed(0)
    return attnviz.create_model(name).eval(), RANDOM


def is_random(weights: str) -> bool:
    return weights != TRAINED


# -- pictures ---------------------------------------------------------------------------------
def banner(lines: list[str], width: int, warn: bool = False) -> np.ndarray:
    """Lines of text on white; with ``warn`` on red, the last line in dark red."""
    bar = np.full((18 * len(lines) + 6, width, 3), 255, np.uint8)
    if warn:
        bar[:] = (250, 222, 222)
    for i, line in enumerate(lines):
        colour = (160, 20, 20) if warn and i == len(lines) - 1 else (20, 20, 20)
        cv2.putText(bar, line, (6, 17 + 18 * i), _FONT, 0.45, colour, 1, cv2.LINE_AA)
    return bar


def pad_to(img, h):
    return np.vstack([img, np.full((h - img.shape[0], img.shape[1], 3), 255, np.uint8)])


def panel(image, over, lines: list[str], weights: str) -> np.ndarray:
    """[image | overlay with its colour bar] under a banner: what, which model, which weights."""
    h = max(image.shape[0], over.shape[0])
    gap = np.full((h, 6, 3), 255, np.uint8)
    body = np.hstack([pad_to(image, h), gap, pad_to(over, h)])
    return np.vstack([banner(lines + [weights], body.shape[1], is_random(weights)), body])


def save_small_png(path: Path, img) -> None:
    """PNG at most MAX_PNG_KB: downscaled until it fits."""
    side = max(img.shape[:2])
    while True:
        save_png(path, fit(img, side))
        if path.stat().st_size <= MAX_PNG_KB * 1024 or side < 128:
            return
        side = int(side * 0.85)


class Gallery:
    def __init__(self, out: Path):
        self.out = out
        self.entries: list[tuple[str, str, str]] = []  # (file, one line, extra)

    def add(self, fname: str, text: str, extra: str = "") -> None:
        self.entries.append((fname, text, extra))

    def figure(self, stem: str, fig, text: str, weights: str) -> None:
        """HTML (Plotly from its CDN) and a PNG of ``fig``; random weights are named in the
        figure's title, in red."""
        if is_random(weights):
            fig.update_layout(title_text=f"{fig.layout.title.text}<br>"
                                         "<span style='color:#b00'>RANDOM WEIGHTS</span>")
        kb = figure_kb(fig)
        assert kb < 1024, f"{stem}: {kb:.0f} KB of JSON"
        fig.write_html(self.out / f"{stem}.html", include_plotlyjs="cdn", full_html=True,
                       div_id=stem)
        png = self.out / f"{stem}.png"
        figure_png(fig, png)
        save_small_png(png, cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB))
        self.add(png.name, text, f"Interactive: [{stem}.html]({stem}.html) ({kb:.0f} KB of "
                                 "JSON, hover for values)")


def prediction(a) -> str:
    name, p = a.top_k[0]
    return f"predicted {name} ({p:.2f})"


# -- main -------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "assets"))
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--index", type=int, default=0, help="which make_shapes image")
    ap.add_argument("--random-weights", action="store_true",
                    help="ignore the checkpoints (to see the random-weight labelling)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    data = make_shapes(args.index + 1, seed=args.seed, size=DISPLAY)
    image, mask = data.images[args.index], data.masks[args.index]
    cls = data.classes[int(data.labels[args.index])]
    h, w = image.shape[:2]
    ys, xs = np.nonzero(mask)
    qx, qy = float(xs.mean()), float(ys.mean())  # affinity query: the shape's centre
    gal = Gallery(out)

    models, runs = {}, {}
    for name in MODELS:
        model, weights = load_model(name, args.random_weights)
        models[name] = (model, weights)
        runs[name] = attnviz.inspect(model, image,
                                     attributions=("gradcam",) if name == "lite_cbam" else ())

    def deepest(name, kind):
        return [r for r in runs[name].maps if r.kind == kind][-1]

    def wt(name):
        return models[name][1]

    def overlay_asset(stem, name, m, what, text, **kw):
        label = kw.pop("label", "per-map scale")
        over = overlay(image, m, colorbar=True, label=label, **kw)
        lines = [f"{name} · {what}", f"{cls} image, {prediction(runs[name])}"]
        save_small_png(out / f"{stem}.png", panel(image, over, lines, wt(name)))
        gal.add(f"{stem}.png", text)

    # -- overlays at the image's resolution
    r = deepest("lite_cbam", "spatial")
    overlay_asset("overlay_spatial", "lite_cbam", to_spatial(r)[0], caption(r),
                  "CBAM spatial gate of the deepest stage over the image (jet, per-map scale)")
    cam = runs["lite_cbam"].attributions["gradcam"].map
    overlay_asset("overlay_gradcam", "lite_cbam", cam, "Grad-CAM (Captum LayerGradCam)",
                  "Grad-CAM of the predicted class, same model and image (inferno)",
                  colormap="inferno", label="Grad-CAM, per-map scale")
    r = deepest("lite_sge", "group")
    overlay_asset("overlay_group", "lite_sge", to_spatial(r)[0], caption(r) + " (mean)",
                  "SGE group factors of the deepest stage, mean over the groups (viridis)",
                  colormap="viridis")
    r = deepest("lite_scnet", "calibration")
    overlay_asset("overlay_calibration", "lite_scnet", to_spatial(r)[0], caption(r) + " (mean)",
                  "SCNet self-calibration gate, mean over channels (turbo)", colormap="turbo")
    r = deepest("lite_sagan", "affinity")
    over = affinity_overlay(image, r, qx, qy, colorbar=True)
    lines = [f"lite_sagan · {caption(r)}",
             f"row of the query at pixel ({qx:.0f}, {qy:.0f}), marked · "
             f"{prediction(runs['lite_sagan'])}"]
    save_small_png(out / "overlay_affinity.png", panel(image, over, lines, wt("lite_sagan")))
    gal.add("overlay_affinity.png", "SAGAN self-attention: where the query at the shape's centre "
            "(marked) attends, its affinity row over the image")

    # -- per-map versus shared scales, across three models
    names = ("lite_cbam", "lite_sge", "lite_scnet")
    kinds = {"lite_cbam": "spatial", "lite_sge": "group", "lite_scnet": "calibration"}
    maps = {n: to_spatial(deepest(n, kinds[n]))[0].numpy() for n in names}
    shared = shared_range(maps.values())
    rows = []
    for norm, tag in (("minmax", "per-map scale"), (shared, "shared scale")):
        cells = [overlay(image, maps[n], norm=norm, colorbar=True, label=f"{n} {tag}")
                 for n in names]
        rows.append(np.hstack([np.pad(c, ((0, 0), (0, 4), (0, 0)), constant_values=255)
                               for c in cells]))
    random_any = any(is_random(wt(n)) for n in names)
    note = ", ".join(f"{n}: {'RANDOM WEIGHTS' if is_random(wt(n)) else TRAINED}" for n in names)
    grid = np.vstack([banner(["Deepest CBAM spatial / SGE group mean / SCNet calibration mean.",
                              "Top: each map on its own scale. Bottom: one scale for all three.",
                              note], rows[0].shape[1], random_any), *rows])
    save_small_png(out / "compare_scales.png", grid)
    gal.add("compare_scales.png", "Per-map versus shared normalisation across three models: "
            "on the shared scale equal values get equal colours")
    save_png(out / "colorbar.png", colorbar(0.0, 1.0, "jet", "gate value", width=256))
    gal.add("colorbar.png", "A colour bar as drawn under every overlay: range ends and the scale")

    # -- Plotly figures (HTML + PNG)
    def title(name, head):
        return f"{head} · {name}"

    r = deepest("lite_cbam", "spatial")
    gal.figure("figure_spatial_heatmap",
               spatial_heatmap(r, title=title("lite_cbam", caption(r))),
               "CBAM spatial map as a heatmap (y downwards, like the image)", wt("lite_cbam"))
    r = deepest("lite_sge", "group")
    gal.figure("figure_group_mean_heatmap",
               spatial_heatmap(r, title=title("lite_sge", caption(r) + " · mean over groups"),
                               colormap="viridis"),
               "SGE group factors, mean over the groups, as a heatmap", wt("lite_sge"))
    r = deepest("lite_scnet", "calibration")
    gal.figure("figure_calibration_heatmap",
               spatial_heatmap(r, title=title("lite_scnet", caption(r) + " · mean"),
                               colormap="turbo"),
               "SCNet calibration gate (mean over channels) as a heatmap", wt("lite_scnet"))
    gal.figure("figure_channel_gates",
               channel_gate_bars([x for x in runs["lite_se"].maps if x.kind == "channel"][::-1]),
               "SE channel gates sorted from most to least open, with a layer selector "
               "(deepest layer shown)", wt("lite_se"))
    gal.figure("figure_kernel_selection",
               kernel_selection_bars([x for x in runs["lite_sk"].maps if x.kind == "kernel"],
                                     title=title("lite_sk", "SK kernel selection"),
                                     branch_names=["3x3", "3x3 dilation 2"]),
               "SK kernel-selection weights: each branch's share per layer (stacked, sums to 1) "
               "and the per-channel spread", wt("lite_sk"))
    r = deepest("lite_sge", "group")
    gal.figure("figure_group_factors",
               group_factor_grid(r, title=title("lite_sge", caption(r))),
               "SGE group factors as a grid of small heatmaps on one colour scale (first: "
               "their mean)", wt("lite_sge"))
    r = deepest("lite_sagan", "affinity")
    gal.figure("figure_affinity_explorer",
               affinity_explorer(r, qx, qy, (h, w), title=title(
                   "lite_sagan", f"{caption(r)} · query ({qx:.0f}, {qy:.0f}) px")),
               "Affinity explorer: the query's row over the key grid, query marked",
               wt("lite_sagan"))
    r = deepest("lite_danet", "channel_affinity")
    gal.figure("figure_channel_affinity",
               channel_affinity_heatmap(r, title=title("lite_danet", caption(r) + " · reordered")),
               "DANet channel affinity (CxC), channels reordered by their leading principal "
               "component", wt("lite_danet"))

    # -- scores: gate ablation on the image where it matters most, deletion / insertion curves
    model, weights = models["lite_cbam"]
    pool = make_shapes(8, seed=args.seed, size=DISPLAY)
    best = None
    for i, img in enumerate(pool.images):
        rows_ = metrics.gate_ablation(model, img)
        spread = max(abs(r["delta"]) for r in rows_)
        if best is None or spread > best[0]:
            best = (spread, i, rows_)
    _, i, rows_ = best
    p0 = rows_[0]["p_before"]
    names_ = [r["layer"] for r in rows_]  # the tap's block, e.g. layer3.0.cbam.SpatialGate
    target = pool.classes[rows_[0]["target"]]
    # a confident model's probability barely moves: chart the logit then (as the app does)
    logit = max(abs(r["delta"]) for r in rows_) < 0.05 and "delta_logit" in rows_[0]
    values = [r["delta_logit" if logit else "delta"] for r in rows_]
    what = "logit" if logit else "probability"
    gal.figure("figure_gate_ablation",
               bars_figure(names_, values,
                           title("lite_cbam", f"Gate ablation (gate set to 1) · make_shapes image "
                                 f"{i}, predicted {target} (p = {p0:.2f})"),
                           f"change of the predicted class's {what}", "module"),
               f"Gate ablation: how the predicted class's {what} changes when each module's "
               "gate is neutralised (of 8 images, the one where modules matter most)", weights)
    a = runs["lite_cbam"]
    attn = a.spatial_map(deepest("lite_cbam", "spatial"))
    rnd = np.random.default_rng(0).random((h, w)).astype(np.float32)
    for kind, fn, better in (("deletion", metrics.deletion_curve, "lower"),
                             ("insertion", metrics.insertion_curve, "higher")):
        curves = {}
        for label, m in (("Grad-CAM", cam), ("CBAM spatial", attn), ("random map", rnd)):
            c = fn(model, image, m, steps=24)
            curves[f"{label} (AUC {c.auc:.3f})"] = (c.fractions, c.probs)
        what = "removed" if kind == "deletion" else "restored"
        gal.figure(f"figure_{kind}_curves",
                   line_figure(curves, title("lite_cbam", f"{kind.capitalize()} curves · {cls} "
                                             "image"),
                               f"fraction of pixels {what} (most salient first)",
                               "probability of the predicted class"),
                   f"{kind.capitalize()} curves of Grad-CAM, the CBAM map and a random map "
                   f"({better} area = more faithful map)", weights)

    # -- gallery page
    lines = ["# attnviz renderings", "",
             f"Produced by `python scripts/make_assets.py` (the renderers in `attnviz/render/`) "
             f"on a synthetic `{cls}` image (`make_shapes`, seed {args.seed}, {w}x{h} px; the "
             "lite models see it at 128 px and every map is drawn back at the image's own "
             "resolution).", "",
             "Weights: " + ", ".join(
                 f"{n}: **{'RANDOM WEIGHTS' if is_random(wt(n)) else TRAINED}**"
                 for n in MODELS) + ".", ""]
    if any(is_random(wt(n)) for n in MODELS):
        lines += ["> Pictures of models with random weights show what the module computes, not "
                  "learned attention; they are marked RANDOM WEIGHTS in red. Run the script again "
                  "once `models/lite_*.safetensors` exist.", ""]
    lines += ["| file | what it shows |", "|---|---|"]
    for fname, text, extra in gal.entries:
        lines.append(f"| [{fname}]({fname}) | {text} |")
        if extra:
            stem = fname.rsplit(".", 1)[0]
            lines.append(f"| [{stem}.html]({stem}.html) | the same figure, interactive |")
    lines.append("")
    for fname, text, extra in gal.entries:
        lines += [f"### {text}", "", f"![{text}]({fname})", ""]
        if extra:
            lines += [extra, ""]
    (out / "GALLERY.md").write_text("\n".join(lines))
    total = 0
    for fname, _, extra in gal.entries:
        size = (out / fname).stat().st_size
        total += size
        if extra:
            total += (out / fname.replace(".png", ".html")).stat().st_size
        print(f"{fname:36s} {size / 1024:6.1f} KB")
    print(f"total {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
