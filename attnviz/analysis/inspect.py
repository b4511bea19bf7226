"""One analysis of one image: prediction, every attention map, attributions and scores.

    a = attnviz.inspect(model, "cat.jpg", attributions=("gradcam", "integrated_gradients"))
    a.top_k                       # [("cat", 0.91), ...]
    a.maps                        # [AttentionMap, ...] raw tensors from the capture
    a.spatial_map(a.maps[1])      # float32 (H, W) at the image's resolution
    a.affinity_map(rec, x, y)     # one query's affinity row, query (x, y) in image pixels
    a.attributions["gradcam"].map

Shared work: the capture rides on the forward pass Captum makes for Grad-CAM, and that pass
also gives the logits; Grad-CAM of the predicted class attributes the top logit. So capture +
prediction + Grad-CAM cost one forward and one backward pass. Without Grad-CAM, one no_grad
forward gives the prediction and the capture.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .. import kinds
from ..data.batch import (DEFAULT_BATCH, as_input, chunks, is_batch, pass_target,
                    targets_for)
from ..capture.recorder import AttentionMap, capture
from ..callable_module import make_callable
from ..errors import (AttnvizError, InspectError, LayerError, TargetError,  # noqa: F401
                     UnknownOptionError, check_target)
from ..attribution.explain import Attribution, canonical_method, get_explainer, model_lock, to_map
from ..capture.maps import affinity_row, has_spatial, to_spatial
from ..data.images import Preprocess, load_image, model_device, preprocess
from ..scores.metrics import rank_correlation
from ..models.info import describe
from ..models.info import defaults_note, info_of
from .. import scores as metrics
from ..scores.faithfulness import oracle_map
from .masks import _load_mask, box_mask, load_mask  # noqa: F401 - public here too


@dataclass
class Analysis:
    """The result of :func:`inspect`. Maps are at the image's resolution; raw tensors in
    ``maps`` (capture records) and in each attribution's ``raw``.

    scores (with ``scores=True``): ``pointing`` / ``energy`` {map label: value} when a mask was
    given; ``deletion_auc`` / ``insertion_auc`` {attribution method: AUC}, with
    ``random_deletion_auc`` / ``random_insertion_auc`` the same scores for a seeded random map
    of the method's grid and ``removal`` how removed pixels were filled; ``rank_correlation``
    {attention map label: Spearman with the first attribution (Grad-CAM by default)}.
    """

    image: np.ndarray
    preprocess: Preprocess
    logits: np.ndarray
    probs: np.ndarray
    top_k: list
    target: int
    maps: list = field(default_factory=list)
    attributions: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    model_name: str = ""
    timings: dict = field(default_factory=dict)
    classes: list | None = None
    notes: list = field(default_factory=list)  # what was assumed about the model, if anything
    input: torch.Tensor | None = field(default=None, repr=False)  # the (1, 3, S, S) model input

    # ---------------------------------------------------------------------------- lookups
    @property
    def target_name(self) -> str:
        return _class_name(self.classes, self.target)

    @property
    def spatial_records(self) -> list[AttentionMap]:
        """Capture records with a spatial layout (spatial, group, calibration, affinity)."""
        return [r for r in self.maps if has_spatial(r)]

    def record(self, key) -> AttentionMap:
        """A capture record by index, tap path, layer path or label."""
        if isinstance(key, AttentionMap):
            return key
        if isinstance(key, int):
            return self.maps[key]
        for r in self.maps:
            if key in (r.tap, r.label):
                return r
        hits = [r for r in self.maps if r.layer == key]
        if len(hits) == 1:
            return hits[0]
        raise LayerError(f"no single attention map named {key!r}; maps are "
                           f"{[r.tap for r in self.maps][:20]}")

    # ---------------------------------------------------------------------------- maps
    def input_grid(self) -> Preprocess:
        """The geometry of the model-input grid (S x S), where scores compare maps."""
        S = int(self.preprocess.input_size)
        return Preprocess((S, S), S)

    def agreement(self, rec, method: str | None = None) -> float:
        """Spearman rank correlation of an attention record with an attribution (default: the
        first one), both on the model-input grid; NaN when a map is constant."""
        rec = self.record(rec)
        method = canonical_method(method) if method else next(iter(self.attributions))
        if method not in self.attributions:
            raise UnknownOptionError(f"the analysis has no {method} attribution; it has "
                                     f"{list(self.attributions)}")
        m = to_spatial(rec)
        if m is None:
            raise InspectError(f"{rec.label} is a {rec.kind} map with no spatial layout")
        grid = self.input_grid()
        return rank_correlation(grid.to_image(m[0]),
                                to_map(self.attributions[method].raw, method, grid))

    def spatial_map(self, rec, reduce: str = "mean") -> np.ndarray:
        """float32 (H, W) at the image's resolution for a record with a spatial reduction
        (spatial; group / calibration: mean or max over factors; affinity: column mean)."""
        rec = self.record(rec)
        m = to_spatial(rec, reduce)
        if m is None:
            raise InspectError(f"{rec.label} is a {rec.kind} map with no spatial layout; it is "
                               "shown as a chart, not over the image")
        return self.preprocess.to_image(m[0])

    def affinity_map(self, rec, x: float, y: float) -> np.ndarray:
        """The affinity row of the query nearest to image pixel (x, y), over the key grid,
        as float32 (H, W) at the image's resolution."""
        rec = self.record(rec)
        if not kinds.of(rec).queried:
            raise InspectError(f"{rec.label} is not a position affinity map")
        fy, fx = self.preprocess.point_to_input(float(x), float(y))
        if not (0 <= fy <= 1 and 0 <= fx <= 1):
            H, W = self.image.shape[:2]
            raise InspectError(f"the query ({x:g}, {y:g}) lies outside the region the model saw "
                               f"(image {W} x {H}, crop box {self.preprocess.crop_box})")
        row, _ = affinity_row(rec, min(fy, 1 - 1e-9), min(fx, 1 - 1e-9))
        return self.preprocess.to_image(row[0])

    # ---------------------------------------------------------------------------- export
    def to_dict(self) -> dict:
        """A JSON-safe summary (no arrays): prediction, maps' metadata, scores, timings."""
        H, W = self.image.shape[:2]
        return _json_safe({
            "model": self.model_name,
            "image_size": [W, H],
            "preprocess": asdict(self.preprocess),
            "target": self.target,
            "target_name": self.target_name,
            "top_k": [[n, p] for n, p in self.top_k],
            "maps": [{"layer": r.layer, "tap": r.tap, "block": r.block, "kind": r.kind,
                      "shape": list(r.shape), "spatial": has_spatial(r),
                      "meta": {k: v for k, v in r.meta.items() if k != "query_index"}}
                     for r in self.maps],
            "attributions": {k: {"method": a.method, "target": a.target, "layer": a.layer,
                                 "raw_shape": list(a.raw.shape),
                                 "max": float(a.map.max()) if a.map.size else 0.0}
                             for k, a in self.attributions.items()},
            "scores": self.scores,
            "notes": self.notes,
            "timings_ms": self.timings,
        })

    def __repr__(self):
        return (f"Analysis({self.model_name}, target={self.target_name!r}, maps={len(self.maps)}, "
                f"attributions={list(self.attributions)}, image={self.image.shape[1]}x"
                f"{self.image.shape[0]})")


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _json_safe(v.tolist())
    if isinstance(v, np.ndarray):
        return _json_safe(v.tolist())
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


