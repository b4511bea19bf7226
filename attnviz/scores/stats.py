"""Dataset-level attention statistics, drawn as the papers draw them.

Over hundreds of images in batched forward passes (:func:`dataset_stats`), three analyses of the
attention a model computes:

- **channel gates by class and depth** (SENet, Hu et al. 2018, fig. 6): for every channel-gate
  layer, the mean gate of each channel over the images of each class, and a *class-specificity*
  score, the share of the gates' variance that the class explains (eta squared, pooled over
  channels: ``sum_c n_c |mean_c - mean|^2 / sum_i |g_i - mean|^2``; 0 = the same gates for every
  class, 1 = gates fixed by the class). SENet reports shared gates early, class-specific gates
  late. Its chance level for ``K`` classes and ``N`` images is about ``(K - 1) / (N - 1)``.
- **kernel selection against object scale** (SKNet, Li et al. 2019, fig. 3): per image, the mean
  weight (over channels) on the branch with the largest receptive field, against the object's
  size in pixels (the larger side of its box); the least-squares slope per 10 px with its 95%
  interval. SKNet reports more weight on the larger kernel for larger objects (a positive slope).
- **group-factor concentration on the object through depth** (SGE, Li et al. 2019, fig. 4): per
  image and SGE layer, the share of the group factors' mass inside the object's mask divided by
  the mask's share of the map (1 = no preference, ``1 / area`` = all mass on the object), averaged
  over groups. SGE reports factors sharpening on the object in deeper layers.

Every number comes with its interval over images (``mean_interval``, ``slope_interval``); the CLI
(``attnviz stats``) writes them as CSV files and figures.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from ..errors import OptionError
from ..capture.recorder import capture
from ..data.synthetic import to_tensor

Z95 = 1.959964  # two-sided 95% normal quantile
ANALYSES = ("channel", "kernel", "group")


def mean_interval(values) -> dict:
    """Mean of the finite ``values`` with a 95% normal interval (mean +- 1.96 standard errors);
    ``n`` counts the values used."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"mean": round(m, 4), "lo": round(m - Z95 * se, 4), "hi": round(m + Z95 * se, 4),
            "n": len(v)}


