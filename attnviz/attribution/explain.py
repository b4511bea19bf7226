"""Attributions through Captum (nothing reimplemented): Grad-CAM, Guided Grad-CAM, Integrated
Gradients, SmoothGrad, Saliency, Occlusion and GradientShap; and the rest of the CAM family
(Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Score-CAM, Ablation-CAM, EigenCAM), which Captum does
not have, in plain torch (:mod:`attnviz.attribution.cam`), behind the same calls.

    att = attnviz.explain(model, "cat.jpg", method="gradcam")    # target=None: predicted class
    att.map      # float32 (H, W) at the image's own resolution
    att.raw      # what Captum returned: Grad-CAM on the layer's grid, before the ReLU
    atts = attnviz.explain(model, ["a.jpg", "b.png"], target=[3, 5])  # a batch: one pass, a list

    exp = Explainer(model, "integrated_gradients")               # build once, reuse
    raw = exp.attribute(x, target=3, n_steps=32)                 # == Captum's own call

Maps: pixel methods give the absolute attribution summed over colour channels; Grad-CAM is
ReLU'd and bilinearly upsampled. Both are taken back through the preprocessing geometry.

The method tables live in :mod:`.methods`, the :class:`Explainer` (built once per model,
method and layer; its cost and thread safety) and :func:`model_lock` in :mod:`.explainer`; all
are reachable from here (``attnviz.explain.Explainer``, ``attnviz.explain.METHODS``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.batch import DEFAULT_BATCH, as_input, chunks, is_batch, pass_target, targets_for
from ..callable_module import make_callable
from ..errors import (AttnvizError, ExplainError, LayerError, TargetError,  # noqa: F401
                      UnknownOptionError)
from ..data.images import Preprocess, preprocess
from .methods import (ALIASES, BATCHED, CAM_METHODS, CAPTUM_METHODS, FAST,  # noqa: F401
                      LAYER_METHODS, METHODS, SINGLE_PASS, canonical_method, resolve_layer)
from .explainer import Explainer, get_explainer, model_lock  # noqa: F401 - re-exported


# ------------------------------------------------------------------------------ results
@dataclass
class Attribution:
    """One attribution.

    map: float32 (H, W) at the image's resolution (>= 0), the ReLU'd (Grad-CAM) or absolute,
        channel-summed (pixel methods) attribution taken back through the preprocessing.
    raw: exactly what Captum returned, detached: for Grad-CAM (B, 1, h, w) on the *layer's* grid
        and not ReLU'd; for guided Grad-CAM and the pixel methods (B, 3, S, S) on the model-input
        grid, signed.
    method; target: the class attributed (an int; from :func:`explain_tensor` on several images,
        a list with one class per image); layer: Grad-CAM layer path or None; options: the
        method options used."""

    map: np.ndarray
    raw: torch.Tensor
    method: str
    target: int | list
    layer: str | None = None
    options: dict = field(default_factory=dict)

    def __repr__(self):
        return (f"Attribution({self.method}, target={self.target}, layer={self.layer}, "
                f"map={self.map.shape})")


# ------------------------------------------------------------------------------ explain()
def reduce_attribution(raw: torch.Tensor, method: str) -> torch.Tensor:
    """Captum's (B, C, h, w) output -> (B, h, w) float map on its own grid: Grad-CAM summed over
    channels and ReLU'd (the CAM), pixel methods |attribution| summed over colour channels. The
    one place this reduction is written."""
    r = raw.detach().float()
    if canonical_method(method) in CAM_METHODS:
        return r.clamp_min(0).sum(1)
    return r.abs().sum(1)


def to_map(raw: torch.Tensor, method: str, pre: Preprocess) -> np.ndarray:
    """Captum's (1, C, h, w) output -> float32 (H, W) map at the image's resolution."""
    m = reduce_attribution(raw, method)
    out = pre.to_image(m[0] if m.shape[0] == 1 else m)
    return np.clip(out, 0, None)


def explain(model: nn.Module, image, method: str = "gradcam", target=None, layer=None,
            mode: str = "resize", batch_size: int = DEFAULT_BATCH, **opts):
    """Attribute ``model``'s ``target`` class (None: the predicted class) on ``image`` (a PIL
    image, an HxWx3 uint8 array or a file path) with ``method`` (see :data:`METHODS`, options in
    :class:`Explainer`). Returns an :class:`Attribution` whose ``map`` is at the image's own
    resolution.

    A batch (a list of images, a (B, H, W, 3) array, or a (B, 3, S, S) tensor that is already
    the normalised model input; see :mod:`attnviz.batch`) is attributed in passes of up to
    ``batch_size`` images (Score-CAM and Ablation-CAM also run their masked / ablated copies
    ``batch_size`` at a time) and gives a list of Attributions, one per image, equal to the
    per-image results; ``target`` is then None, one class, or one class (or None) per image.
    Methods that draw random numbers draw them once per pass, so their noise differs from
    per-image calls."""
    if is_batch(image):
        x, pres, _ = as_input(model, image, mode)
        return explain_batch(model, x, pres, method, target, layer, batch_size, **opts)
    x, pre = preprocess(model, image, mode=mode)
    if canonical_method(method) in BATCHED:
        opts.setdefault("batch_size", batch_size)
    return explain_tensor(model, x, pre, method, target, layer, **opts)


def explain_tensor(model, x: torch.Tensor, pre: Preprocess, method="gradcam", target=None,
                   layer=None, **opts) -> Attribution:
    """:func:`explain` on an already preprocessed (B, 3, S, S) input: one Attribution whose
    ``map`` is (H, W) for one image and (B, H, W) for several (``pre`` then applies to all), and
    whose ``target`` is an int for one image and a list of ints, one per image, for several."""
    exp = get_explainer(model, method, layer)
    used = dict(opts)
    raw, tgt, _ = exp.attribute_with_logits(x, target, **opts)
    t = None if tgt is None else int(tgt[0]) if tgt.numel() == 1 else [int(v) for v in tgt]
    return Attribution(to_map(raw, exp.method, pre), raw, exp.method, t, exp.layer_name, used)


def explain_batch(model, x: torch.Tensor, pres: list, method="gradcam", target=None,
                  layer=None, batch_size: int = DEFAULT_BATCH, **opts) -> list[Attribution]:
    """Per-image Attributions of a preprocessed batch ``x`` (B, 3, S, S) with one
    :class:`Preprocess` per image, in passes of up to ``batch_size`` images."""
    exp = get_explainer(model, method, layer)
    n = x.shape[0]
    if len(pres) != n:
        raise ExplainError(f"got {len(pres)} preprocessing records for {n} inputs")
    targets = targets_for(target, n)
    out = []
    for sl in chunks(n, batch_size):
        xb, tb = x[sl], targets[sl]
        if any(t is None for t in tb) and not all(t is None for t in tb):
            with torch.no_grad():  # mixed: the unset ones are each image's predicted class
                pred = model(xb).argmax(1).tolist()
            tb = [p if t is None else t for t, p in zip(tb, pred)]
        call = dict(opts)
        if exp.method in BATCHED:  # Score-CAM, Ablation-CAM: masked copies per forward, too
            call.setdefault("batch_size", batch_size)
        raw, tgt, _ = exp.attribute_with_logits(xb, pass_target(tb), **call)
        group = pres[sl]
        # one resampling for the pass when every image has the same geometry (a tensor batch)
        maps = to_map(raw, exp.method, group[0]) if len(group) > 1 and all(
            p == group[0] for p in group) else None
        for i in range(raw.shape[0]):
            r = raw[i:i + 1].clone()
            m = maps[i].copy() if maps is not None else to_map(r, exp.method, group[i])
            out.append(Attribution(m, r, exp.method, None if tgt is None else int(tgt[i]),
                                   exp.layer_name, dict(opts)))
    return out


make_callable(__name__, explain)
