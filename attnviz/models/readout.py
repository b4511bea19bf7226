"""The answer read at one position: a pooled classifier's head applied to the final feature map at
a query point instead of to its average.

A ResNet here ends in ``avgpool`` (a global average) and ``fc`` (linear), so ``fc`` of one cell of
the final map is that cell's share of the image's logits (the pooled logits are the mean of the
cells' logits). :func:`logits_at` runs the model once and returns both the image's logits and the
logits at each image's query point. The cued task trains with it (the cue must know the named
shape's class, so the cue's affinity row has to find that shape: :mod:`attnviz.data.cued`) and
the link scores report the accuracy read there.
"""
from __future__ import annotations

import torch
from torch import nn


def query_cells(points_yx: torch.Tensor, image_hw, map_hw) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the final-map cells holding ``points_yx`` ((B, 2) pixel (y, x))."""
    pts = torch.as_tensor(points_yx, dtype=torch.float32)
    ih, iw = image_hw
    fh, fw = map_hw
    cy = (pts[:, 0] * fh / ih).floor().long().clamp(0, fh - 1)
    cx = (pts[:, 1] * fw / iw).floor().long().clamp(0, fw - 1)
    return cy, cx


def has_cell_readout(model: nn.Module) -> bool:
    """Whether ``model`` ends in ``avgpool`` + a linear ``fc`` (a readout per cell exists)."""
    return isinstance(getattr(model, "avgpool", None), nn.Module) and \
        isinstance(getattr(model, "fc", None), nn.Linear)


def trained_at_query(model: nn.Module) -> bool:
    """Whether ``model`` was trained to answer at the query too (its card's ``query_loss``) and
    can be read there."""
    card = getattr(getattr(model, "info", None), "card", None) or {}
    return bool((card.get("training") or {}).get("query_loss")) and has_cell_readout(model)


def logits_at(model: nn.Module, x: torch.Tensor, points_yx, net: nn.Module | None = None):
    """(image logits, logits at each image's query point), from one forward pass of ``net``
    (default ``model``; a DistributedDataParallel wrapper of it in training).

    The final feature map is taken from the input of ``model.avgpool`` by a forward pre-hook,
    removed in ``finally``."""
    if not has_cell_readout(model):
        raise TypeError(f"{type(model).__name__} has no avgpool + linear fc to read a cell with")
    seen = []
    handle = model.avgpool.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0]))
    try:
        logits = (net or model)(x)
    finally:
        handle.remove()
    f = seen[-1]
    cy, cx = query_cells(points_yx, x.shape[-2:], f.shape[-2:])
    cell = f[torch.arange(f.shape[0], device=f.device), :, cy.to(f.device), cx.to(f.device)]
    return logits, model.fc(cell)
