"""Which attention map heads an analysis: the most concentrated spatial map of the deepest stage.

Stages come from the module paths under any naming (:func:`attnviz.analysis.labels.stage_keys`:
``layer4`` in a torchvision ResNet, ``stages.3`` in timm, ``features.11`` in a flat Sequential),
the deepest being the last to run. Among that stage's spatial maps the headline is the most
concentrated one (std / mean of the map shifted to a minimum of 0): the one that points.
"""
from __future__ import annotations

import numpy as np

from ..capture.maps import has_spatial, to_spatial
from .labels import record_stages

__all__ = ["concentration", "deepest_stage", "grid_map", "headline_record"]


def grid_map(rec) -> np.ndarray:
    """The record's spatial reduction on its own grid, float32 (h, w)."""
    return to_spatial(rec)[0].detach().float().cpu().numpy()


def concentration(m) -> float:
    """How peaked a map is: std / mean after shifting its minimum to 0 (0 for a flat map)."""
    m = np.asarray(m, dtype=np.float64)
    m = m - m.min()
    mean = m.mean()
    return float(m.std() / mean) if mean > 1e-12 else 0.0


def deepest_stage(records) -> list:
    """The spatial records of the deepest stage that has any (forward order), or [] without
    any: DANet's head holds a position map (``head.sa``) before a channel affinity
    (``head.sc``) that has no spatial layout, and the position map heads."""
    records = list(records)
    recs = [r for r in records if has_spatial(r)]
    if not recs:
        return []
    stages = record_stages(records)  # stages from every module, not only the spatial ones
    last = max(stages[r.tap] for r in recs)
    return [r for r in recs if stages[r.tap] == last]


def headline_record(records):
    """The most concentrated spatial map of the deepest stage (a map over both axes when there
    is one: a directional gate's row or column only when nothing else is), or None."""
    recs = deepest_stage(records)
    if not recs:
        return None
    maps = {r.tap: grid_map(r) for r in recs}
    both = [r for r in recs if min(maps[r.tap].shape) > 1] or recs
    return max(both, key=lambda r: concentration(maps[r.tap]))
