"""Turn capture records into spatial maps that can be drawn over the image and scored.

Spatial reductions per kind, as their specs in :mod:`attnviz.kinds` define them (all return
(B, h, w) float tensors on the record's device):
    spatial      the map itself
    group        mean over the G group factors (``reduce="max"`` for the max)
    calibration  mean over channels
    affinity     attention each key position receives, averaged over queries (column mean) on the
                 key grid; for one query use :func:`affinity_row`
    channel, kernel, channel_affinity: no spatial layout (``None``)
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .. import kinds
from .recorder import AttentionMap
from ..errors import OptionError

SPATIAL_KINDS = kinds.SPATIAL_KINDS  # live view: the kinds whose spec has a spatial reduction


def has_spatial(rec: AttentionMap) -> bool:
    return kinds.is_spatial(rec)


def to_spatial(rec: AttentionMap, reduce: str = "mean") -> torch.Tensor | None:
    """The record's (B, h, w) spatial reduction (``reduce="max"``: max over groups/channels), or
    None for a kind without a spatial layout."""
    return kinds.to_spatial(rec, reduce)


def affinity_row(rec: AttentionMap, qy: float, qx: float) -> tuple[torch.Tensor, int]:
    """The affinity row of the query nearest to (qy, qx), given as fractions of the image height
    and width in [0, 1]. Returns ((B, kh, kw) tensor, row index used)."""
    if not kinds.of(rec).queried:
        raise OptionError(f"{rec.label} is not an affinity map (no query rows)")
    qh, qw = rec.meta["query_hw"]
    kh, kw = rec.meta["key_hw"]
    iy = min(max(int(qy * qh), 0), qh - 1)
    ix = min(max(int(qx * qw), 0), qw - 1)
    q = iy * qw + ix
    rows = rec.tensor
    if "query_index" in rec.meta:  # capped: nearest kept query
        kept = rec.meta["query_index"].to(torch.long)
        pos = int(torch.argmin((kept - q).abs()))
        q_row, q = pos, int(kept[pos])
    else:
        q_row = q
    return rows[:, q_row].float().reshape(rows.shape[0], kh, kw), q


def upsample(m: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """(h, w) or (B, h, w) tensor -> float32 numpy at ``size`` = (H, W)."""
    x = m.float()
    squeeze = x.dim() == 2
    if squeeze:
        x = x[None]
    x = F.interpolate(x[:, None], size=size, mode=mode,
                      align_corners=False if mode != "nearest" else None)[:, 0]
    out = x.cpu().numpy().astype(np.float32)
    return out[0] if squeeze else out
