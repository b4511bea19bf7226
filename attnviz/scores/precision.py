"""Agreement of two analyses of one image, e.g. float32 and a reduced precision (bfloat16
autocast): whether the cheaper one says the same thing.

    ref = inspect(model, img)
    with torch.autocast("cuda", torch.bfloat16):
        low = inspect(model, img)
    check = precision_agreement(ref, low)     # {"same_top1", "max_prob_diff", "min_spearman", ...}
    check["exact_enough"]                     # within TOLERANCE on every count

Compared: the top-1 class, the class probabilities (largest absolute difference), and the rank
(Spearman) correlation of every spatial attention map and of the Grad-CAM map. Works for any
module naming: the maps are paired by their order in the two analyses of one model.
"""
from __future__ import annotations

import numpy as np

from ..capture.maps import to_spatial
from .metrics import rank_correlation

TOLERANCE = {"prob": 0.01, "spearman": 0.98}


def _spearman(a, b) -> float | None:
    """Rank correlation of two maps, None when ``a`` is constant or the result is NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if float(a.std()) <= 1e-6:
        return None
    r = float(rank_correlation(a, b))
    return r if np.isfinite(r) else None


def precision_agreement(ref, low, dtype: str = "bfloat16", tolerance: dict | None = None) -> dict:
    """How closely analysis ``low`` agrees with ``ref`` (both :class:`attnviz.inspect.Analysis`
    of the same model and image); ``exact_enough`` when within ``tolerance`` (TOLERANCE)."""
    tol = {**TOLERANCE, **(tolerance or {})}
    rhos = []
    for a, b in zip(ref.maps, low.maps, strict=False):  # one model: the same records
        sa, sb = to_spatial(a), to_spatial(b)
        if sa is not None and sb is not None:
            rhos.append(_spearman(sa[0].float().cpu().numpy(), sb[0].float().cpu().numpy()))
    if "gradcam" in ref.attributions and "gradcam" in low.attributions:
        rhos.append(_spearman(ref.attributions["gradcam"].map, low.attributions["gradcam"].map))
    rhos = [r for r in rhos if r is not None]
    pa, pb = np.asarray(ref.probs, np.float64), np.asarray(low.probs, np.float64)
    out = {"dtype": dtype,
           "same_top1": int(np.argmax(pa)) == int(np.argmax(pb)),
           "max_prob_diff": float(np.abs(pa - pb).max()),
           "min_spearman": min(rhos) if rhos else 1.0}
    out["exact_enough"] = bool(out["same_top1"] and out["max_prob_diff"] <= tol["prob"]
                               and out["min_spearman"] >= tol["spearman"])
    return out
