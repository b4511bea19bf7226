"""Faithfulness: does the model's prediction rest on the pixels a map ranks first?

    deletion_curve(model, image, map)     # remove the most relevant pixels first: lower AUC better
    insertion_curve(model, image, map)    # restore them first: higher AUC better
    faithfulness(model, image, {"gradcam": m}, grids={"gradcam": (16, 16)})
        # both AUCs for each map, with the same AUCs for a seeded random map of the same grid
    random_map((16, 16), 128, seed=0)     # that reference map
    oracle_map(mask)                      # the object's mask as a map (the tests' oracle)

Removal. By default removed pixels are filled by ROAD's noisy linear imputation
(:mod:`attnviz.road`, Rong et al. 2022): each one the weighted mean of its neighbours plus a little
noise, so a removed object leaves no silhouette for the model to recognise. Insertion restores
pixels in the map's order with the not-yet-restored ones imputed from the restored ones; it shows
the same images as ROAD's least-relevant-first (LeRF) removal, read from the other end, and has
the same AUC. The older constant fills stay available by name (``removal="mean"``: the dataset's
mean colour, "black", "white", "blur": a blurred copy, "noise"), but they leak the removed
region's shape: measured on the shipped lite models, ordering the deletion by the object's own
mask then scores *worse* than a random map.

Every curve is reproducible: the imputation noise is drawn from ``seed`` for each curve on its
own, so a map's score does not depend on what it was batched with. All steps of all curves are
imputed in one batched solve and scored in batched forward passes under no_grad.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..callable_module import make_callable
from ..errors import MetricError, UnknownOptionError, check_target
from .metrics import Row, _as_map, _inputs, _probs
from .road import NOISE, impute
from ..data.images import make_baseline, normalisation
from ..models.info import info_of

REMOVALS = ("road", "mean", "blur", "black", "white", "noise")
DEFAULT_REMOVAL = "road"
#: how each removal is named to a person (the app's explanation, the export)
REMOVAL_NAMES = {
    "road": "ROAD noisy linear imputation (each removed pixel the weighted mean of its "
            "neighbours, plus noise)",
    "mean": "the dataset's mean colour",
    "blur": "a blurred copy of the image",
    "black": "black",
    "white": "white",
    "noise": "uniform random pixels",
}
CURVE_KINDS = ("deletion", "insertion")
_PIXEL_BUDGET = 8_000_000  # floats of step images imputed in one batched solve


@dataclass
class Curve:
    """A deletion or insertion curve: probability of ``target`` against the fraction of pixels
    removed (deletion) or restored (insertion); ``auc`` by the trapezoid rule over [0, 1];
    ``removal``: how removed pixels were filled (a name from :data:`REMOVALS`)."""

    kind: str
    fractions: np.ndarray
    probs: np.ndarray
    auc: float
    target: int
    removal: str = DEFAULT_REMOVAL


def check_removal(removal: str) -> str:
    """The removal's name, or a MetricError naming the choices."""
    if not isinstance(removal, str) or removal not in REMOVALS:
        raise UnknownOptionError(f"unknown removal {removal!r}; choose from {list(REMOVALS)} "
                                 "(road: "
                          "ROAD's noisy linear imputation, the default)")
    return removal


def random_map(grid, size: int, seed: int = 0) -> np.ndarray:
    """A seeded uniform random map on a ``grid`` = (h, w) (or h for h x h) grid, bilinearly
    upsampled to ``size`` x ``size`` as attribution maps are: the reference a map of that grid
    is scored against."""
    h, w = (int(grid), int(grid)) if np.ndim(grid) == 0 else (int(grid[0]), int(grid[1]))
    if h < 1 or w < 1:
        raise MetricError(f"a random map's grid must be at least 1 x 1, got {h} x {w}")
    gen = torch.Generator().manual_seed(int(seed))
    m = torch.rand(1, 1, h, w, generator=gen, dtype=torch.float64)
    if (h, w) != (size, size):
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
    return m[0, 0].numpy().astype(np.float32)


def oracle_map(mask) -> np.ndarray:
    """The map an object's mask implies: 1 on the object; outside it, decreasing with the
    distance to the object (0.5 / (1 + d)), so the object is removed (or restored) first and the
    background nearest to it next, instead of in raster order. The test's and the evaluation's
    oracle: a faithfulness score should rank it above a random map."""
    import cv2
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    m = m > 0.5 if m.dtype.kind == "f" else m.astype(bool)
    if m.ndim != 2 or not m.any():
        raise MetricError("the oracle needs a 2-D mask that marks at least one pixel")
    d = cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(m, 1.0, 0.5 / (1.0 + d)).astype(np.float32)


