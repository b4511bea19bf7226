"""Reading a tensor made inside an attention module as one of attnviz's kinds.

Discovery sees a sigmoid-family or softmax result and the feature map the module received, and
decides from shapes alone which kind it is (``read_sigmoid`` / ``read_softmax``), giving a
*recipe*: how to view the raw tensor in the kind's canonical shape without copying or changing a
value (``canonical``), and how to put a replacement of that shape back in the raw layout
(``raw_layout``; interventions). Reference: the module's input ``ref`` (B, C, H, W) or
(B, M, C, H, W) (timm's SK attention sees the stacked branches) and its output shape.

    sigmoid-family   (B,C) (B,C,1,1) (B,1,C)     channel       (B, C)  (C: the module's
                     (also clamp to [0, 1])                      channels or 1/S of them)
                     (B,1,H,W) (B,H,W)           spatial       (B, H, W)
                     (B,C,H,1) (B,C,1,W)         directional   as is
                     (B,C,L) viewed to 4-D       directional   (B,C,L,1) / (B,C,1,L)
                     gates of a permuted input   spatial / directional, in the input's frame
                     (B*G,1,H,W) (B,G,H,W)       group         (B, G, H, W)
                     (B,C,H,W)                   calibration   (B, C, H, W)
    softmax          over a branch axis of 2-16: kernel        (B, M, C)
                     (M,B,C,1,1) dim=0, (B,M,C,1,1) dim=1, (B,M,C,1) dim=1,
                     (B,M,card,C/card) (ResNeSt), (B,S,C/S,H,W) constant over H, W (EPSANet)
                     (B,Nq,Nk) over keys, Nq, Nk grids of the input (or /2, /4, /8): affinity
                     (B,1,Nq,Nk) over keys (one head kept 4-D): affinity
                     (B,h,Nq,Nk) (B*h,Nq,Nk) (B*w,h,Nq,Nk) over keys: multihead
                     (B, heads x windows, Nq, Nk); windowed (local) attention: square window
                     grids, ``meta["local"]``
                     (B,C,C) over the last axis: channel_affinity
                     (B,1,HW) (B,HW) (B,1,HW,1) over HW: spatial (global context)
    division by N    (B,Nq,Nk) / Nk (mmcv NonLocal2d dot_product, concatenation): affinity
    fused SDPA       its weights, read as a softmax over the last axis
"""
from __future__ import annotations

import torch

from .forms import read_heads

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


def _directional_shape(shape, b, chans, grids):
    """'h' for (B, C, H, 1), 'w' for (B, C, 1, W), else None."""
    if len(shape) != 4 or shape[0] != b or shape[1] not in chans:
        return None
    for gh, gw in grids:
        if shape[3] == 1 and shape[2] == gh and gh > 1:
            return "h"
        if shape[2] == 1 and shape[3] == gw and gw > 1:
            return "w"
    return None


def _channel_count(n, chans, branches=None) -> bool:
    """A gate over ``n`` channels: one of the module's channel counts, or one of ``branches``
    equal splits of one (EPSANet's per-split SE)."""
    if n in chans:
        return True
    return any(c % n == 0 and 1 < c // n <= MAX_BRANCHES and (branches is None or c // n ==
                                                                branches) for c in chans)


