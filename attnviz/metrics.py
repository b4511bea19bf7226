"""Scores for any map, attention or attribution: does it point at the object, is it faithful to
the model, does it depend on the model's weights, which attention module matters.

    pointing_game(map, mask)              # argmax within `tolerance` px of the mask?
    energy_pointing_game(map, mask)       # share of the positive map inside the mask
    deletion_auc(model, image, map)       # RISE deletion: lower is more faithful
    insertion_auc(model, image, map)      # RISE insertion: higher is more faithful
    rank_correlation(a, b)                # Spearman, ties by average ranks
    randomisation_check(model, image)     # cascading parameter randomisation (Adebayo et al.)
    gate_ablation(model, image)           # neutralise each attention tap, change of p(target)

Maps and masks are numpy arrays (torch tensors are accepted) of the same (H, W).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import AttnvizError


class MetricError(AttnvizError, ValueError):
    """Bad input to a metric (shapes that do not match, an empty mask, ...)."""


# ------------------------------------------------------------------------------ helpers
def _as_map(m, name: str = "map") -> np.ndarray:
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().numpy()
    a = np.asarray(m)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise MetricError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise MetricError(f"{name} contains NaN or infinite values")
    return a


def _as_mask(mask, shape) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape != tuple(shape):
        raise MetricError(f"the mask is {m.shape} but the map is {tuple(shape)}; bring the map "
                          "to the mask's resolution first (maps from attnviz.inspect are at the "
                          "image's resolution)")
    m = m > 0.5 if m.dtype.kind == "f" else m.astype(bool)
    if not m.any():
        raise MetricError("the mask is empty: it marks no pixel as the object")
    return m


# ------------------------------------------------------------------------------ localisation
def pointing_game(map, mask, tolerance: float = 3) -> bool:
    """Hit when the map's maximum lies within ``tolerance`` pixels (Euclidean) of a mask pixel.

    Ties for the maximum are broken by the first position in raster order.
    """
    a = _as_map(map)
    m = _as_mask(mask, a.shape)
    if tolerance < 0:
        raise MetricError("tolerance must be >= 0 pixels")
    y, x = np.unravel_index(int(np.argmax(a)), a.shape)
    ys, xs = np.nonzero(m)
    d2 = (ys - y).astype(np.float64) ** 2 + (xs - x).astype(np.float64) ** 2
    return bool(d2.min() <= float(tolerance) ** 2)


def energy_pointing_game(map, mask) -> float:
    """Sum of the positive part of the map inside the mask over its sum everywhere (Score-CAM's
    energy-based pointing game); 0.0 for a map with no positive value."""
    a = _as_map(map)
    m = _as_mask(mask, a.shape)
    pos = np.clip(a, 0, None)
    total = pos.sum()
    return float(pos[m].sum() / total) if total > 0 else 0.0