def _input_map(map, pre, size) -> torch.Tensor:
    """A map at the image's resolution (or already S x S) -> (S, S) on the input grid."""
    a = _as_map(map)
    W, H = pre.original_size
    if a.shape == (H, W):
        return pre.to_input(a.astype(np.float32))
    if a.shape == (size, size):
        return torch.from_numpy(a.astype(np.float32))
    raise MetricError(f"the map is {a.shape}; expected the image's size {(H, W)} or the model "
                      f"input's {(size, size)}")


def _ranks(m: torch.Tensor) -> torch.Tensor:
    """Each pixel's rank (0 = most relevant; ties in raster order), (1, 1, S, S)."""
    n = m.numel()
    order = torch.argsort(-m.flatten(), stable=True)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return rank.view(1, 1, *m.shape)


def _filled(x, rank, kind, counts, removal, seed, info) -> torch.Tensor:
    """A constant-fill curve's images (K, 3, S, S): step k has ``counts[k]`` pixels removed
    (deletion) or restored (insertion) in rank order, removed pixels taken from ``removal``."""
    c = counts.view(-1, 1, 1, 1)
    removed = rank < c if kind == "deletion" else rank >= c
    mean, std = normalisation(info)
    fill = make_baseline(x, removal, mean, std, torch.Generator().manual_seed(int(seed)))
    return torch.where(removed, fill, x)


