"""The calls discovery looks at, and the forms beyond plain gates and affinities.

Which calls can make an attention tensor (:func:`candidate`, the one test the probe and the
capture-time function mode share, so the n-th candidate of a module is the same call in both):

    sigmoid family     torch.sigmoid, F.sigmoid, Tensor.sigmoid(_), F.hardsigmoid, expit
    softmax            torch.softmax, F.softmax, Tensor.softmax, nn.Softmax
    clamp to [0, 1]    x.clamp_(0, 1) / clamp / clip: mmcv's HSigmoid ((x + 3) / 6, clamped)
    division by N      w /= w.shape[-1] on a 3-D matrix: mmcv NonLocal2d's dot_product and
                       concatenation pairwise weights
    fused attention    F.scaled_dot_product_attention: never materialises its weights, so the
                       weights are computed from the call's own q, k, mask, causal flag and
                       scale (:func:`sdpa_weights`); the call's own result is left untouched
    nn.MultiheadAttention  its forward (F.multi_head_attention_forward): the weights are the
                       module's own answer to ``need_weights=True, average_attn_weights=False``
                       (:func:`mha_weights`) for the call's own query, key, masks and causal
                       flag, asked beside the call, whose result is left untouched (a torch
                       function mode around the module would turn PyTorch's fast path off and
                       change its output in the last bits, so it is hooked as a module)

Multi-head attention (:func:`read_heads`): a softmax over keys shaped (B, heads, Nq, Nk), or with
windows / patches or heads folded into the batch -- (B*heads, Nq, Nk) (timm's BoTNet),
(B*heads, blocks, Nq, Nk) (HaloNet), (B*P, heads, N, N) (MobileViT), (B*windows, heads, N, N)
(MaxViT) -- is viewed, without a copy, as (B, heads x windows, Nq, Nk); one head kept as
(B, 1, Nq, Nk) is an affinity.

Refusals with a reason (:func:`refusal`) for forms that fit no kind: a softmax over the batch
axis, criss-cross rows and columns, several distributions over positions taken straight from a
projection (lambda keys, external attention's memory units, MobileViTv2's separable context
scores), a matrix reshaped from a pooled vector (BAT's block transforms).
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ...errors import CaptureError

SIGMOIDS = frozenset({"sigmoid", "sigmoid_", "hardsigmoid", "special_expit", "expit"})
SOFTMAXES = frozenset({"softmax"})
CLAMPS = frozenset({"clamp", "clamp_", "clip", "clip_"})
DIVS = frozenset({"div", "div_", "true_divide", "__truediv__", "__itruediv__"})
SDPA = "scaled_dot_product_attention"
MHA = "multi_head_attention_forward"
NAMES = SIGMOIDS | SOFTMAXES | CLAMPS | DIVS | {SDPA, MHA}
# what the readers treat each candidate as
AS_SIGMOID = SIGMOIDS | CLAMPS
AS_SOFTMAX = SOFTMAXES | DIVS | {SDPA, MHA}


def _number(x, value) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dim() == 0 and float(x) == value
    return isinstance(x, numbers.Number) and not isinstance(x, bool) and float(x) == value


def candidate(func, args, kwargs, out) -> str | None:
    """The family name of a call that may make an attention tensor, else None. Depends only on
    the call (its function, arguments and result), never on where it runs."""
    name = getattr(func, "__name__", "")
    if name not in NAMES or not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    if name in (SDPA, MHA):
        return name if len(args) >= 2 and isinstance(args[1], torch.Tensor) else None
    if not isinstance(out, torch.Tensor):
        return None
    if name in CLAMPS:
        lo = kwargs.get("min", args[1] if len(args) > 1 else None)
        hi = kwargs.get("max", args[2] if len(args) > 2 else None)
        return name if _number(lo, 0.0) and _number(hi, 1.0) else None
    if name in DIVS:
        other = kwargs.get("other", args[1] if len(args) > 1 else None)
        return name if x.dim() == 3 and x.shape[-1] > 1 and _number(other, x.shape[-1]) \
            and "rounding_mode" not in kwargs else None
    return name


def softmax_dim(name, args, kwargs, x) -> int | None:
    """The axis a candidate normalises over (softmax: its dim; division by N and SDPA: -1)."""
    if name in SOFTMAXES:
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dim is None:  # F.softmax's implicit choice
            return 0 if x.dim() in (0, 1, 3) else 1
        return int(dim)
    if name in DIVS or name in (SDPA, MHA):
        return -1
    return None


def sdpa_weights(args, kwargs) -> torch.Tensor:
    """The attention weights of an ``F.scaled_dot_product_attention(q, k, v, attn_mask,
    dropout_p, is_causal, scale, enable_gqa)`` call, as its documentation defines them:
    softmax(q @ k^T * scale + bias), bias -inf where a boolean mask is False or above the
    diagonal for ``is_causal``, a float mask added; dropout is not applied (eval)."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
             "enable_gqa")
    call = dict(zip(names, args, strict=False))
    call.update(kwargs)
    q, k = call["query"], call["key"]
    mask, causal = call.get("attn_mask"), bool(call.get("is_causal", False))
    scale = call.get("scale")
    if call.get("enable_gqa") and q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    s = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    attn = q @ k.transpose(-2, -1) * s
    if causal:
        keep = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        attn = attn.masked_fill(~keep, float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            attn = attn.masked_fill(~mask, float("-inf"))
        else:
            attn = attn + mask
    return attn.softmax(dim=-1)


def sdpa_with(weights: torch.Tensor, args, kwargs) -> torch.Tensor:
    """An SDPA call's output recomputed with replaced weights (interventions)."""
    v = kwargs.get("value", args[2] if len(args) > 2 else None)
    if v.dim() >= 3 and weights.dim() >= 3 and v.shape[-3] != weights.shape[-3]:  # grouped
        v = v.repeat_interleave(weights.shape[-3] // v.shape[-3], dim=-3)
    return weights.to(v.dtype) @ v


# ------------------------------------------------------------------- nn.MultiheadAttention
MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
            "average_attn_weights", "is_causal")


def _per_head(w: torch.Tensor) -> torch.Tensor:
    return w if w.dim() == 4 else w.unsqueeze(0)  # an unbatched call: (heads, L, S)


def mha_call_weights(func, args, kwargs) -> torch.Tensor:
    """(B, heads, L, S) weights of an ``F.multi_head_attention_forward`` call (the probe)."""
    return _per_head(func(*args, **{**kwargs, "need_weights": True,
                                     "average_attn_weights": False})[1])


def mha_weights(module, args, kwargs) -> torch.Tensor:
    """(B, heads, L, S): the weights ``module`` (an ``nn.MultiheadAttention``) gives for the
    call ``module(*args, **kwargs)`` when asked for them per head; its forward is called
    directly, so no hook runs twice."""
    call = dict(zip(MHA_ARGS, args))
    call.update(kwargs)
    call.update(need_weights=True, average_attn_weights=False)
    return _per_head(module.forward(**call)[1])


def mha_with(module, weights: torch.Tensor, args, kwargs, output):
    """``module``'s output for the call, recomputed with replaced (B, heads, L, S) weights
    (interventions): out_proj(weights @ value projection), laid out as the module lays it out;
    the returned weights follow the call's own ``need_weights`` / ``average_attn_weights``."""
    call = dict(zip(MHA_ARGS, args))
    call.update(kwargs)
    if module.bias_v is not None or module.add_zero_attn:
        raise CaptureError("replacing the weights of an nn.MultiheadAttention with bias_v or "
                           "add_zero_attn is not supported")
    value, e, h = call["value"], module.embed_dim, module.num_heads
    batched = value.dim() == 3
    v = value if batched else value.unsqueeze(1 if not module.batch_first else 0)
    if module.batch_first:
        v = v.transpose(0, 1)  # (S, N, vdim)
    w_v = module.in_proj_weight[2 * e:] if module._qkv_same_embed_dim else module.v_proj_weight
    b_v = None if module.in_proj_bias is None else module.in_proj_bias[2 * e:]
    vp = F.linear(v, w_v, b_v)  # (S, N, E)
    s_len, n = vp.shape[:2]
    vp = vp.reshape(s_len, n * h, e // h).transpose(0, 1)  # (N*heads, S, head_dim)
    ln = weights.shape[-2]
    o = torch.bmm(weights.reshape(n * h, ln, s_len).to(vp.dtype), vp)
    o = module.out_proj(o.transpose(0, 1).reshape(ln, n, e))  # (L, N, E)
    if module.batch_first:
        o = o.transpose(0, 1)
    if not batched:
        o = o.squeeze(0 if module.batch_first else 1)
    old = output[1] if isinstance(output, tuple) else None
    new_w = None
    if old is not None:
        new_w = weights.mean(1) if call.get("average_attn_weights", True) else weights
        new_w = new_w if batched else new_w.squeeze(0)
    return o, new_w


# ------------------------------------------------------------------------------ multi-head
def _square(n: int) -> bool:
    r = int(round(n ** 0.5))
    return r * r == n and n >= 4


def read_heads(shape, d, b, hw, chans, grid_rule):
    """(kind, recipe) for a softmax over the last axis that is multi-head (or one-head 4-D)
    attention, or None. ``b``: the batch; ``hw``: the feature map's grid; ``grid_rule(n, hw)``:
    the (step, ceil) rule giving n positions, or None."""
    n = len(shape)
    if d != n - 1 or n not in (3, 4) or b < 1:
        return None
    nq, nk = shape[-2], shape[-1]
    rq, rk = grid_rule(nq, hw), grid_rule(nk, hw)
    if n == 3:  # heads folded into the batch: (B*heads, Nq, Nk)
        if shape[0] == b or shape[0] % b or not (rq and rk):
            return None
        return "multihead", ("heads", shape[0] // b, rq, rk, False)
    lead, mid = shape[0], shape[1]
    if lead % b:
        return None
    if lead == b and mid in chans and (nq, nk) == tuple(hw):  # a softmax along W of a map
        return None
    local = not (rq and rk)
    if local and not (_square(nq) and _square(nk)):
        return None
    folded = lead // b
    if folded == 1 and mid == 1:
        return "affinity", ("affinity4", rq, rk, local)
    return "multihead", ("heads", mid, rq, rk, local, folded)


def head_meta(recipe, t: torch.Tensor, batch: int) -> dict:
    """heads / windows / their order for a multi-head recipe, for the raw tensor ``t``."""
    if recipe[0] != "heads":
        return {}
    if t.dim() == 3:  # (B*heads, Nq, Nk)
        return {"heads": t.shape[0] // batch, "windows": 1, "head_order": "heads_first"}
    folded = t.shape[0] // batch
    meta = {"heads": t.shape[1], "windows": folded, "head_order": "windows_first"}
    return meta


# ------------------------------------------------------------------------------ refusals
CRISS_CROSS = ("criss-cross attention: each position's weights over its own column and row "
               "(B, H, W, H+W); no attnviz kind lays them out (declare per-row maps with an "
               "adapter if you need them)")
OVER_BATCH = ("a softmax over the batch axis (each value normalised across the images of the "
              "batch, as an F.softmax with no dim does on 3-D tensors): not attention over "
              "positions or channels")
PROJECTED = ("{k} distributions over the positions taken straight from a projection (lambda-"
             "layer keys, external-attention memory units): no query axis, so not an affinity; "
             "to see them as maps, record that module with capture(extra={{path: 'group'}})")
SEPARABLE = ("separable attention's context scores (MobileViTv2): one distribution over the N "
             "patches for each of the P pixels of a patch, (B, 1, P, N); no attnviz kind")
RESHAPED = ("values reshaped from a pooled (B, N, 1, 1) vector into a grid: a learned matrix "
            "(e.g. BAT's bilinear block transform), not a map over the image")


def refusal(shape, d, b, hw, projected: bool) -> str | None:
    """The reason a softmax of ``shape`` over axis ``d`` fits no kind, when its form is known;
    ``projected``: its input is a view of a module's output (a projection, not q @ k)."""
    n = len(shape)
    if n >= 2 and d == 0 and shape[0] == b:
        return OVER_BATCH
    h, w = hw
    if n == 4 and shape[0] == b and d == 3 and tuple(shape[1:3]) == (h, w) and shape[3] == h + w:
        return CRISS_CROSS
    if projected and n == 4 and shape[0] == b and shape[1] == 1 and d == 3:
        return SEPARABLE
    if projected and n == 3 and shape[0] == b:
        k = shape[1] if d == 2 else shape[2]
        if shape[d] == h * w and k > 1:
            return PROJECTED.format(k=k)
    return None