def slope_interval(x, y) -> dict:
    """Least-squares line ``y = a + b x`` with the 95% normal interval of the slope ``b`` (its
    standard error ``sqrt(SSE / (n - 2) / Sxx)``) and the correlation ``r``."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    sxx = float(((x - x.mean()) ** 2).sum()) if n else 0.0
    if n < 3 or sxx == 0:
        return {"slope": None, "lo": None, "hi": None, "intercept": None, "r": None, "n": n}
    b = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    a = float(y.mean() - b * x.mean())
    sse = float(((y - a - b * x) ** 2).sum())
    se = np.sqrt(sse / (n - 2) / sxx)
    syy = float(((y - y.mean()) ** 2).sum())
    r = b * np.sqrt(sxx / syy) if syy > 0 else 0.0
    return {"slope": round(b, 6), "lo": round(b - Z95 * se, 6), "hi": round(b + Z95 * se, 6),
            "intercept": round(a, 6), "r": round(float(r), 4), "n": n}


def region_cover(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool masks -> (N, gh * gw) fraction of each grid cell's area they cover."""
    masks = np.asarray(masks)
    n, h, w = masks.shape
    gh, gw = int(grid[0]), int(grid[1])
    m = masks.astype(np.float32)
    if h % gh == 0 and w % gw == 0:
        return m.reshape(n, gh, h // gh, gw, w // gw).mean((2, 4)).reshape(n, gh * gw)
    return np.stack([cv2.resize(x, (gw, gh), interpolation=cv2.INTER_AREA) for x in m]) \
        .reshape(n, gh * gw)


# ------------------------------------------------------------------------------ the statistics
def class_specificity(gates: np.ndarray, labels: np.ndarray) -> float:
    """Eta squared of (N, C) gates by class: between-class over total sum of squares, pooled over
    channels."""
    g = np.asarray(gates, np.float64)
    labels = np.asarray(labels)
    mu = g.mean(0)
    total = float(((g - mu) ** 2).sum())
    if total == 0:
        return 0.0
    between = sum(float((labels == c).sum()) * float(((g[labels == c].mean(0) - mu) ** 2).sum())
                  for c in np.unique(labels))
    return between / total


def class_means(gates: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(K, C) mean gate of each class (NaN for a class without images)."""
    g = np.asarray(gates, np.float64)
    out = np.full((k, g.shape[1]), np.nan)
    for c in range(k):
        if (labels == c).any():
            out[c] = g[labels == c].mean(0)
    return out


def large_kernel_weight(kernel: torch.Tensor | np.ndarray) -> np.ndarray:
    """(B, M, C) kernel-selection weights -> (B,) mean weight on the last branch (the one with the
    largest receptive field in attnviz's SK blocks)."""
    k = np.asarray(kernel.float().cpu() if torch.is_tensor(kernel) else kernel, np.float64)
    return k[:, -1, :].mean(1)


def object_concentration(factors, masks: np.ndarray) -> np.ndarray:
    """(B, G, h, w) non-negative group factors and (B, H, W) object masks -> (B,) mean over groups
    of (factor mass on the object / total mass) / (object's share of the map); NaN where the mask
    is empty at the map's grid."""
    f = np.asarray(factors.float().cpu() if torch.is_tensor(factors) else factors, np.float64)
    b, g, h, w = f.shape
    cover = region_cover(masks, (h, w)).astype(np.float64)  # (B, h*w)
    area = cover.mean(1)
    flat = f.reshape(b, g, h * w)
    share = (flat * cover[:, None]).sum(2) / np.clip(flat.sum(2), 1e-12, None)  # (B, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, share.mean(1) / area, np.nan)


def object_scale(data) -> np.ndarray | None:
    """(N,) larger side in pixels of each image's object box (from ``boxes`` or the masks)."""
    if getattr(data, "boxes", None) is not None:
        b = np.asarray(data.boxes)
        return np.maximum(b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1).astype(np.float64)
    if getattr(data, "masks", None) is None:
        return None
    out = np.full(len(data.masks), np.nan)
    for i, m in enumerate(data.masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            out[i] = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    return out


# ------------------------------------------------------------------------------ batched passes
@torch.no_grad()
def dataset_stats(model, data, batch_size: int = 50, progress=None) -> dict:
    """Run ``model`` over ``data`` (a ShapesData) in batches and compute the three analyses for the
    attention it has (channel gates, SK kernel selection, SGE group factors).

    progress: called with (images done, total) after every batch; an exception it raises stops
    the run. Returns a dict: n, classes, seconds, and per analysis {layer: ...} (empty when the
    model has no such attention or the data lacks what it needs: masks, object sizes).
    """

    n = len(data.labels)
    if n < 3:
        raise OptionError("dataset statistics need at least 3 images")
    info = model.info
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    gates, weights, conc, blocks = {}, {}, {}, {}
    t0 = time.time()
    try:
        for i in range(0, n, batch_size):
            sl = slice(i, min(i + batch_size, n))
            x = to_tensor(data.images[sl], info.mean, info.std).to(device)
            with capture(model, kinds=list(ANALYSES), discover=False) as rec:
                model(x)
            for r in rec:
                blocks[r.layer] = r.block
                if r.kind == "channel":
                    gates.setdefault(r.layer, []).append(r.tensor.float().cpu().numpy())
                elif r.kind == "kernel":
                    weights.setdefault(r.layer, []).append(large_kernel_weight(r.tensor))
                elif r.kind == "group" and data.masks is not None:
                    conc.setdefault(r.layer, []).append(
                        object_concentration(r.tensor, data.masks[sl]))
            if progress is not None:
                progress(sl.stop, n)
    finally:
        model.train(was)
    k = len(data.classes)
    labels = np.asarray(data.labels)
    out = {"model": info.name, "n": n, "classes": list(data.classes),
           "channel": {}, "kernel": {}, "group": {}}
    for layer, parts in gates.items():
        g = np.concatenate(parts)
        out["channel"][layer] = {"block": blocks[layer], "channels": int(g.shape[1]),
                                 "specificity": round(class_specificity(g, labels), 4),
                                 "chance": round((k - 1) / max(n - 1, 1), 4),
                                 "class_means": class_means(g, labels, k).round(4).tolist()}
    scale = object_scale(data)
    if scale is not None:
        for layer, parts in weights.items():
            w = np.concatenate(parts)
            fit = slope_interval(scale, w)
            per10 = {key: None if fit[key] is None else round(10 * fit[key], 5)
                     for key in ("slope", "lo", "hi")}
            out["kernel"][layer] = {"block": blocks[layer], "per_10px": per10, "fit": fit,
                                    "weight": mean_interval(w),
                                    "scale": scale.tolist(),
                                    "large_weight": w.round(5).tolist()}
    for depth, (layer, parts) in enumerate(conc.items()):
        c = np.concatenate(parts)
        out["group"][layer] = {"block": blocks[layer], "depth": depth,
                               "concentration": mean_interval(c)}
    out["seconds"] = round(time.time() - t0, 2)
    return out


def csv_tables(result: dict) -> dict[str, list[list]]:
    """The result as CSV tables: {file name: rows (the first is the header)}."""
    tables = {}
    if result["channel"]:
        rows = [["layer", "class", "channel", "mean_gate"]]
        spec = [["layer", "channels", "class_specificity", "chance"]]
        for layer, e in result["channel"].items():
            spec.append([layer, e["channels"], e["specificity"], e["chance"]])
            for c, means in enumerate(e["class_means"]):
                rows += [[layer, result["classes"][c], j, v] for j, v in enumerate(means)]
        tables["channel_gates.csv"] = rows
        tables["class_specificity.csv"] = spec
    if result["kernel"]:
        pts = [["layer", "image", "object_px", "large_kernel_weight"]]
        fits = [["layer", "slope_per_10px", "lo", "hi", "r", "n"]]
        for layer, e in result["kernel"].items():
            pts += [[layer, i, s, w] for i, (s, w) in enumerate(zip(e["scale"], e["large_weight"]))]
            p = e["per_10px"]
            fits.append([layer, p["slope"], p["lo"], p["hi"], e["fit"]["r"], e["fit"]["n"]])
        tables["kernel_vs_scale.csv"] = pts
        tables["kernel_slope.csv"] = fits
    if result["group"]:
        rows = [["layer", "depth", "concentration", "lo", "hi", "n"]]
        for layer, e in result["group"].items():
            c = e["concentration"]
            rows.append([layer, e["depth"], c["mean"], c["lo"], c["hi"], c["n"]])
        tables["group_concentration.csv"] = rows
    return tables
