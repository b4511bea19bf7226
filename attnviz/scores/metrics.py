"""Scores for any map, attention or attribution: does it point at the object, is it faithful to
the model, does it depend on the model's weights, which attention module matters.

    pointing_game(map, mask)              # argmax within `tolerance` px of the mask?
    energy_pointing_game(map, mask)       # share of the positive map inside the mask
    deletion_auc(model, image, map)       # deletion (ROAD removal): lower is more faithful
    insertion_auc(model, image, map)      # insertion (ROAD removal): higher is more faithful
    faithfulness(model, image, maps)      # both, with a seeded random map's scores beside them
    rank_correlation(a, b)                # Spearman, ties by average ranks
    randomisation_check(model, image)     # cascading parameter randomisation (Adebayo et al.)
    gate_ablation(model, image)           # neutralise each attention tap, change of p(target)

Maps and masks are numpy arrays (torch tensors are accepted) of the same (H, W).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import (AttnvizError, LayerError, MetricError, TargetError,  # noqa: F401
                     UnknownOptionError, check_target)
from ..data.images import Preprocess, preprocess
from ..attribution.explain import model_lock
from .. import kinds
from ..capture.recorder import capture
from ..attribution.explain import ALIASES, METHODS, explain_tensor
from ..capture.maps import to_spatial
from ..kinds import get
from ..capture.recorder import intervene, list_taps


# ------------------------------------------------------------------------------ helpers
class Row(dict):
    """A result row: a plain dict (JSON-ready) whose keys also read as attributes
    (``row.delta == row["delta"]``)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


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


# ------------------------------------------------------------------------------ correlation
def _rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flat array, ties given their average rank (as scipy.stats.rankdata)."""
    sorter = np.argsort(x, kind="mergesort")
    inv = np.empty_like(sorter)
    inv[sorter] = np.arange(x.size)
    xs = x[sorter]
    first = np.r_[True, xs[1:] != xs[:-1]]
    dense = np.cumsum(first)[inv]
    starts = np.r_[np.nonzero(first)[0], x.size]
    return 0.5 * (starts[dense] + starts[dense - 1] + 1)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _common_shape(a: np.ndarray, b: np.ndarray):
    """Bring two maps to the smaller of their shapes (area averaging)."""
    if a.shape == b.shape:
        return a, b
    shape = (min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1]))

    def fit(m):
        if m.shape == shape:
            return m
        t = torch.from_numpy(np.ascontiguousarray(m))[None, None]
        return F.interpolate(t, size=shape, mode="area")[0, 0].numpy()
    return fit(a), fit(b)


def rank_correlation(a, b) -> float:
    """Spearman rank correlation between two maps (ties by average ranks). Maps of different
    shapes are first averaged down to the smaller shape. NaN when a map is constant."""
    a, b = _common_shape(_as_map(a, "a"), _as_map(b, "b"))
    return _pearson(_rankdata(a.ravel()), _rankdata(b.ravel()))


def pearson_correlation(a, b) -> float:
    """Pearson correlation between two maps (NaN when a map is constant)."""
    a, b = _common_shape(_as_map(a, "a"), _as_map(b, "b"))
    return _pearson(a.ravel(), b.ravel())


def ssim(a, b, window: int = 7) -> float:
    """Mean structural similarity of two maps, each min-max normalised to [0, 1] first
    (uniform ``window`` x ``window`` windows, the usual constants for a range of 1)."""
    a, b = _common_shape(_as_map(a, "a"), _as_map(b, "b"))
    ta, tb = (torch.from_numpy(_unit(m))[None, None].double() for m in (a, b))
    win = max(1, min(window, a.shape[0], a.shape[1]))

    def avg(t):
        return F.avg_pool2d(t, win, 1)
    mu_a, mu_b = avg(ta), avg(tb)
    va = avg(ta * ta) - mu_a ** 2
    vb = avg(tb * tb) - mu_b ** 2
    cov = avg(ta * tb) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def _unit(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


# ------------------------------------------------------------------------------ model helpers
class eval_mode:
    """``with eval_mode(model):`` runs every module in eval mode (batch-norm statistics are not
    updated, dropout is off) and afterwards gives each module back its own train/eval flag, so
    a model with some parts frozen in eval mode (a frozen BatchNorm in a training model) comes
    back exactly as it was. A model entirely in eval mode is not touched at all."""

    def __init__(self, model):
        self.model = model
        self.modes = {}

    def __enter__(self):
        self.modes = {m: m.training for m in self.model.modules()}
        if any(self.modes.values()):
            self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, training in self.modes.items():
            if m.training != training:
                m.training = training
        self.modes = {}
        return False


_eval_mode = eval_mode  # the old private name


def _inputs(model, image, mode="resize"):
    """(x (1,3,S,S), Preprocess) for an image, an already preprocessed tensor, or an
    ``(x, Preprocess)`` pair (as :func:`attnviz.preprocess.preprocess` returns)."""
    if isinstance(image, tuple) and len(image) == 2 and isinstance(image[1], Preprocess):
        return image[0].detach(), image[1]
    if isinstance(image, torch.Tensor):
        if image.dim() != 4 or image.shape[0] != 1:
            raise MetricError("a tensor input must be one preprocessed image, (1, 3, S, S)")
        s = int(image.shape[-1])
        return image.detach(), Preprocess((s, int(image.shape[-2])), s)
    return preprocess(model, image, mode=mode)


def _logits(model, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits (N, classes) of a batch, run ``batch_size`` at a time."""
    outs = []
    # the lock keeps a concurrent Captum call (whose hooks see every forward) off these passes
    with model_lock(model), torch.no_grad(), eval_mode(model):
        for i in range(0, batch.shape[0], max(1, int(batch_size))):
            outs.append(model(batch[i:i + batch_size]).float())
    return torch.cat(outs).cpu()