def _class_name(classes, i: int) -> str:
    if classes and 0 <= i < len(classes):
        return str(classes[i])
    return f"class {i}"


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def _check_capture_opts(opts: dict) -> None:
    import inspect as _inspect
    known = set(_inspect.signature(capture).parameters) - {"model"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise UnknownOptionError(f"unknown capture option(s) {unknown}; options are "
                                 f"{sorted(known)}")


def inspect(model, image, attributions=("gradcam",), target=None, top_k: int = 5, mask=None,
            scores: bool | dict = False, capture_opts: dict | None = None,
            explain_opts: dict | None = None, mode: str = "resize",
            batch_size: int = DEFAULT_BATCH, info=None):
    """Analyse one image with one model.

    Args:
        image: a PIL image, an HxWx3 uint8 array, or a file path; any size and PIL mode. A batch
            (a list of images, a (B, H, W, 3) array or a normalised (B, 3, S, S) tensor, see
            :mod:`attnviz.batch`) gives a list of Analyses, one per image, computed in passes of
            up to ``batch_size`` images and equal to the per-image results.
        attributions: methods from :data:`attnviz.explain.METHODS` ("gradcam" shares the
            forward pass with the capture).
        target: class to attribute (None: the predicted class); for a batch, one class for all
            or one class (or None) per image.
        top_k: number of (class name, probability) pairs in ``top_k``.
        mask: object mask (bool array at the image's size, or a mask image) for localisation
            scores; for a batch, one mask (or None) per image.
        scores: compute scores (see :class:`Analysis`); True, or a dict of options for the
            deletion / insertion curves (``steps``, ``batch_size``; fewer steps for big models
            on a CPU; ``removal``: "road" (default), "mean", "blur", "black"; ``seed``).
        capture_opts: keyword arguments for :func:`attnviz.capture` (layers, kinds, max_queries,
            budget_mb, ...). In a batch, ``budget_mb`` applies to each batched matrix.
        explain_opts: {method: {option: value}} for the attributions (``layer`` for Grad-CAM).
        mode: preprocessing geometry, "resize" (default) or "center_crop".
        info: a :class:`attnviz.ModelInfo` for a model that carries none (input size, mean/std,
            class names, Grad-CAM layer); kept for the model's later analyses (see
            :func:`attnviz.describe`). Without it, any ``nn.Module`` is analysed with defaults
            that each Analysis's ``notes`` lists.
    """
    if info is not None:
        describe(model, info)
    methods = [canonical_method(m) for m in (attributions or ())]
    methods = list(dict.fromkeys(methods))
    explain_opts = {canonical_method(k): dict(v) for k, v in (explain_opts or {}).items()}
    capture_opts = dict(capture_opts or {})
    _check_capture_opts(capture_opts)
    curve_opts = None
    if scores:
        curve_opts = dict(scores) if isinstance(scores, dict) else {}
        unknown = set(curve_opts) - {"steps", "batch_size", "removal", "seed"}
        if unknown:
            raise UnknownOptionError(f"unknown score option(s) {sorted(unknown)}; use steps, "
                                     "batch_size, removal, seed")
    single = not is_batch(image)
    t0 = time.perf_counter()
    if single:
        pil = load_image(image)
        load_ms = _ms(t0)
        t0 = time.perf_counter()
        x, pre = preprocess(model, pil, mode=mode)
        x, pres, pils = x, [pre], [pil]
    else:
        x, pres, pils = as_input(model, image, mode)
        load_ms = 0.0
    prep_ms = _ms(t0)
    n = x.shape[0]
    targets = targets_for(target, n)
    masks = [mask] if single else ([None] * n if mask is None else list(mask))
    if len(masks) != n:
        raise InspectError(f"got {len(masks)} masks for {n} images; give one (or None) per image")
    out = []
    for sl in chunks(n, batch_size):
        got = _analyse(model, x[sl], pres[sl], pils[sl], targets[sl], methods, top_k,
                       capture_opts, explain_opts)
        for i, a in enumerate(got):
            a.timings = {"load": load_ms, "preprocess": prep_ms, **a.timings}
            if not single:
                a.timings["batch"] = sl.stop - sl.start
            if curve_opts is not None:
                t0 = time.perf_counter()
                a.scores = score_analysis(model, a, masks[sl.start + i], **curve_opts)
                a.timings["scores"] = _ms(t0)
            out.append(a)
    return out[0] if single else out


def _analyse(model, x, pres, pils, targets, methods, top_k, capture_opts, explain_opts):
    """Analyses of one pass over the batch ``x``: capture + logits (+ Grad-CAM, whose pass it
    is), then the other attributions for the targets found."""
    n = x.shape[0]
    info = info_of(model)
    timings = {}
    t0 = time.perf_counter()
    gc = {}
    with model_lock(model):
        if any(t is None for t in targets) and not all(t is None for t in targets):
            with torch.no_grad():  # mixed targets: the unset ones are the predicted classes
                pred = model(x).argmax(1).tolist()
            targets = [p if t is None else t for t, p in zip(targets, pred)]
        tgt_arg = pass_target(targets)
        if "gradcam" in methods:
            opts = dict(explain_opts.get("gradcam", {}))
            exp = get_explainer(model, "gradcam", opts.pop("layer", None))
            # discovery at this batch's geometry before Captum's pass (not inside it)
            with capture(model, example=x, **capture_opts) as rec:
                raw, tgt, logits = exp.attribute_with_logits(x, tgt_arg, **opts)
            gc = {"raw": raw, "layer": exp.layer_name,
                  "opts": dict(explain_opts.get("gradcam", {}))}
            stage = "forward_capture_gradcam"
        else:
            with torch.no_grad(), capture(model, example=x, **capture_opts) as rec:
                logits = model(x)
            stage = "forward_capture"
    timings[stage] = _ms(t0)
    logits = logits.float().cpu()
    probs = torch.softmax(logits, 1)
    n_classes = probs.shape[1]
    final = [int(probs[i].argmax()) if t is None else check_target(t, n_classes)
             for i, t in enumerate(targets)]
    classes = list(info.classes) if info is not None and info.classes else None
    k = max(0, min(int(top_k), n_classes))
    top_p, top_i = probs.topk(k, dim=1)
    atts = [{} for _ in range(n)]
    if gc:
        for i in range(n):
            r = gc["raw"][i:i + 1] if n == 1 else gc["raw"][i:i + 1].clone()
            atts[i]["gradcam"] = Attribution(to_map(r, "gradcam", pres[i]), r, "gradcam",
                                             final[i], gc["layer"], dict(gc["opts"]))
    for m in methods:
        if m == "gradcam":
            continue
        t0 = time.perf_counter()
        opts = dict(explain_opts.get(m, {}))
        exp = get_explainer(model, m, opts.pop("layer", None))
        raw, _, _ = exp.attribute_with_logits(x, final, **opts)
        for i in range(n):
            r = raw[i:i + 1] if n == 1 else raw[i:i + 1].clone()
            atts[i][m] = Attribution(to_map(r, m, pres[i]), r, m, final[i], exp.layer_name,
                                     dict(explain_opts.get(m, {})))
        timings[m] = _ms(t0)
    name = getattr(info, "name", type(model).__name__)
    notes = [defaults_note(model)] if defaults_note(model) else []
    if classes and len(classes) != n_classes:
        notes.append(f"{len(classes)} class names for {n_classes} outputs; the others are "
                     "named by index")
    if gc and notes and "Grad-CAM" in notes[0]:
        notes.append(f"Grad-CAM layer: {gc['layer']}")
    out = []
    for i in range(n):
        top = [(_class_name(classes, int(j)), float(p)) for p, j in zip(top_p[i], top_i[i])]
        image = np.asarray(pils[i]) if pils[i] is not None else _denormalise(x[i], pres[i])
        maps = [_one_sample(r, i, n) for r in rec.maps]
        out.append(Analysis(image, pres[i], logits[i].numpy(), probs[i].numpy(), top, final[i],
                            maps, atts[i], {}, name, dict(timings), classes, list(notes),
                            x[i:i + 1].detach()))
    return out


def _one_sample(rec: AttentionMap, i: int, n: int) -> AttentionMap:
    """Sample ``i`` of a batched capture record, as a record of that image alone."""
    if n == 1:
        return rec
    meta = dict(rec.meta)
    for key in ("bytes_full", "bytes_kept"):
        if key in meta:
            meta[key] = meta[key] // n
    return AttentionMap(rec.layer, rec.tap, rec.block, rec.kind,
                        rec.tensor[i:i + 1].clone(), meta)


def _denormalise(x: torch.Tensor, pre: Preprocess) -> np.ndarray:
    """A normalised (3, S, S) input back to an (S, S, 3) uint8 picture."""
    m = torch.as_tensor(pre.mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.as_tensor(pre.std, dtype=torch.float32).view(3, 1, 1)
    img = (x.detach().float().cpu() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)
    return img.permute(1, 2, 0).contiguous().numpy()


ORACLE = "oracle (mask)"  # the mask's own map, scored beside the attributions


def score_analysis(model, analysis: Analysis, mask=None, faithfulness: bool = True,
                   attributions=None, reference: str | None = None, steps: int = 32,
                   batch_size: int = 33, removal: str | None = None, seed: int = 0) -> dict:
    """Score an existing :class:`Analysis` of ``model`` (what ``inspect(..., scores=...)`` puts
    in ``analysis.scores``), on the model input the analysis kept: no second preprocessing.

    Returns ``pointing`` / ``energy`` {map label or attribution: value} when a ``mask`` (bool
    array or mask image at the image's size) is given; with ``faithfulness``,
    ``deletion_auc`` / ``insertion_auc`` {attribution: AUC} for ``attributions`` (default:
    every attribution of the analysis; ``steps``, ``batch_size``, ``removal``, ``seed`` for the
    curves) beside ``random_deletion_auc`` / ``random_insertion_auc`` (a seeded random map of
    the attribution's grid), ``removal`` and the full rows in ``faithfulness``; with a ``mask``
    too, ``oracle``: the same row for the map the mask implies
    (:func:`attnviz.scores.faithfulness.oracle_map`), the score a map that knew the object would
    get; and
    ``rank_correlation`` {attention map label: Spearman with the ``reference`` attribution
    (default: the first one)}, named in ``rank_correlation_with``. Forward passes take the
    model's lock themselves.
    """
    a = analysis
    out = {}
    m = None
    if mask is not None:
        m = _load_mask(mask, a.image.shape[:2])
        if not m.any():
            raise InspectError("the mask marks no pixel as the object")
        named = [(r.label, a.spatial_map(r)) for r in a.spatial_records]
        named += [(k, att.map) for k, att in a.attributions.items()]
        out["pointing"] = {n: metrics.pointing_game(v, m) for n, v in named}
        out["energy"] = {n: metrics.energy_pointing_game(v, m) for n, v in named}
    if not a.attributions:
        return out
    names = list(a.attributions) if attributions is None else \
        [canonical_method(k) for k in attributions]
    missing = [k for k in names + ([canonical_method(reference)] if reference else [])
               if k not in a.attributions]
    if missing:
        raise UnknownOptionError(f"the analysis has no {missing} attribution; it has "
                                 f"{list(a.attributions)}")
    x = a.input
    if x is None and faithfulness:  # an Analysis built by hand: its input from its image
        x, _ = preprocess(model, a.image, mode=a.preprocess.mode)
    if x is not None:
        x = x.to(model_device(model))
    grid = a.input_grid()  # faithfulness and agreement on the model-input grid
    if faithfulness:
        # each AUC beside the same AUC for a seeded random map of the method's grid
        grid_maps = {k: to_map(a.attributions[k].raw, k, grid) for k in names}
        grids = {k: tuple(a.attributions[k].raw.shape[-2:]) for k in names}
        if m is not None:  # scored in the same batched curves, on the per-pixel grid
            on_input = a.preprocess.to_input(m.astype(np.float32)).numpy() >= 0.5
            if on_input.any():
                grid_maps[ORACLE] = oracle_map(on_input)
        curve_opts = dict(steps=steps, batch_size=batch_size, seed=seed)
        if removal is not None:
            curve_opts["removal"] = removal
        faith = metrics.faithfulness(model, (x, grid), grid_maps, grids, a.target, **curve_opts)
        if ORACLE in faith:
            out["oracle"] = dict(faith.pop(ORACLE))
        out["deletion_auc"] = {k: f.deletion for k, f in faith.items()}
        out["insertion_auc"] = {k: f.insertion for k, f in faith.items()}
        out["random_deletion_auc"] = {k: f.random_deletion for k, f in faith.items()}
        out["random_insertion_auc"] = {k: f.random_insertion for k, f in faith.items()}
        out["removal"] = next(iter(faith.values())).removal
        out["faithfulness"] = {k: dict(f) for k, f in faith.items()}
    ref_name = canonical_method(reference) if reference else next(iter(a.attributions))
    out["rank_correlation_with"] = ref_name
    out["rank_correlation"] = {r.label: a.agreement(r, ref_name) for r in a.spatial_records}
    return out

make_callable(__name__, inspect)