def read_sigmoid(shape, ref, out=None, perm=None, orient=None):
    """(kind, recipe) for a gate of ``shape`` in a module whose input is ``ref``, or None.
    ``perm``: the module's input is the attention module's feature map permuted by ``perm``
    (triplet attention's branches); ``orient``: "h" or "w" for a (B, C, L) gate the module
    views as (B, C, L, 1) or (B, C, 1, L) (ELA)."""
    if ref is None or len(ref) not in (4, 5) or not shape:
        return None
    b, chans, grids = _ref_sets(ref, out)
    n = len(shape)
    if perm is not None:  # read in the frame of the feature map the attention module received
        inv = [0] * len(perm)
        for i, p in enumerate(perm):
            inv[p] = i
        if n != len(perm) or shape[0] != b:
            return None
        seen = tuple(shape[i] for i in inv)
        if seen[1] == 1 and tuple(seen[2:]) in grids and seen[2] * seen[3] > 1:
            return "spatial", ("perm_last2", tuple(inv))
        if _directional_shape(seen, b, chans, grids):
            return "directional", ("perm", tuple(inv))
        return None
    if shape[0] == b:
        rest = [d for d in shape[1:] if d != 1]
        if len(rest) == 1 and rest[0] > 1 and _channel_count(rest[0], chans):
            return "channel", ("flat",)
        if n >= 3 and tuple(shape[-2:]) in grids and shape[-2] * shape[-1] > 1 \
                and all(d == 1 for d in shape[1:-2]):
            return "spatial", ("last2",)
        if _directional_shape(shape, b, chans, grids):
            return "directional", ("id",)
        if n == 3 and shape[1] in chans:  # (B, C, L) viewed to 4-D by the module (ELA)
            hs = {g[0] for g in grids if g[0] > 1}
            ws = {g[1] for g in grids if g[1] > 1}
            side = orient or ("h" if shape[2] in hs and shape[2] not in ws else
                              "w" if shape[2] in ws and shape[2] not in hs else None)
            if side == "h" and shape[2] in hs or side == "w" and shape[2] in ws:
                return "directional", ("dir3", side)
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


def _read_kernel(shape, d, b, chans, grids, constant):
    """A softmax over 2-16 stacked branches: batch, branch and channel axes (the channel axis
    may be split, ResNeSt's cardinality x channels; trailing grid axes must hold one value per
    map, EPSANet's softmax over an expanded tensor)."""
    n = len(shape)
    m = shape[d]
    if not 2 <= m <= MAX_BRANCHES:
        return None
    others = [(i, s) for i, s in enumerate(shape) if i != d and s != 1]
    if not others or others[0][1] != b:
        return None
    bax = others[0][0]
    units = others[1:]
    spatial = []
    if len(units) >= 3 and (units[-2][1], units[-1][1]) in grids and units[-2][0] == n - 2:
        spatial, units = units[-2:], units[:-2]
    if not units or (d == n - 1 and len(units) > 1):
        return None
    prod = 1
    for _, s in units:
        prod *= s
    if not (prod in chans or (len(units) == 1 and _channel_count(prod, chans, branches=m))):
        return None
    if spatial and not (constant is not None and constant()):
        return None
    axes = [bax, d] + [i for i, _ in units]
    ones = [i for i in range(n) if i not in axes and i not in (n - 2, n - 1)] if spatial \
        else [i for i in range(n) if i not in axes]
    perm = tuple(axes + ones + ([n - 2, n - 1] if spatial else []))
    return "kernel", ("kernel", perm, len(spatial))


def read_softmax(shape, dim, ref, out=None, constant=None):
    """(kind, recipe) for a softmax over ``dim`` of ``shape`` in a module whose input is
    ``ref``, or None. ``constant()``: whether the tensor holds one value over its trailing
    grid axes (asked only when that decides)."""
    if ref is None or len(ref) not in (4, 5) or not shape or dim is None:
        return None
    b, chans, grids = _ref_sets(ref, out)
    hw = tuple(ref[-2:])
    n = len(shape)
    d = dim % n
    heads = read_heads(shape, d, b, hw, chans, grid_rule)
    if heads is not None:
        return heads
    kernel = _read_kernel(shape, d, b, chans, grids, constant)
    if kernel is not None:
        return kernel
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
            rq = grid_rule(shape[-2], ref[-2:]) if ref is not None else None
            rk = grid_rule(shape[-1], ref[-2:]) if ref is not None else None
            return ("affinity", rq, rk) if len(shape) == 3 else ("heads", shape[1], rq, rk,
                                                                  not (rq and rk), 1)
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


