"""Reading a tensor made inside an attention module as one of attnviz's kinds.

Discovery sees a sigmoid-family or softmax result and the feature map the module received, and
decides from shapes alone which kind it is (``read_sigmoid`` / ``read_softmax``), giving a
*recipe*: how to view the raw tensor in the kind's canonical shape without copying or changing a
value (``canonical``), and how to put a replacement of that shape back in the raw layout
(``raw_layout``; interventions). Reference: the module's input ``ref`` (B, C, H, W) or
(B, M, C, H, W) (timm's SK attention sees the stacked branches) and its output shape.

    sigmoid-family   (B,C) (B,C,1,1) (B,1,C)     channel       (B, C)
                     (B,1,H,W) (B,H,W)           spatial       (B, H, W)
                     (B*G,1,H,W) (B,G,H,W)       group         (B, G, H, W)
                     (B,C,H,W)                   calibration   (B, C, H, W)
    softmax          over a branch axis of 2-16: kernel        (B, M, C)
                     (M,B,C,1,1) dim=0, (B,M,C,1,1) dim=1, (B,M,C,1) dim=1
                     (B,Nq,Nk) over keys, Nq, Nk grids of the input (or /2, /4, /8): affinity
                     (B,C,C) over the last axis: channel_affinity
                     (B,1,HW) (B,HW) (B,1,HW,1) over HW: spatial (global context)
"""
from __future__ import annotations

import torch

from ... import kinds as _kinds

MAX_BRANCHES = 16
GRID_STEPS = (1, 2, 4, 8)


def _shape(t):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def _ref_sets(ref, out):
    """(B, channel counts, spatial grids) from the module's input and output shapes."""
    b = ref[0]
    chans, grids = {ref[-3]}, {tuple(ref[-2:])}
    if out is not None and len(out) in (4, 5) and out[0] == b:
        chans.add(out[-3])
        grids.add(tuple(out[-2:]))
    return b, chans, grids


def grid_of(h: int, w: int, rule) -> tuple[int, int]:
    """The grid a (step, ceil) rule gives for an input grid h x w."""
    s, ceil = rule
    if ceil:
        return (h + s - 1) // s, (w + s - 1) // s
    return h // s, w // s


def grid_rule(n: int, hw) -> tuple | None:
    """The (step, ceil) rule under which the input grid ``hw`` has ``n`` positions, or None."""
    h, w = hw
    for s in GRID_STEPS:
        for ceil in (False, True):
            gh, gw = grid_of(h, w, (s, ceil))
            if gh * gw == n and gh * gw > 1:
                return (s, ceil)
    return None


def read_sigmoid(shape, ref, out=None):
    """(kind, recipe) for a gate of ``shape`` in a module whose input is ``ref``, or None."""
    if ref is None or len(ref) not in (4, 5) or not shape:
        return None
    b, chans, grids = _ref_sets(ref, out)
    n = len(shape)
    if shape[0] == b:
        rest = [d for d in shape[1:] if d != 1]
        if len(rest) == 1 and rest[0] in chans and rest[0] > 1:
            return "channel", ("flat",)
        if n >= 3 and tuple(shape[-2:]) in grids and shape[-2] * shape[-1] > 1 \
                and all(d == 1 for d in shape[1:-2]):
            return "spatial", ("last2",)
        if n == 4 and tuple(shape[2:]) in grids and shape[1] in chans:
            return "calibration", ("id",)
        if n == 4 and tuple(shape[2:]) in grids and shape[1] > 1 \
                and any(c % shape[1] == 0 and c > shape[1] for c in chans):
            return "group", ("id",)
    if n == 4 and shape[1] == 1 and tuple(shape[2:]) in grids and shape[0] % b == 0 \
            and shape[0] > b:
        g = shape[0] // b
        if any(c % g == 0 and c >= g for c in chans):
            return "group", ("group", g)
    return None


