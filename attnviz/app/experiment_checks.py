"""The Experiment tab's checks on one image: gate ablation (does each attention module matter
for this prediction?) and the sanity check (cascading randomisation: do the maps depend on the
weights?). Both use the image and model chosen in the Inspect tab; the sanity check is a heavy
job (:mod:`.jobs`). Laid out by :mod:`~attnviz.app.experiment_tab`.
"""
from __future__ import annotations

import gradio as gr
import numpy as np

from . import jobs
from .. import kinds as K
from ..analysis.labels import group_labels
from . import views as V
from .components import gpu
from .errors import bad_request, user_errors
from .model_cache import MODELS
from .inspect_views import tile

SANITY_METHODS = [("Grad-CAM", "gradcam"), ("Saliency", "saliency"),
                  ("attention maps (all spatial, averaged)", "attention")]
# blocks whose output enters the residual stream through a weight initialised at 0
ZERO_INIT_BLOCKS = ("nonlocal", "danet_pam", "danet_cam", "self_attn")
ABLATION_HEADERS = ["layer", "block", "kind", "p before", "p after", "change", "logit change"]
SANITY_HEADERS = ["step", "randomised", "Spearman", "Pearson", "SSIM", "changed"]


def _image_and_model(image, model_name):
    from ..data.images import load_image
    if image is None:
        raise bad_request("Choose an image in the Inspect tab first.", "No image")
    loaded = MODELS.get(model_name)
    return load_image(image), loaded


# ------------------------------------------------------------------------------ ablation
@gpu
def _ablate(model, pil):
    # forward passes on the shared model: under its lock, or a Captum call running in another
    # thread would see them through its layer hooks
    from ..attribution.explain import model_lock
    from ..scores.metrics import gate_ablation
    with model_lock(model):
        return gate_ablation(model, pil)


def run_ablation(image, model_name):
    """Neutralise each attention module in turn: the change of the predicted class's
    probability, as a sorted bar chart and a table (one row per module)."""
    import pandas as pd
    from ..render.figures import bars_figure
    with user_errors("ablating the attention modules"):
        pil, loaded = _image_and_model(image, model_name)
        rows = _ablate(loaded.model, pil)
        if not rows:
            raise bad_request(f"{loaded.name} has no attention module to ablate (it is a plain "
                              "ResNet); choose a model with attention.", "Nothing to ablate")
        classes = loaded.model.info.classes
        t = rows[0]["target"]
        cname = classes[t] if classes and t < len(classes) else f"class {t}"
        names = ablation_names(rows)
        saturated = max(abs(r["delta"]) for r in rows) < 1e-3
        if saturated:  # a confident model: the probability barely moves, the logit does
            fig = bars_figure(names, [r["delta_logit"] for r in rows],
                              f"{loaded.name}: change of the '{cname}' logit when each module "
                              f"is neutralised (p = {rows[0]['p_before']:.4f} with all modules)",
                              "logit change (after - before)")
        else:
            fig = bars_figure(names, [r["delta"] for r in rows],
                              f"{loaded.name}: change of p('{cname}') when each module is "
                              f"neutralised (p = {rows[0]['p_before']:.3f} with all modules)",
                              "probability change (after - before)")
        fig.update_layout(margin=dict(l=220, r=20, t=60, b=50))
        df = pd.DataFrame([[r["layer"], r["block"], r["kind"], round(r["p_before"], 4),
                            round(r["p_after"], 4), round(r["delta"], 4),
                            round(r["delta_logit"], 3)] for r in rows],
                          columns=ABLATION_HEADERS)
        badge = "" if loaded.trained else " ⚠ random weights: these effects are not learned."
        if max(abs(r["delta"]) for r in rows) < 1e-4:
            badge += " No single module changes the prediction by more than 1e-4"
            zero_init = sorted({K.block_display_name(r["block"]) for r in rows
                                if r["block"] in ZERO_INIT_BLOCKS})
            if zero_init and not loaded.trained:  # only about the blocks this model has
                badge += (f" (untrained {' and '.join(zero_init)} blocks start with their "
                          "residual weight at 0)")
            badge += "."
        what = "Logit change" if saturated else "Probability change"
        md = (f"**{len(rows)} attention taps** neutralised one at a time (gates set to 1, "
              f"affinities uniform); predicted class **{cname}**. Bars: **{what.lower()}** of "
              f"'{cname}' (after - before)"
              + (" — the probability is saturated, so the logit shows the effect."
                 if saturated else ".") + badge)
        return fig, df, md


