"""What the Inspect tab shows for a session, as values named after the tab's components (the keys
are the names :mod:`attnviz.app.inspect_tab` gives them on ``ui``):

    headline(sess, "per map")   # {"head_att": ..., "head_attr": ..., "agreement": ...,
                                #  "gal_all": [...], "legend": ...}
    kind_views(sess, "shared")  # {"tab_spatial": gr.Tab(...), "gal_spatial": [...],
                                #  "plot_spatial": fig, ..., "kind_note": ...}

The kind tabs are one table (:data:`KIND_TABS`): a tab per kind with the layers' overlays (kinds
with a spatial map) and a Plotly figure; the components and the values are derived from it.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import kinds as K
from ..maps import has_spatial
from ..render import figures as F
from . import views as V
from .analysis import agreement, shown_method, summary
from .state import MODELS, Session


@dataclass(frozen=True)
class KindTab:
    """One tab of the Inspect tab's kind tabs: its components are ``tab_<key>``,
    ``gal_<key>`` (when ``gallery`` names one) and ``plot_<key>``."""

    key: str
    title: str
    kinds: tuple  # record kinds shown in the tab
    gallery: str | None  # the gallery's label; None: the kind has no map over the image
    plot: str  # the figure's label


_LABELS = {
    "spatial": ("Spatial attention (click one for its figure)", "Spatial map (hover for values)"),
    "channel": (None, "Channel gates per layer"),
    "kernel": (None, "SK kernel selection"),
    "group": ("SGE group factors, mean over groups (click one for its groups)", "Group factors"),
    "affinity": ("Affinity of the query (click the image to move it)", "Affinity explorer"),
    "calibration": ("SCNet self-calibration gates (mean over channels)", "Calibration gate"),
}
KIND_TABS = tuple(KindTab(key, title, tuple(kinds), _LABELS[key][0] if key in V.GALLERY_KINDS
                          else None, _LABELS[key][1])
                  for key, title, kinds in V.KIND_TABS)
# every output the kind tabs fill, in a stable order (the /maps endpoint returns them so)
KIND_OUTPUTS = tuple(
    [n for t in KIND_TABS for n in (f"tab_{t.key}", *((f"gal_{t.key}",) if t.gallery else ()),
                                     f"plot_{t.key}")]
    + ["plot_chaff", "kind_note", "kind_tabs", "qx", "qy"])
HEADLINE_OUTPUTS = ("head_att", "head_attr", "agreement", "gal_all", "legend")


# ------------------------------------------------------------------------------ headline
def headline(sess: Session, scale: str) -> dict:
    """The headline overlays (attention, attribution), the details line, the gallery of every
    overlay and the colour bar."""
    a = sess.analysis
    norms = V.scale_norms(a.maps, scale)
    shared = next(iter(norms.values())) if scale == "shared" and norms else None
    rec = V.headline_record(a.maps)
    method = shown_method(sess)
    attr_map = V.attribution_grid(a, method)
    attr_img, arng = V.draw(sess.display, attr_map, V.attribution_norm(method))
    pending = sess.method != method
    attr_line = (f"**{V.method_name(method)}** for class '{a.target_name}', range "
                 f"{V.fmt_range(*arng)} (own scale)"
                 + (f" — *{V.method_name(sess.method)} is being computed…*" if pending else ""))
    gallery = []
    if rec is None:
        att = gr.Image(value=None, label="No spatial attention map in this model")
        lines = [f"**Attention:** {sess.model_name} has no spatial attention map (see the "
                 "Channel / Kernel selection tabs).", attr_line,
                 f"**Agreement:** n/a — no spatial attention map to compare with "
                 f"{V.method_name(method)}."]
    else:
        img, rng = V.draw(sess.display, V.grid_map(rec), norms[rec.tap])
        att = gr.Image(value=img, label=f"Attention · {V.short_layer(rec)} {V.block_name(rec)}")
        rho = agreement(sess, rec, method)
        rho_s = "n/a (a constant map)" if rho is None else f"{rho:+.2f}"
        lines = [f"**Attention:** {V.map_caption(rec)}, range {V.fmt_range(*rng)} — the most "
                 "concentrated map of the deepest stage", attr_line,
                 f"**Agreement** (Spearman ρ between the two): **{rho_s}** "
                 "<span class='av-muted'>1 = same pixel ranking, 0 = unrelated</span>"]
    for r in a.maps:
        if has_spatial(r):
            img, rng = V.draw(sess.display, V.grid_map(r), norms[r.tap])
            gallery.append((img, f"{V.map_caption(r)} · {V.fmt_range(*rng)}"))
    gallery.append((attr_img, f"{V.method_name(method)} · {V.fmt_range(*arng)}"))
    attr = gr.Image(value=attr_img, label=f"{V.method_name(method)} → {a.target_name}"
                                          + (" (computing…)" if pending else ""))
    return {"head_att": att, "head_attr": attr, "agreement": "<br>".join(lines),
            "gal_all": gallery, "legend": V.legend(scale, shared)}


def inspect_values(sess: Session, scale: str) -> dict:
    """Everything the analysis step shows: prediction, badge, headline, summary, state."""
    loaded = MODELS.get(sess.model_name)
    return {"top5": V.top_k_dict(sess.analysis), "badge": V.badge_md(loaded),
            **headline(sess, scale), "summary": summary(sess), "state": sess}


# ------------------------------------------------------------------------------ kind tabs
def query_display(sess: Session) -> tuple[float, float]:
    """The affinity query in display pixels (default: the image centre)."""
    h, w = sess.analysis.image.shape[:2]
    x, y = sess.query if sess.query is not None else ((w - 1) / 2, (h - 1) / 2)
    return x * sess.scale, y * sess.scale


def record_figure(rec, sess: Session, scale: str):
    """The Plotly figure of one record with a map (spatial, group, affinity, calibration)."""
    if rec is None:
        return None
    h, w = sess.analysis.image.shape[:2]
    query = sess.query if sess.query is not None else ((w - 1) / 2, (h - 1) / 2)
    return V.map_figure(rec, sess.analysis.maps, scale == "shared", query, (h, w))


def affinity_gallery(sess: Session, scale: str) -> list:
    recs = V.queried_records(sess.analysis.maps)
    qx, qy = query_display(sess)
    out = []
    shared = None
    if scale == "shared" and recs:
        from ..maps import affinity_row
        from ..render.scale import shared_range
        h, w = sess.display.shape[:2]
        shared = shared_range([affinity_row(r, qy / h, qx / w)[0][0].float().numpy()
                               for r in recs])
    for r in recs:
        img, rng = V.draw_affinity(sess.display, r, qx, qy, shared or "minmax")
        ox, oy = qx / sess.scale, qy / sess.scale
        out.append((img, f"{V.map_caption(r)} · attention from query ({ox:.0f}, {oy:.0f}) · "
                         f"{V.fmt_range(*rng)}"))
    return out


def _overlays(sess: Session, recs, norms) -> list:
    out = []
    for r in recs:
        img, rng = V.draw(sess.display, V.grid_map(r), norms[r.tap])
        out.append((img, f"{V.map_caption(r)} · {V.fmt_range(*rng)}"))
    return out


def _tab_figure(tab: KindTab, recs, sess: Session, scale: str):
    """A tab's figure: the deepest map's for kinds drawn over the image, else one figure of
    every layer (channel gates, kernel selection)."""
    main = [r for r in recs if r.kind == tab.kinds[0]]
    if not main:
        return None
    if tab.gallery:
        return record_figure(main[-1], sess, scale)
    fig = K.get(tab.kinds[0]).figure_builder()(main)  # a grouped kind: one figure, all layers
    if fig.layout.height is None:
        fig.update_layout(height=380)
    return fig


def kind_views(sess: Session, scale: str, selected: str = "all") -> dict:
    """Every kind tab: its label with the count (tabs without maps are disabled, and hidden by
    the app's CSS), its overlays and figure; the note listing the kinds present; the query."""
    recs = sess.analysis.maps
    norms = V.scale_norms(recs, scale)
    by = {t.key: [r for r in recs if r.kind in t.kinds] for t in KIND_TABS}
    out = {}
    for t in KIND_TABS:
        n = len(by[t.key])
        # Gradio 6.31 does not hide a tab on a visibility update: a disabled one is hidden by CSS
        out[f"tab_{t.key}"] = gr.Tab(label=f"{t.title} · {n}" if n else t.title,
                                     interactive=n > 0)
        if t.gallery:
            out[f"gal_{t.key}"] = (affinity_gallery(sess, scale) if K.get(t.kinds[0]).queried
                                   else _overlays(sess, by[t.key], norms))
        out[f"plot_{t.key}"] = _tab_figure(t, by[t.key], sess, scale)
    # a tab's second kind (channel affinity beside the affinities) gets the extra plot
    chaff = [r for t in KIND_TABS for r in by[t.key] if r.kind != t.kinds[0]]
    fig_chaff = F.figure_for(chaff[-1], max_size=64) if chaff else None
    out["plot_chaff"] = gr.Plot(value=fig_chaff, visible=fig_chaff is not None)
    present = [f"{t.title} ({len(by[t.key])})" for t in KIND_TABS if by[t.key]]
    out["kind_note"] = ("**Attention in this model:** " + ", ".join(present) if present else
                        "**This model has no attention modules** (plain ResNet): only the "
                        "attribution is shown.")
    if selected in by and not by[selected]:
        out["kind_tabs"] = gr.Tabs(selected="all")
    out["qx"], out["qy"] = (round(v / sess.scale) for v in query_display(sess))
    return out


def cleared(message: str = "") -> dict:
    """Values that empty every analysis output (a failed or not yet run analysis)."""
    import pandas as pd

    from .scores_view import SCORE_HEADERS
    out = {"top5": None, "head_att": gr.Image(value=None, label="Attention"),
           "head_attr": gr.Image(value=None, label="Attribution"), "agreement": message,
           "gal_all": [], "summary": None, "state": None, "kind_note": "",
           "scores": pd.DataFrame([], columns=SCORE_HEADERS), "plot_chaff": None}
    for t in KIND_TABS:
        if t.gallery:
            out[f"gal_{t.key}"] = []
        out[f"plot_{t.key}"] = None
    return out