def _probs(model, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probabilities (N, classes) of a batch, run ``batch_size`` at a time."""
    return torch.softmax(_logits(model, batch, batch_size), 1)


# ------------------------------------------------------------------------------ randomisation
def randomisation_units(model: nn.Module) -> list[str]:
    """Module paths randomised one after another, top-down: the top-level children from the
    output back to the input, stages (``layer1``..) expanded into their blocks; modules without
    parameters skipped."""
    units = []
    for name, child in reversed(list(model.named_children())):
        if isinstance(child, nn.Sequential) and name.startswith("layer"):
            for sub, block in reversed(list(child.named_children())):
                if any(True for _ in block.parameters()):
                    units.append(f"{name}.{sub}")
        elif any(True for _ in child.parameters()):
            units.append(name)
    return units


def _randomise(module: nn.Module):
    """Re-initialise a module's weights: ``reset_parameters`` where a layer has one (also
    resetting batch-norm statistics), N(0, 1) for parameters owned directly by other modules."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        else:
            for p in m.parameters(recurse=False):
                nn.init.normal_(p)


ALL_ATTENTION = "attention"  # the map source meaning every spatial attention map


def map_source(source, target, opts):
    """f(model, x, pre) -> (H, W) map for a map source: an attribution method, or an attention
    selector (``"attention"`` for every spatial attention map, a kind, a block name, or a
    tap/layer pattern: the matched records' spatial maps, each scaled to [0, 1], averaged)."""

    method = source
    name = str(source).strip().lower()
    if name in METHODS or name in ALIASES:
        def attribution(model, x, pre):
            return explain_tensor(model, x, pre, name, target, **opts).map
        return attribution
    if opts:
        raise UnknownOptionError(f"options {sorted(opts)} apply to attribution methods, not to "
                                 f"the attention maps {source!r}")
    sel = ({"kinds": kinds.spatial_kinds()} if source == ALL_ATTENTION
           else {"kinds": source} if source in kinds.KINDS
           else {"blocks": source} if source in kinds.BLOCKS else {"layers": source})

    def attention(model, x, pre):
        with torch.no_grad(), eval_mode(model), capture(model, example=x, **sel) as rec:
            model(x)
        maps = [to_spatial(r) for r in rec.maps]
        maps = [_unit(pre.to_image(s[0]).astype(np.float64)) for s in maps if s is not None]
        if not maps:
            raise MetricError(f"{method!r} selects no attention map with a spatial layout")
        return np.mean(maps, 0)
    return attention


_map_fn = map_source  # the old private name


def randomisation_check(model: nn.Module, image, source: str = "gradcam", target=None,
                        seed: int = 0, mode: str = "resize", return_maps: bool = False,
                        on_step=None, method: str | None = None, **opts):
    """Cascading model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency
    Maps", 2018) on a deep copy of ``model`` (the original is never touched).

    ``source``: the map checked, an attribution method ("gradcam", ...; ``opts`` go to it) or
    attention (:func:`map_source`: "attention" for every spatial map, a kind such as "spatial",
    a block name, or a tap/layer pattern). ``method`` is the old name of ``source``. Layers
    (:func:`randomisation_units`) are re-initialised one after another from the output down, the
    map recomputed after each for the original model's target. Returns one dict per step: step
    (0 = the trained model), layer (the unit just randomised), spearman, pearson and ssim with
    the original map; with ``return_maps=True``, ``(rows, maps)`` where ``maps[i]`` is the map
    of step i on the model-input grid (float64 (S, S)). ``on_step(step, layer)`` is called
    before each randomisation (raise from it to stop). A map that stays similar while the
    weights are destroyed does not explain the model.
    """
    if method is not None:
        source = method
    x, pre = _inputs(model, image, mode)
    S = x.shape[-1]
    grid = Preprocess((S, S), S)  # compare on the input grid: cheap and size-independent
    probs = _probs(model, x, 1)[0]
    target = int(probs.argmax()) if target is None else check_target(target, probs.numel())
    f = map_source(source, int(target), opts)
    with model_lock(model):  # no other thread's Captum hooks may be copied along
        work = copy.deepcopy(model)
    ref = f(work, x, grid)
    rows = [Row(step=0, layer="(none: original weights)", spearman=1.0, pearson=1.0, ssim=1.0)]
    maps = [ref]
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        for step, unit in enumerate(randomisation_units(work), 1):
            if on_step is not None:
                on_step(step, unit)
            with torch.no_grad():
                _randomise(work.get_submodule(unit))
            m = f(work, x, grid)
            rows.append(Row(step=step, layer=unit, spearman=rank_correlation(ref, m),
                            pearson=pearson_correlation(ref, m), ssim=ssim(ref, m)))
            if return_maps:
                maps.append(m)
    del work
    return (rows, maps) if return_maps else rows


