"""Value ranges for colour scales: per map, fixed, percentile, or shared across maps and models.

Every rendering (OpenCV overlay or Plotly figure) maps values to colours through a range
``(vmin, vmax)``. ``norm`` chooses it:

    "minmax"        the map's own min and max (the full colormap is used by every map)
    "fixed"         (0, 1): gates, softmax weights and most attention values live there
    "percentile"    the map's 1st and 99th percentiles (robust to a few hot pixels)
    (vmin, vmax)    given explicitly, e.g. from :func:`shared_range` so several maps (of one model
                    or of several models) share one scale and can be compared
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from ..capture.maps import to_spatial

PERCENTILES = (1.0, 99.0)


def as_numpy(a) -> np.ndarray:
    """Tensor, array or nested list -> float32 numpy (NaN and inf replaced by 0)."""
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    a = np.asarray(a, dtype=np.float32)
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def display_values(obj, batch: int = 0) -> np.ndarray:
    """The values a rendering of ``obj`` shows: an array as is; for a capture record, its spatial
    reduction (spatial, group mean, calibration mean, affinity column mean) or, for kinds without
    a spatial layout (channel, kernel, channel_affinity), the tensor of batch item ``batch``."""
    if hasattr(obj, "kind") and hasattr(obj, "tensor"):
        spatial = to_spatial(obj)
        return as_numpy((spatial if spatial is not None else obj.tensor)[batch])
    return as_numpy(obj)


def resolve_range(values, norm="minmax", percentiles=PERCENTILES) -> tuple[float, float]:
    """(vmin, vmax) of ``values`` under ``norm`` (see the module docstring)."""
    if isinstance(norm, Normaliser):
        return norm.range(values)
    if isinstance(norm, (tuple, list)) and len(norm) == 2:
        return float(norm[0]), float(norm[1])
    if norm == "fixed":
        return 0.0, 1.0
    a = display_values(values)
    if a.size == 0:
        return 0.0, 1.0
    if norm == "minmax":
        return float(a.min()), float(a.max())
    if norm == "percentile":
        lo, hi = np.percentile(a, percentiles)
        return float(lo), float(hi)
    raise ValueError(f"norm must be 'minmax', 'fixed', 'percentile' or (vmin, vmax), not {norm!r}")


def widen(vmin: float, vmax: float, rel: float = 0.05) -> tuple[float, float]:
    """A degenerate range (vmin == vmax) widened around its value so a colour scale can show it
    (at its middle colour); other ranges unchanged."""
    if vmax - vmin > 1e-12:
        return vmin, vmax
    d = max(abs(vmin) * rel, 1e-3)
    return vmin - d, vmax + d


def shared_range(maps: Iterable, norm="minmax", percentiles=PERCENTILES) -> tuple[float, float]:
    """One (vmin, vmax) covering every map in ``maps`` (arrays, tensors or capture records, from one
    model or several), so that equal values get equal colours everywhere."""
    maps = list(maps)
    if not maps:
        return 0.0, 1.0
    if norm == "fixed" or isinstance(norm, (tuple, list)):
        return resolve_range(None, norm)
    flat = np.concatenate([display_values(m).ravel() for m in maps])
    return resolve_range(flat, norm, percentiles)


def normalise(values, vmin: float, vmax: float) -> np.ndarray:
    """Values scaled to [0, 1] by (vmin, vmax) and clipped; an empty range (a constant map) gives
    the middle of the scale, 0.5."""
    a = as_numpy(values)
    span = vmax - vmin
    if not np.isfinite(span) or span <= 1e-12:
        return np.full_like(a, 0.5)
    return np.clip((a - vmin) / span, 0.0, 1.0)


@dataclass
class Normaliser:
    """A reusable normalisation: ``Normaliser("minmax")`` per map, ``Normaliser.shared(maps)``
    one range for all of them. ``range(m)`` gives (vmin, vmax); ``__call__(m)`` values in [0, 1]."""

    norm: object = "minmax"
    percentiles: tuple = PERCENTILES

    @classmethod
    def shared(cls, maps: Iterable, norm="minmax", percentiles=PERCENTILES) -> "Normaliser":
        return cls(shared_range(maps, norm, percentiles), percentiles)

    @property
    def is_shared(self) -> bool:
        return isinstance(self.norm, (tuple, list)) or self.norm == "fixed"

    def range(self, values) -> tuple[float, float]:
        return resolve_range(values, self.norm, self.percentiles)

    def __call__(self, values) -> np.ndarray:
        return normalise(display_values(values), *self.range(values))
