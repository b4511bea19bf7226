"""The model-parameter randomisation test with a verdict (Adebayo et al., "Sanity Checks for
Saliency Maps", NeurIPS 2018): an explanation must change as the model's weights are destroyed.

    rows = metrics.randomisation_check(model, image, "gradcam")   # one row per randomised layer
    sanity_verdict(rows)          # per layer: Spearman with the original map, changed or not
    sanity_check(model, images)   # Grad-CAM and each spatial attention kind, over images

Layers are re-initialised one after another from the output down
(:func:`attnviz.metrics.randomisation_units`) and the map recomputed after each. A map has
*changed* at a step when its Spearman rank correlation with the original map is below
``threshold`` (0.5 by default, in absolute value); the method *passes* when the map has changed
once every layer is randomised. An attention map in an early block stays the same until the
randomisation reaches that block (it does not depend on the layers above it), so the per-layer
rows say where each map starts to change; the verdict is taken at the end.
"""
from __future__ import annotations

import numpy as np

from ..errors import MetricError
from .metrics import Row, randomisation_check
from ..capture.recorder import list_taps
from ..kinds import is_spatial

THRESHOLD = 0.5


def sanity_verdict(rows, threshold: float = THRESHOLD) -> Row:
    """A verdict from :func:`attnviz.metrics.randomisation_check`'s rows (or rows whose
    ``spearman`` is a mean over images): {passes, verdict, threshold, final_spearman,
    first_changed (the layer at which the map first changed, or None), layers: [{step, layer,
    spearman, changed}]}. A NaN correlation (a constant map) counts as changed."""
    if not rows:
        raise MetricError("no randomisation rows to judge")
    if not 0 < threshold <= 1:
        raise MetricError("the threshold is a Spearman correlation in (0, 1]")
    layers, first = [], None
    for r in rows:
        rho = float(r["spearman"])
        changed = bool(r["step"] > 0 and (np.isnan(rho) or abs(rho) < threshold))
        if changed and first is None:
            first = r["layer"]
        layers.append(Row(step=int(r["step"]), layer=r["layer"],
                          spearman=None if np.isnan(rho) else round(rho, 4), changed=changed))
    final = layers[-1]
    passes = len(layers) > 1 and final.changed
    verdict = ("passes: the map changes as the weights are randomised" if passes else
               "fails: the map stays similar to the original while the weights are destroyed")
    return Row(passes=passes, verdict=verdict, threshold=threshold,
               final_spearman=final.spearman, first_changed=first, layers=layers)


def _methods(model) -> list[str]:
    """Grad-CAM and each spatial attention kind the model records."""
    kinds = list(dict.fromkeys(k for _, _, k in list_taps(model) if is_spatial(k)))
    return ["gradcam"] + kinds


def sanity_check(model, images, methods=None, threshold: float = THRESHOLD, seed: int = 0,
                 targets=None) -> dict:
    """The randomisation test for each method (default: Grad-CAM and each spatial attention
    kind of ``model``) over ``images`` (one image or a list): per layer the mean Spearman over the
    images, then :func:`sanity_verdict`. Returns {method: verdict Row, with ``images`` and the
    per-image final Spearman values}."""
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise MetricError("give at least one image")
    targets = list(targets) if targets is not None else [None] * len(images)
    out = {}
    for method in methods or _methods(model):
        per_image = [randomisation_check(model, img, method, target=t, seed=seed)
                     for img, t in zip(images, targets)]
        rows = []
        for step, r in enumerate(per_image[0]):
            rhos = [float(p[step]["spearman"]) for p in per_image]
            rows.append({"step": r["step"], "layer": r["layer"],
                         "spearman": float(np.nanmean(rhos)) if not np.isnan(rhos).all()
                         else float("nan")})
        v = sanity_verdict(rows, threshold)
        v["images"] = len(images)
        v["final_spearman_per_image"] = [round(float(p[-1]["spearman"]), 4) for p in per_image]
        out[method] = v
    return out


def format_sanity(result: dict) -> str:
    """A text table: one column per method, one row per randomised layer (Spearman, * where the
    map has changed), then the verdicts."""
    if not result:
        return ""
    methods = list(result)
    first = result[methods[0]]
    w = max(len(r.layer) for r in first.layers) + 2
    lines = [f"sanity check: cascading randomisation (Adebayo et al. 2018) on {first['images']} "
             f"image(s); Spearman with the original map, * = changed (|rho| < "
             f"{first.threshold})",
             f"{'randomised':<{w}}" + "".join(f"{m:>14}" for m in methods)]
    for i, r in enumerate(first.layers):
        cells = []
        for m in methods:
            row = result[m].layers[i]
            cells.append("n/a" if row.spearman is None else
                         f"{row.spearman:.3f}{'*' if row.changed else ' '}")
        lines.append(f"{r.layer:<{w}}" + "".join(f"{c:>14}" for c in cells))
    lines.append(f"{'verdict':<{w}}" + "".join(f"{'pass' if result[m].passes else 'FAIL':>14}"
                                               for m in methods))
    return "\n".join(lines)