def _square_grid(n: int, hw):
    r = int(round(n ** 0.5))
    return (r, r) if r * r == n else _factor(n, hw or (1, 1))


def canonical(recipe, t: torch.Tensor, hw=None, batch=None) -> tuple[torch.Tensor, dict]:
    """View ``t`` in its kind's canonical shape (same values, no recomputation) and the meta it
    needs (grids for affinities, heads for multi-head maps). ``hw``: the module input's spatial
    grid in this call; ``batch``: its batch size (for heads or windows folded into the batch)."""
    op = recipe[0]
    if op == "flat":
        return t.reshape(t.shape[0], -1), {}
    if op == "last2":
        return t.reshape(t.shape[0], t.shape[-2], t.shape[-1]), {}
    if op == "perm_last2":
        p = t.permute(recipe[1])
        return p.reshape(p.shape[0], p.shape[-2], p.shape[-1]), {}
    if op == "perm":
        return t.permute(recipe[1]), {}
    if op == "dir3":
        b, c, length = t.shape
        return (t.view(b, c, length, 1) if recipe[1] == "h" else t.view(b, c, 1, length)), {}
    if op == "group":
        return t.reshape(-1, recipe[1], t.shape[-2], t.shape[-1]), {}
    if op == "kernel":
        p = t.permute(recipe[1])
        if len(recipe) > 2 and recipe[2]:
            p = p[..., 0, 0]
        return p.reshape(p.shape[0], p.shape[1], -1), {}
    if op == "grid":
        n = t.numel() // t.shape[0]
        h, w = _grid(n, hw, recipe[1])
        return t.reshape(t.shape[0], h, w), {}
    if op in ("affinity", "affinity4", "heads"):
        local = False if op == "affinity" else (recipe[3] if op == "affinity4" else recipe[4])
        grid = (lambda n, rule: _square_grid(n, hw)) if local else \
            (lambda n, rule: _grid(n, hw, rule))
        if op == "heads":
            rq, rk = recipe[2], recipe[3]
        else:
            rq, rk = recipe[1], recipe[2]
        meta = {"query_hw": grid(t.shape[-2], rq), "key_hw": grid(t.shape[-1], rk)}
        if local:
            meta["local"] = True
        if op == "affinity":
            return t, meta
        b = batch or t.shape[0]
        if op == "affinity4":
            return t.reshape(b, t.shape[-2], t.shape[-1]), meta
        if t.dim() == 3:  # (B*heads, Nq, Nk)
            meta.update(heads=t.shape[0] // b, windows=1, head_order="heads_first")
        elif local and hw is not None and t.shape[1] * t.shape[-2] == hw[0] * hw[1] \
                and t.shape[1] > 1:  # (B*heads, blocks, Nq, Nk): blocks tile the map (HaloNet)
            meta.update(heads=t.shape[0] // b, windows=t.shape[1], head_order="heads_first")
        else:  # (B*windows, heads, Nq, Nk)
            meta.update(heads=t.shape[1], windows=t.shape[0] // b, head_order="windows_first")
        return t.reshape(b, -1, t.shape[-2], t.shape[-1]), meta
    return t, {}


def raw_layout(recipe, new: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """A replacement given in canonical shape, laid out like the raw tensor ``raw``."""
    op = recipe[0]
    if op == "kernel":
        perm = recipe[1]
        inv = [0] * len(perm)
        for i, p in enumerate(perm):
            inv[p] = i
        shape = [raw.shape[p] for p in perm]
        if len(recipe) > 2 and recipe[2]:
            full = new.reshape(shape[:-2] + [1, 1]).expand(shape)
            return full.permute(inv).contiguous()
        return new.reshape(shape).permute(inv)
    if op in ("perm", "perm_last2"):
        inv = recipe[1]
        perm = [0] * len(inv)
        for i, p in enumerate(inv):
            perm[p] = i
        shape = [raw.shape[i] for i in inv]
        return new.reshape(shape).permute(perm)
    return new.reshape(raw.shape)
