"""The Inspect tab's Scores table: pointing game and energy (when the object mask is known),
deletion / insertion AUC (ROAD removal, each beside a seeded random map's score, "0.12 (random
0.41)") and the rank correlation of each attention map with the attribution, computed once per
analysis and kept on the session.

    sess.scores = compute_scores(sess, faithfulness=True)
    scores_table(sess)      # a DataFrame with SCORE_HEADERS
"""
from __future__ import annotations

import numpy as np

from . import views as V
from .analysis import count, shown_method
from .components import gpu
from .model_cache import MODELS
from .sessions import Session

SCORE_STEPS = 16  # deletion / insertion curve steps in the app (the library default is 32)
MEANINGS = {
    "pointing game": "hit when the map's peak lies on the object (mask known for the examples)",
    "energy in object": "share of the map's positive mass inside the object mask (higher is "
                        "better)",
    "deletion AUC": "class probability as the most attributed pixels are removed first, each "
                    "replaced by ROAD's noisy linear imputation (the weighted mean of its "
                    "neighbours plus a little noise, so no silhouette is left); lower means the "
                    "map found what the prediction rests on; in brackets the same score for a "
                    "seeded random map of the same grid; when the object's mask is known, the "
                    "oracle row removes the object first (the score a map that knew it gets)",
    "insertion AUC": "class probability as the most attributed pixels are restored first, the "
                     "rest imputed from them (ROAD); higher is better; in brackets a seeded "
                     "random map's score",
    "rank correlation": "Spearman correlation of this attention map with the attribution: "
                        "1 = same pixel ranking, 0 = unrelated, -1 = opposite",
}
SCORE_HEADERS = ["score", "map", "value", "what it means"]
ORACLE_NAME = "oracle: the object's mask"  # its deletion / insertion rows, when a mask is known
NOT_COMPUTED = "not computed"
_HOW = (" — press “Deletion / insertion” to compute it (slow for a full-size model on a CPU)")
# the columns' share of the table's width (the value column holds "hit", "0.873" or a hint)
SCORE_WIDTHS = ["15%", "28%", "20%", "37%"]


def _scores(sess: Session, faithfulness: bool) -> dict:
    """The table's rows from the library's :func:`attnviz.score_analysis` of the session's
    analysis (its own model input; the metrics take the model's lock themselves)."""
    from .. import scores as metrics
    from ..analysis.inspect import score_analysis
    a = _with_full_maps(sess.analysis)
    loaded = MODELS.get(sess.model_name)
    method = shown_method(sess)
    s = score_analysis(loaded.model, a, sess.mask, faithfulness, attributions=[method],
                       reference=method, steps=SCORE_STEPS, batch_size=SCORE_STEPS + 1)
    out = {"attribution": method, "faithfulness": faithfulness, "rows": []}
    rows = out["rows"]
    spatial = a.spatial_records
    head = V.headline_record(a.maps)
    mname = V.method_name(method)
    if "pointing" in s:
        named = [(V.map_caption(r, a.maps), r.label) for r in spatial] + [(mname, method)]
        for n, key in named:
            rows.append(["pointing game", n, "hit" if s["pointing"][key] else "miss"])
        for n, key in (named[-1:] if head is None else
                       [(V.map_caption(head, a.maps), head.label), named[-1]]):
            rows.append(["energy in object", n, round(float(s["energy"][key]), 3)])
    if faithfulness:
        f = s["faithfulness"][method]
        o = s.get("oracle")  # the map a mask implies: what a map that knew the object scores
        # each score beside the same score for a seeded random map of the method's grid
        for key, label in (("deletion", "deletion AUC"), ("insertion", "insertion AUC")):
            rows.append([label, mname, metrics.with_reference(f[key], f[f"random_{key}"])])
            if o is not None:
                rows.append([label, ORACLE_NAME,
                             metrics.with_reference(o[key], o[f"random_{key}"])])
        out["faithfulness_scores"] = {method: dict(f, steps=SCORE_STEPS)}
        if o is not None:
            out["faithfulness_scores"]["oracle"] = dict(o, steps=SCORE_STEPS)
    else:
        for k in ("deletion AUC", "insertion AUC"):
            rows.append([k, mname, NOT_COMPUTED])
    for r in spatial:
        rho = V.finite(s["rank_correlation"][r.label])
        rows.append(["rank correlation", f"{V.map_caption(r, a.maps)} vs {mname}",
                     "n/a" if rho is None else round(rho, 3)])
    return out


def _with_full_maps(a):
    """The analysis with each attribution's full-size map (the session keeps only its maximum,
    ``state._shrink_maps``), rebuilt from ``raw`` on the analysis grid: a shallow copy, the
    session's stays small."""
    import dataclasses
    atts = {k: att if np.ndim(att.map) == 2 else
            dataclasses.replace(att, map=a.preprocess.to_image(V.attribution_grid(a, k)))
            for k, att in a.attributions.items()}
    return dataclasses.replace(a, attributions=atts)


compute_scores = gpu(_scores)


def wants_faithfulness(sess: Session, full: bool) -> bool:
    """Deletion / insertion run at once for lite models or on a GPU; for a full-size model on a
    CPU only on request (``full``)."""
    from .model_cache import DEVICE
    return bool(full or MODELS.get(sess.model_name).is_lite or DEVICE.type == "cuda")


def update_scores(sess: Session, full: bool = False) -> None:
    """Compute the session's scores unless they are already there for its attribution."""
    want = shown_method(sess)
    faith = wants_faithfulness(sess, full)
    if sess.scores.get("attribution") != want or (faith and not sess.scores.get("faithfulness")):
        count("scores")
        sess.scores = compute_scores(sess, faith)


def scores_table(sess: Session | None):
    """The score rows as a DataFrame (the score's name and meaning on its first row only);
    empty without a session."""
    import pandas as pd
    rows, seen = [], set()
    for s, m, v in (sess.scores.get("rows", []) if sess is not None else []):
        meaning = MEANINGS[s] + (_HOW if v == NOT_COMPUTED else "") if s not in seen else ""
        rows.append([s if s not in seen else "", m, v, meaning])
        seen.add(s)
    return pd.DataFrame(rows, columns=SCORE_HEADERS)