# ------------------------------------------------------------------------------ gate ablation
ABLATION_MODES = ("one", "mean")


def neutral_map(kind: str, t: torch.Tensor, mode: str = "one") -> torch.Tensor:
    """The neutral version of an attention tensor (batch first): gates (channel, spatial, group,
    calibration) all 1 or, with ``mode="mean"``, each sample's mean gate; affinities uniform over
    keys (1/Nk); SK kernel weights equal (1/M)."""
    return get(kind).neutral_value(t, mode)


def gate_ablation(model: nn.Module, image, target=None, neutral: str = "one",
                  batch_size: int = 16, taps=None, image_mode: str = "resize",
                  mode: str | None = None) -> list[dict]:
    """Neutralise each attention tap in turn (:func:`neutral_map`, through
    :func:`attnviz.capture.intervene`) and report the change of the target class's probability.

    Each ablation is one sample of a batch (the unablated input is one more), so a whole model is
    scored in one or a few forward passes. ``taps``: tap paths to ablate (default: all). Returns
    one :class:`Row` (a dict) per tap in forward order: layer, tap, block, kind, target,
    p_before, p_after, delta (p_after - p_before), and the same for the target's logit
    (logit_before, logit_after, delta_logit), which still shows an effect when a confident
    model's probability barely moves. The model is left exactly as it was: no weights touched,
    no hooks left.

    ``neutral``: what replaces a tap, "one" (gates fully open; softmax weights uniform) or "mean"
    (each sample's mean gate); ``mode`` is its old name. ``image_mode``: the preprocessing
    geometry ("resize" or "center_crop").
    """
    if mode is not None:
        neutral = mode
    if neutral not in ABLATION_MODES:
        raise UnknownOptionError(f"unknown neutral value (ablation mode) {neutral!r}; choose "
                                 f"from {ABLATION_MODES}")
    x, _ = _inputs(model, image, image_mode)
    all_taps = list_taps(model)
    if taps is not None:
        names = {n for n, _, _ in all_taps}
        unknown = [t for t in taps if t not in names]
        if unknown:
            raise LayerError(f"no attention tap named {unknown}; taps are {sorted(names)[:20]}")
        all_taps = [t for t in all_taps if t[0] in set(taps)]
    jobs = [None] + all_taps  # job 0: the model as it is
    logits = []
    bs = max(2, int(batch_size))
    for i in range(0, len(jobs), bs):
        chunk = jobs[i:i + bs]
        replace = {job[0]: _replace_row(row, job[2], neutral)
                   for row, job in enumerate(chunk) if job is not None}
        with intervene(model, replace):
            logits.append(_logits(model, x.expand(len(chunk), -1, -1, -1).contiguous(),
                                  len(chunk)))
    logits = torch.cat(logits)
    probs = torch.softmax(logits, 1)
    if target is None:
        target = int(probs[0].argmax())
    else:
        target = check_target(target, probs.shape[1])
    p0, z0 = float(probs[0, target]), float(logits[0, target])
    out = []
    for (tap, block, kind), p, z in zip(all_taps, probs[1:, target].tolist(),
                                        logits[1:, target].tolist()):
        out.append(Row(layer=tap.rsplit(".", 1)[0], tap=tap, block=block, kind=kind,
                       target=int(target), p_before=p0, p_after=float(p), delta=float(p) - p0,
                       logit_before=z0, logit_after=float(z), delta_logit=float(z) - z0))
    return out


def _replace_row(row: int, kind: str, mode: str):
    def fn(t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        out[row] = neutral_map(kind, t[row:row + 1], mode)[0]
        return out
    return fn


__all__ = ["ABLATION_MODES", "ALL_ATTENTION", "Row", "energy_pointing_game", "eval_mode",
           "gate_ablation",
           "map_source", "neutral_map", "pearson_correlation", "pointing_game",
           "randomisation_check", "randomisation_units", "rank_correlation", "ssim"]