def ablation_names(rows) -> list[str]:
    """One bar name per ablated tap: the module's distinguishing path (any naming) and what."""
    labels = group_labels([(r["tap"], r["layer"], (r["block"], r["kind"])) for r in rows])
    return [f"{labels[r['tap']]} · {_block(r)}" for r in rows]


def _block(row) -> str:
    from ..render.overlay import BLOCK_NAMES, KIND_NAMES
    block = BLOCK_NAMES.get(row["block"], row["block"])
    return f"{block} {KIND_NAMES.get(row['kind'], row['kind'])}"


# ------------------------------------------------------------------------------ sanity
@gpu(duration=120)
def _sanity(model, pil, method, check=lambda: None):
    """Cascading randomisation on a copy of ``model`` (the library's randomisation_check, with
    the maps it compared): [(unit, map, spearman, pearson, ssim)] per step."""
    from .. import scores as metrics
    from ..capture.recorder import list_taps
    if method == metrics.ALL_ATTENTION:
        from ..kinds import is_spatial
        if not any(is_spatial(k) for _, _, k in list_taps(model)):
            raise bad_request("This model has no spatial attention map to randomise; use "
                              "Grad-CAM or Saliency.")
    rows, maps = metrics.randomisation_check(model, pil, method, return_maps=True,
                                             on_step=lambda step, unit: check())
    frames = [("original weights" if r["step"] == 0 else r["layer"], m, r["spearman"],
               r["pearson"], r["ssim"]) for r, m in zip(rows, maps)]
    return frames


def run_sanity(image, model_name, method, progress=gr.Progress()):
    """Re-initialise the layers from the output down and recompute the map after each step: a
    map that stays the same while the weights are destroyed does not explain the model."""
    import pandas as pd
    from ..render.figures import line_figure
    with user_errors("running the sanity check"):
        pil, loaded = _image_and_model(image, model_name)
        method = method or "gradcam"
        if method != "attention":
            method = V.check_method(method)
        progress(0.1, desc=f"randomising {loaded.name} layer by layer")
        with jobs.heavy_job(f"the sanity check of {loaded.name}",
                            kind="a sanity check") as job:
            frames = _sanity(loaded.model, pil, method, job.check)
        display = V.display_image(np.asarray(pil))
        keep = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), 8)).round().astype(int))
        strip = []
        for i in keep:
            unit, m, sp, pe, ss = frames[i]
            img, rng = V.draw(display, m, "minmax")
            label = "original weights" if i == 0 else f"step {i}: {unit} randomised"
            # each thumbnail with its own colour bar, the caption beneath (CSS: av-tiles)
            strip.append((tile(img, rng), f"{label} · Spearman {sp:.2f} · SSIM {ss:.2f} · "
                                          f"range {V.fmt_range(*rng)}"))
        rows = [[i, u, round(float(sp), 3), round(float(pe), 3), round(float(ss), 3)]
                for i, (u, _, sp, pe, ss) in enumerate(frames)]
        steps = list(range(len(frames)))
        fig = line_figure({"Spearman": (steps, [r[2] for r in rows]),
                           "SSIM": (steps, [r[4] for r in rows])},
                          f"{loaded.name}: similarity to the original map as layers are "
                          "randomised (output first)", "layers randomised", "similarity")
        fig.update_layout(height=300)
        name = "attention maps" if method == "attention" else V.method_name(method)
        from ..scores.sanity import sanity_verdict  # the library's verdict (Adebayo et al. 2018)
        v = sanity_verdict([{"step": r[0], "layer": r[1], "spearman": r[2]} for r in rows])
        for r, lv in zip(rows, v.layers):
            r.append("yes" if lv.changed else "no")
        last = rows[-1][2]
        where = f" It first changes when {v.first_changed} is randomised." \
            if v.first_changed else ""
        md = (f"**{name}** of {loaded.name}, {len(frames) - 1} layers randomised from the "
              f"output down (per-map colour scale). Final Spearman {last:.2f}: "
              f"**{v.verdict}** (changed = |Spearman| < {v.threshold}).{where}")
        return strip, fig, pd.DataFrame(rows, columns=SANITY_HEADERS), md
