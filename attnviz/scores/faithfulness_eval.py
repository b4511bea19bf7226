"""Faithfulness at dataset scale, for :mod:`attnviz.evaluate`: deletion and insertion AUC (ROAD
removal, :mod:`attnviz.faithfulness`) of Grad-CAM, of each attention kind, of the oracle (the
object's mask, :func:`~attnviz.faithfulness.oracle_map`) and of a seeded random map on Grad-CAM's
grid, per image; then means with 95% percentile-bootstrap intervals over the images, and the
interval of each map's paired difference from the random map, so a reader sees whether a map
beats random significantly (its difference interval excludes 0).

    rows = image_scores(model, x, labels, masks, cam, records, indices, size)  # one dict per image
    summary = reduce_scores([r for r in rows])                                 # means, intervals

A kind's map is the mean over the kind's layers of each layer's spatial map (bilinearly
upsampled to the input, scaled to [0, 1]), as :func:`attnviz.metrics.randomisation_check`
selects a kind.
"""
from __future__ import annotations

import numpy as np
import torch

from . import faithfulness as Fm
from ..capture.maps import to_spatial, upsample
from ..data.images import Preprocess

ORACLE = "oracle (mask)"
RANDOM = "random"
GRADCAM = "Grad-CAM"
BOOTSTRAP = 2000  # resamples
STEPS = 8  # curve steps in the evaluation (9 points per curve)


def _unit(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def kind_maps(records, i: int, size: int) -> dict:
    """{kind: (size, size) map of image ``i``}: the mean over the kind's layers of their
    [0, 1]-scaled spatial maps."""
    by_kind = {}
    for r in records:
        m = to_spatial(r)
        if m is None:
            continue
        by_kind.setdefault(r.kind, []).append(_unit(upsample(m[i].float().cpu(), (size, size))))
    return {k: np.mean(v, 0) for k, v in by_kind.items()}


def image_scores(model, x: torch.Tensor, labels, masks, cam: torch.Tensor, records, indices,
                 size: int, steps: int = STEPS, seed: int = 0) -> list:
    """Per image of a batch: {name: [deletion, insertion]} for Grad-CAM (``cam`` (B, h, w),
    ReLU'd), each attention kind, the oracle and a random map on Grad-CAM's grid (seeded by
    ``seed`` and the image's index); None for an image without a mask."""
    grid = Preprocess((size, size), size)
    cams = upsample(cam.float().cpu(), (size, size))
    h, w = cam.shape[-2:]
    out = []
    for i, (label, mask, index) in enumerate(zip(labels, masks, indices)):
        if mask is None or not mask.any():
            out.append(None)
            continue
        maps = {GRADCAM: cams[i]}
        maps.update(kind_maps(records, i, size))
        maps[ORACLE] = Fm.oracle_map(mask)
        maps[RANDOM] = Fm.random_map((h, w), size, seed=int(seed) * 1_000_003 + int(index))
        cs = Fm.curves(model, (x[i:i + 1], grid), maps, int(label), steps=steps, seed=int(index))
        out.append({k: [round(c["deletion"].auc, 5), round(c["insertion"].auc, 5)]
                    for k, c in cs.items()})
    return out


def bootstrap_ci(values, level: float = 0.95, resamples: int = BOOTSTRAP, seed: int = 0):
    """Percentile-bootstrap interval of the mean of ``values`` over resampled images."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    if v.size == 1:
        return [float(v[0]), float(v[0])]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(1)
    a = (1 - level) / 2
    return [round(float(np.quantile(means, a)), 4), round(float(np.quantile(means, 1 - a)), 4)]


def reduce_scores(rows: list, steps: int = STEPS) -> dict | None:
    """Means and 95% bootstrap intervals over the images' rows (None rows skipped): {removal,
    steps, images, maps: {name: {deletion, deletion_ci, insertion, insertion_ci,
    deletion_vs_random_ci, insertion_vs_random_ci}}}. The vs-random intervals are of the paired
    difference (map - random): deletion beats random when its interval lies below 0, insertion
    when above."""
    rows = [r for r in rows if r]
    if not rows:
        return None
    names = list(dict.fromkeys(k for r in rows for k in r))
    order = [GRADCAM] + [k for k in names if k not in (GRADCAM, ORACLE, RANDOM)] + [ORACLE,
                                                                                    RANDOM]
    maps = {}
    for name in [k for k in order if k in names]:
        have = [r for r in rows if name in r]
        d = np.array([r[name][0] for r in have])
        ins = np.array([r[name][1] for r in have])
        entry = {"images": len(have),
                 "deletion": round(float(d.mean()), 4), "deletion_ci": bootstrap_ci(d),
                 "insertion": round(float(ins.mean()), 4), "insertion_ci": bootstrap_ci(ins)}
        if name != RANDOM:
            rd = np.array([r[RANDOM][0] for r in have])
            ri = np.array([r[RANDOM][1] for r in have])
            entry["deletion_vs_random_ci"] = bootstrap_ci(d - rd)
            entry["insertion_vs_random_ci"] = bootstrap_ci(ins - ri)
        maps[name] = entry
    return {"removal": "road", "steps": int(steps), "images": len(rows),
            "random": "uniform on Grad-CAM's grid, bilinearly upsampled, seeded per image",
            "maps": maps}


def _ci(v) -> str:
    return "      -       " if v is None else f"[{v[0]:.3f}, {v[1]:.3f}]"


def format_scores(f: dict | None) -> str:
    """A text table of :func:`reduce_scores`'s result."""
    if not f:
        return ""
    lines = [f"faithfulness on {f['images']} images (ROAD removal, {f['steps']} steps; 95% "
             "bootstrap intervals over images)",
             f"{'map':<16} {'deletion':>8} {'interval':>16} {'insertion':>9} {'interval':>16}  "
             "beats random?"]
    for name, e in f["maps"].items():
        beats = ""
        if "deletion_vs_random_ci" in e:
            dv, iv = e["deletion_vs_random_ci"], e["insertion_vs_random_ci"]
            beats = (f"deletion {'yes' if dv[1] < 0 else 'no'}, "
                     f"insertion {'yes' if iv[0] > 0 else 'no'}")
        lines.append(f"{name:<16} {e['deletion']:8.3f} {_ci(e['deletion_ci']):>16} "
                     f"{e['insertion']:9.3f} {_ci(e['insertion_ci']):>16}  {beats}")
    lines.append("deletion: lower is better; insertion: higher is better; 'beats random': the "
                 "95% interval of the paired difference from the random map excludes 0")
    return "\n".join(lines)


def markdown_cell(f: dict | None, name: str) -> str:
    """'0.15 [0.13, 0.17] / 0.93 [0.92, 0.94]' (deletion / insertion) for one map, or '-'."""
    e = (f or {}).get("maps", {}).get(name)
    if not e:
        return "-"
    d, i = e["deletion_ci"], e["insertion_ci"]
    return (f"{e['deletion']:.2f} [{d[0]:.2f}, {d[1]:.2f}] / "
            f"{e['insertion']:.2f} [{i[0]:.2f}, {i[1]:.2f}]")