def curves(model, image, maps: dict, target=None, steps: int = 32, batch_size: int = 33,
           removal: str = DEFAULT_REMOVAL, mode: str = "resize", seed: int = 0,
           kinds=CURVE_KINDS) -> dict:
    """Deletion and/or insertion curves of several maps of one image, batched: {name: {kind:
    :class:`Curve`}}. ``maps``: {name: map at the image's resolution or S x S}. ``target``
    None: the class the model predicts for the unaltered image."""
    check_removal(removal)
    if int(steps) < 2:
        raise MetricError("steps must be at least 2")
    bad = [k for k in kinds if k not in CURVE_KINDS]
    if bad or not kinds:
        raise UnknownOptionError(f"unknown curve kind {bad}; choose from {list(CURVE_KINDS)}")
    x, pre = _inputs(model, image, mode)
    x = x.detach()
    S = x.shape[-1]
    n = S * S
    counts = torch.linspace(0, n, int(steps) + 1).round().long()
    fractions = (counts.double() / n).numpy()
    info = info_of(model)
    bs = max(1, int(batch_size))
    jobs = [(name, kind, _ranks(_input_map(m, pre, S))) for name, m in maps.items()
            for kind in kinds]
    per_solve = max(1, _PIXEL_BUDGET // (len(counts) * x.shape[1] * n))
    probs = []
    with torch.no_grad():
        for g in range(0, len(jobs), per_solve):
            group = jobs[g:g + per_solve]
            if removal == "road":  # one batched solve for the whole group
                removed = torch.cat([rank < counts.view(-1, 1, 1, 1) if kind == "deletion" else
                                     rank >= counts.view(-1, 1, 1, 1)
                                     for _, kind, rank in group])
                filled = impute(x.cpu().expand(len(removed), -1, -1, -1), removed, noise=0)
                imgs = []
                for j in range(len(group)):
                    gen = torch.Generator().manual_seed(int(seed))
                    sl = slice(j * len(counts), (j + 1) * len(counts))
                    eps = torch.randn(filled[sl].shape, generator=gen)
                    imgs.append(filled[sl] + NOISE * eps * removed[sl])
                batch = torch.cat(imgs).to(x.device, x.dtype)
            else:
                batch = torch.cat([_filled(x, rank.to(x.device), kind, counts.to(x.device),
                                           removal, seed, info) for _, kind, rank in group])
            for i in range(0, batch.shape[0], bs):
                probs.append(_probs(model, batch[i:i + bs], bs))
    probs = torch.cat(probs).view(len(jobs), len(counts), -1) if jobs else None
    out = {name: {} for name in maps}
    if probs is None:
        return out
    if target is None:
        first = 0 if kinds[0] == "deletion" else -1  # the unaltered image
        target = int(probs[0, first].argmax())
    else:
        target = check_target(target, probs.shape[-1])
    for (name, kind, _), p in zip(jobs, probs):
        pt = p[:, int(target)].double().numpy()
        out[name][kind] = Curve(kind, fractions, pt, float(np.trapezoid(pt, fractions)),
                                int(target), removal)
    return out


def deletion_curve(model, image, map, target=None, steps: int = 32, batch_size: int = 33,
                   removal: str = DEFAULT_REMOVAL, mode: str = "resize", seed: int = 0) -> Curve:
    """Deletion (MoRF): remove pixels in decreasing order of ``map`` in ``steps`` increments,
    filled by ``removal`` (default ROAD's noisy linear imputation), all steps in forward batches
    of ``batch_size`` under no_grad. ``target`` None: the predicted class."""
    return curves(model, image, {"map": map}, target, steps, batch_size, removal, mode, seed,
                  ("deletion",))["map"]["deletion"]


def insertion_curve(model, image, map, target=None, steps: int = 32, batch_size: int = 33,
                    removal: str = DEFAULT_REMOVAL, mode: str = "resize",
                    seed: int = 0) -> Curve:
    """Insertion: restore pixels in decreasing order of ``map``, the others removed by
    ``removal`` (with ROAD: imputed from the restored ones; the same images as ROAD's LeRF)."""
    return curves(model, image, {"map": map}, target, steps, batch_size, removal, mode, seed,
                  ("insertion",))["map"]["insertion"]


def deletion_auc(model, image, map, target=None, steps: int = 32, batch_size: int = 33,
                 removal: str = DEFAULT_REMOVAL, mode: str = "resize", seed: int = 0) -> float:
    """Area under the deletion curve (lower: the map finds what the prediction rests on)."""
    return deletion_curve(model, image, map, target, steps, batch_size, removal, mode, seed).auc


def insertion_auc(model, image, map, target=None, steps: int = 32, batch_size: int = 33,
                  removal: str = DEFAULT_REMOVAL, mode: str = "resize", seed: int = 0) -> float:
    """Area under the insertion curve (higher is better)."""
    return insertion_curve(model, image, map, target, steps, batch_size, removal, mode,
                           seed).auc


def _grid_of(g) -> tuple[int, int]:
    """(h, w) from an int, a pair or a torch.Size."""
    if np.ndim(g) == 0:
        return int(g), int(g)
    if len(g) != 2:
        raise MetricError(f"a grid is (h, w), got {g!r}")
    return int(g[0]), int(g[1])


def faithfulness(model, image, maps: dict, grids: dict | None = None, target=None,
                 steps: int = 32, batch_size: int = 33, removal: str = DEFAULT_REMOVAL,
                 mode: str = "resize", seed: int = 0) -> dict:
    """Deletion and insertion AUC of each map with the same two scores for a seeded random map
    of the same grid (:func:`random_map`; one per distinct grid, shared by the maps on it).

    ``maps``: {name: map at the image's resolution or on the model-input grid}; ``grids``:
    {name: (h, w)}, the grid the map was computed on (Grad-CAM: its layer's grid; default: the
    model-input grid, i.e. a per-pixel random reference). Returns {name: Row(deletion,
    insertion, random_deletion, random_insertion, grid, removal, seed)}; rows read as dicts.
    """
    x, pre = _inputs(model, image, mode)
    S = x.shape[-1]
    grids = {k: _grid_of(v) for k, v in (grids or {}).items()}
    grid_of = {name: grids.get(name, (S, S)) for name in maps}
    refs = {f"random {h}x{w}": random_map((h, w), S, seed) for h, w in
            dict.fromkeys(grid_of.values())}
    all_maps = dict(maps)
    all_maps.update(refs)
    cs = curves(model, (x, pre), all_maps, target, steps, batch_size, removal, mode, seed)
    out = {}
    for name in maps:
        h, w = grid_of[name]
        ref = cs[f"random {h}x{w}"]
        out[name] = Row(deletion=cs[name]["deletion"].auc, insertion=cs[name]["insertion"].auc,
                        random_deletion=ref["deletion"].auc,
                        random_insertion=ref["insertion"].auc, grid=[h, w], removal=removal,
                        seed=int(seed))
    return out


def with_reference(value: float, reference: float, digits: int = 3) -> str:
    """A score with its random reference, e.g. "0.123 (random 0.412)"."""
    return f"{value:.{digits}f} (random {reference:.{digits}f})"


make_callable(__name__, faithfulness)
