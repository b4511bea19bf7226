"""Turn capture records into spatial maps that can be drawn over the image and scored.

Spatial reductions per kind, as their specs in :mod:`attnviz.kinds` define them (all return
(B, h, w) float tensors on the record's device):
    spatial      the map itself
    group        mean over the G group factors (``reduce="max"`` for the max)
    calibration  mean over channels
    affinity     attention each key position receives, averaged over queries (column mean) on the
                 key grid; for one query use :func:`affinity_row`
    multihead    the same, averaged over heads (and windows); one head: :func:`affinity_row`'s
                 ``head``; across layers: :func:`rollout`
    directional  mean over channels: a (B, H, 1) column or a (B, 1, W) row
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


def affinity_row(rec: AttentionMap, qy: float, qx: float,
                 head: int | None = None) -> tuple[torch.Tensor, int]:
    """The affinity row of the query nearest to (qy, qx), given as fractions of the image height
    and width in [0, 1]. Returns ((B, kh, kw) tensor, row index used). Multi-head maps: the
    row of one ``head`` (windows averaged) or, by default, the mean over heads."""
    spec = kinds.of(rec)
    if not spec.queried:
        raise OptionError(f"{rec.label} is not an affinity map (no query rows)")
    qh, qw = rec.meta["query_hw"]
    kh, kw = rec.meta["key_hw"]
    iy = min(max(int(qy * qh), 0), qh - 1)
    ix = min(max(int(qx * qw), 0), qw - 1)
    q = iy * qw + ix
    rows = spec.rows(rec.tensor, rec.meta, head)
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


def rollout_chain(records) -> list:
    """The queried records (affinity, multi-head) that attention rollout can chain: the longest
    run, in forward order, of square global maps (not windowed, Nq = Nk) on one query grid
    (MobileViT's per-pixel-of-a-patch attention is global over the patch grid: averaged)."""
    best, run = [], []
    for r in records:
        spec = kinds.of(r)
        if not spec.queried:  # gates between attention layers do not break the chain
            continue
        ok = spec.queried and "query_index" not in r.meta and not r.meta.get("local") \
            and r.shape[-1] == r.shape[-2] \
            and tuple(r.meta.get("query_hw", ())) == tuple(r.meta.get("key_hw", ()))
        if ok and run and tuple(run[-1].meta["query_hw"]) == tuple(r.meta["query_hw"]):
            run.append(r)
        elif ok:
            run = [r]
        else:
            run = []
        if len(run) > len(best):
            best = list(run)
    return best


def rollout(records, head: int | None = None, residual: float = 0.5) -> tuple[torch.Tensor,
                                                                            tuple]:
    """Attention rollout (Abnar & Zuidema, 2020) across the layers :func:`rollout_chain` finds:
    each layer's rows (mean over heads, or one ``head``) mixed with the identity for the
    residual path, ``residual * I + (1 - residual) * A``, rows renormalised, multiplied in
    forward order. Returns ((B, N, N) float tensor, query grid); row i: how much each position
    of the first layer's input flows into position i of the last layer's output."""
    chain = rollout_chain(records)
    if not chain:
        raise OptionError("no square attention maps on one grid to roll out (rollout needs "
                          "global multi-head or affinity maps, uncapped)")
    out = None
    for r in chain:
        a = kinds.of(r).rows(r.tensor, r.meta, head).float()
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(-1, keepdim=True)
        out = a if out is None else a @ out
    return out, tuple(chain[0].meta["query_hw"])