def read_softmax(shape, dim, ref, out=None):
    """(kind, recipe) for a softmax over ``dim`` of ``shape`` in a module whose input is
    ``ref``, or None."""
    if ref is None or len(ref) not in (4, 5) or not shape or dim is None:
        return None
    b, chans, _ = _ref_sets(ref, out)
    hw = tuple(ref[-2:])
    n = len(shape)
    d = dim % n
    m = shape[d]
    others = [(i, s) for i, s in enumerate(shape) if i != d and s != 1]
    if 2 <= m <= MAX_BRANCHES and len(others) == 2 and others[0][1] == b \
            and others[1][1] in chans:
        bax, cax = others[0][0], others[1][0]
        units = tuple(i for i in range(n) if i not in (bax, d, cax))
        return "kernel", ("kernel", (bax, d, cax) + units)
    if shape[0] != b:
        return None
    if n == 3 and d == 2:
        rq, rk = grid_rule(shape[1], hw), grid_rule(shape[2], hw)
        if rq and rk:
            return "affinity", ("affinity", rq, rk)
        if shape[1] == shape[2] and shape[1] in chans:
            return "channel_affinity", ("id",)
    rest = [(i, s) for i, s in enumerate(shape) if i > 0 and s != 1]
    if len(rest) == 1 and rest[0][0] == d:
        rule = grid_rule(rest[0][1], hw)
        if rule is not None and rule[0] == 1:
            return "spatial", ("grid", rule)
    return None


def read_declared(kind: str, shape, ref, out=None):
    """A recipe reading ``shape`` as ``kind`` for a declared module output, or None."""
    if len(shape) == _kinds.get(kind).ndim:
        if _kinds.get(kind).queried:  # one row per query: grid rules for queries and keys
            rq = grid_rule(shape[1], ref[-2:]) if ref is not None else None
            rk = grid_rule(shape[2], ref[-2:]) if ref is not None else None
            return ("affinity", rq, rk)
        return ("id",)
    for reading in (read_sigmoid(shape, ref, out), read_softmax(shape, -1, ref, out),
                    read_softmax(shape, 0, ref, out), read_softmax(shape, 1, ref, out)):
        if reading is not None and reading[0] == kind:
            return reading[1]
    return None


# ------------------------------------------------------------------------------ recipes
def _factor(n: int, hw) -> tuple[int, int]:
    """An h x w factorisation of n closest to the aspect of ``hw`` (fallback for odd grids)."""
    h, w = hw
    best = (1, n)
    for gh in range(1, int(n ** 0.5) + 1):
        if n % gh == 0:
            for a, c in ((gh, n // gh), (n // gh, gh)):
                if abs(a * w - c * h) < abs(best[0] * w - best[1] * h):
                    best = (a, c)
    return best


def _grid(n: int, hw, rule) -> tuple[int, int]:
    if hw is None:
        return _factor(n, (1, 1))
    g = grid_of(hw[0], hw[1], rule) if rule is not None else None
    return g if g is not None and g[0] * g[1] == n else _factor(n, hw)


def canonical(recipe, t: torch.Tensor, hw=None) -> tuple[torch.Tensor, dict]:
    """View ``t`` in its kind's canonical shape (same values, no recomputation) and the meta it
    needs (grids for affinities). ``hw``: the module input's spatial grid in this call."""
    op = recipe[0]
    if op == "flat":
        return t.reshape(t.shape[0], -1), {}
    if op == "last2":
        return t.reshape(t.shape[0], t.shape[-2], t.shape[-1]), {}
    if op == "group":
        return t.reshape(-1, recipe[1], t.shape[-2], t.shape[-1]), {}
    if op == "kernel":
        p = t.permute(recipe[1])
        return p.reshape(p.shape[0], p.shape[1], p.shape[2]), {}
    if op == "grid":
        n = t.numel() // t.shape[0]
        h, w = _grid(n, hw, recipe[1])
        return t.reshape(t.shape[0], h, w), {}
    if op == "affinity":
        return t, {"query_hw": _grid(t.shape[1], hw, recipe[1]),
                   "key_hw": _grid(t.shape[2], hw, recipe[2])}
    return t, {}


def raw_layout(recipe, new: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """A replacement given in canonical shape, laid out like the raw tensor ``raw``."""
    if recipe[0] == "kernel":
        perm = recipe[1]
        inv = [0] * len(perm)
        for i, p in enumerate(perm):
            inv[p] = i
        return new.reshape([raw.shape[p] for p in perm]).permute(inv)
    return new.reshape(raw.shape)
