"""What the Inspect tab shows for a session, as values named after the tab's components (the keys
are the names :mod:`attnviz.app.inspect_tab` gives them on ``ui``):

    headline(sess, "per map")   # {"head_att": ..., "head_attr": ..., "agreement": ...,
                                #  "gal_all": [...], "legend": ...}
    kind_views(sess, "shared")  # {"tab_spatial": gr.update(...), "gal_spatial": [...],
                                #  "plot_spatial": fig, ..., "kind_note": ...}
    tab_views(sess, "per map", "spatial")   # one tab's overlays and figures (drawn when opened)

Component changes are ``gr.update(...)`` dicts, never component objects: Gradio builds a
component made in a handler at once (encoding its image or serialising its figure) and then
again for the update.

The kind tabs are one table (:data:`KIND_TABS`, taken from the kind registry when the demo is
built): a tab per kind with the layers' overlays (kinds
with a spatial map) and a Plotly figure; the components and the values are derived from it.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import gradio as gr
import numpy as np

from .. import kinds as K
from ..capture.maps import has_spatial
from ..render import figures as F
from ..render.stats_figures import LINK_REGIONS, outline_regions
from . import views as V
from .analysis import agreement, shown_method, summary
from .framing import badge_md, prediction_note
from .model_cache import MODELS
from .sessions import Session


@dataclass(frozen=True)
class KindTab:
    """One of the Inspect tab's kind tabs, derived from the kind specs (:mod:`attnviz.kinds`):
    its components are ``tab_<key>``, ``gal_<key>`` (kinds with a spatial map: their overlays)
    and ``plot_<key>``, plus ``plot_<kind>`` for each further kind shown in the tab (DANet's
    channel affinity beside the position affinity)."""

    key: str
    title: str
    kinds: tuple  # record kinds shown in the tab; the first is the tab's own
    gallery: str | None  # the gallery's label; None: the kind has no map over the image
    plot: str  # the figure's label

    @property
    def spec(self):
        return K.get(self.kinds[0])

    @property
    def extra_plots(self) -> tuple:
        return tuple(f"plot_{k}" for k in self.kinds[1:])


# labels where the kind's title alone says too little
_GALLERY_LABELS = {
    "spatial": "Spatial attention (click one for its figure)",
    "group": "SGE group factors, mean over groups (click one for its groups)",
    "affinity": "Affinity of the query (click the image to move it)",
    "calibration": "SCNet self-calibration gates (mean over channels)",
}
_PLOT_LABELS = {"spatial": "Spatial map (hover for values)", "channel": "Channel gates per layer",
                "kernel": "SK kernel selection", "affinity": "Affinity explorer",
                "calibration": "Calibration gate"}


def _kind_tab(key: str, title: str, kinds: tuple) -> KindTab:
    spec = K.get(kinds[0])
    gallery = (_GALLERY_LABELS.get(key, f"{spec.title} (click one for its figure)")
               if spec.spatial else None)
    return KindTab(key, title, tuple(kinds), gallery, _PLOT_LABELS.get(key, spec.title))


def kind_tab_list() -> tuple:
    """The kind tabs for the kinds registered now (:func:`attnviz.kinds.register`)."""
    return tuple(_kind_tab(key, title, kinds) for key, title, kinds in V.kind_tabs())


def kind_outputs(tabs) -> tuple:
    """Every output the kind tabs fill, in a stable order (the /maps endpoint returns them so)."""
    return tuple(
        [n for t in tabs for n in (f"tab_{t.key}", *((f"gal_{t.key}",) if t.gallery else ()),
                                   f"plot_{t.key}", *t.extra_plots)]
        + ["kind_note", "kind_tabs", "qx", "qy", "head"])


# The tabs of the demo built last: set when the demo is built (:func:`build_kind_tabs`), so a
# kind registered before ``build_demo()`` gets its tab; the handlers read these.
KIND_TABS: tuple = ()
KIND_OUTPUTS: tuple = ()


def build_kind_tabs() -> tuple:
    """Take the kind tabs from the registry now (at demo build time)."""
    global KIND_TABS, KIND_OUTPUTS
    KIND_TABS = kind_tab_list()
    KIND_OUTPUTS = kind_outputs(KIND_TABS)
    return KIND_TABS
HEADLINE_OUTPUTS = ("head_att", "head_attr", "agreement", "gal_all", "legend")


def of_kinds(records, kinds) -> list:
    """The records whose kind is one of ``kinds``, in capture order."""
    return [r for r in records if r.kind in kinds]


# ------------------------------------------------------------------------------ tiles
@functools.lru_cache(maxsize=64)
def _gradient(width: int, strip: int) -> np.ndarray:
    """The colour bar's gradient, ``strip`` rows of ``width`` colours (the same for every tile
    of a width: made once; read-only)."""
    from ..render.overlay import colorize
    g = colorize(np.linspace(0, 1, width)[None].repeat(strip, 0))
    g.setflags(write=False)
    return g


def tile_bar(width: int, lo: float, hi: float) -> np.ndarray:
    """A colour bar for a gallery tile, as wide as its overlay: the gradient, then the low
    value at the left and the high one at the right, in type readable when the tile is shown
    at about a third of its size."""
    import cv2

    width = max(int(width), 32)
    scale = max(0.45, width / 512 * 1.1)
    thick = 1 if scale < 0.9 else 2
    (_, th), _ = cv2.getTextSize("0.9", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    strip = max(8, width // 28)
    pad = max(3, width // 100)
    bar = np.full((pad + strip + pad + th + 2 * pad, width, 3), 255, np.uint8)
    bar[pad:pad + strip] = _gradient(width, strip)
    base = pad + strip + pad + th
    ref = max(abs(lo), abs(hi))
    lo_s, hi_s = V.fmt_value(lo, ref), V.fmt_value(hi, ref)
    hi_w = cv2.getTextSize(hi_s, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]
    for text, x in ((lo_s, 2), (hi_s, width - hi_w - 2)):
        cv2.putText(bar, text, (x, base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return bar


# a gallery tile's longer side: tiles are shown 4-5 to a row (~180-300 px on a laptop), so a
# 512 px overlay is sent at half its size (a quarter of the pixels to draw, encode and send)
TILE_SIDE = 256


def tile(overlay: np.ndarray, rng) -> np.ndarray:
    """A gallery tile: the overlay (fit to TILE_SIDE, on top) with its colour bar beneath."""
    from ..render.overlay import fit, stack_under
    overlay = fit(overlay, TILE_SIDE)
    return stack_under(overlay, tile_bar(overlay.shape[1], *rng))


# ------------------------------------------------------------------------------ headline
def draw_record(sess: Session, rec, norm):
    """A record over the display image: (overlay, colour range, the values drawn, words to add
    to its caption). An affinity (a queried kind) is the row of the session's query, with the
    query marked, as in the Affinity tab; other kinds their spatial map."""
    if K.of(rec).queried:
        from ..capture.maps import affinity_row
        qx, qy = query_display(sess)
        h, w = sess.display.shape[:2]
        values = affinity_row(rec, qy / h, qx / w)[0][0].float().numpy()
        img, rng = V.draw_affinity(sess.display, rec, qx, qy, norm)
        ox, oy = qx / sess.scale, qy / sess.scale
        return img, rng, values, f" · query ({ox:.0f}, {oy:.0f})"
    m = V.grid_map(rec)
    img, rng = V.draw(sess.display, m, norm)
    return img, rng, m, ""


def framing_note(sess: Session) -> str:
    """How to read the session's prediction (framing.prediction_note), "" when none is needed."""
    return prediction_note(MODELS.get(sess.model_name), sess.example)


def _drawn(memo: dict | None, key, draw):
    """``draw()``, once per ``key`` in ``memo`` (the headline and the gallery of one answer
    show the same overlays); no memo: drawn each time."""
    if memo is None:
        return draw()
    if key not in memo:
        memo[key] = draw()
    return memo[key]


def _attribution(sess: Session, method: str, memo: dict | None = None):
    """The attribution's overlay: (RGB, (vmin, vmax))."""
    return _drawn(memo, ("attribution", method), lambda: V.draw(
        sess.display, V.attribution_grid(sess.analysis, method), V.attribution_norm(method)))


def all_maps(sess: Session, scale: str, memo: dict | None = None) -> list:
    """The "All maps" gallery: every spatial map's tile, then the attribution's. ``memo``:
    overlays already drawn for this answer (see :func:`headline`)."""
    a = sess.analysis
    norms = V.scale_norms(a.maps, scale)
    shared = next(iter(norms.values())) if scale == "shared" and norms else None
    method = shown_method(sess)
    attr_img, arng = _attribution(sess, method, memo)
    gallery = []
    for r in a.maps:
        if has_spatial(r):
            img, rng, m, where = _drawn(memo, r.tap, lambda r=r: draw_record(sess, r,
                                                                            norms[r.tap]))
            gallery.append((tile(img, rng), f"{V.map_caption(r, a.maps)}{where} · "
                                            f"{V.range_text(m, rng, shared is not None)}"))
    gallery.append((tile(attr_img, arng), f"{V.method_name(method)} · {V.fmt_range(*arng)}"))
    return gallery


def headline(sess: Session, scale: str, gallery: bool = True) -> dict:
    """The headline overlays (attention, attribution), the details line, the gallery of every
    overlay (unless ``gallery`` is False: it comes after, see :func:`all_maps`) and the colour
    bar."""
    a = sess.analysis
    norms = V.scale_norms(a.maps, scale)
    shared = next(iter(norms.values())) if scale == "shared" and norms else None
    rec = V.headline_record(a.maps)
    method = shown_method(sess)
    memo: dict = {}  # each overlay drawn once for the headline and the gallery
    attr_img, arng = _attribution(sess, method, memo)
    pending = sess.method != method
    layer = a.attributions[method].layer
    at = f" at {layer}" if layer else ""
    attr_line = (f"**{V.method_name(method)}** for class '{a.target_name}'{at}, range "
                 f"{V.fmt_range(*arng)} (own scale)"
                 + (f" — *{V.method_name(sess.method)} is being computed…*" if pending else ""))
    if rec is None:
        att = gr.update(value=None, label="No spatial attention map in this model")
        lines = [f"**Attention:** {sess.model_name} has no spatial attention map (see the "
                 "Channel / Kernel selection tabs).", attr_line,
                 f"**Agreement:** n/a — no spatial attention map to compare with "
                 f"{V.method_name(method)}."]
    else:
        img, rng, m, where = _drawn(memo, rec.tap, lambda: draw_record(sess, rec,
                                                                       norms[rec.tap]))
        # an update (a dict), not gr.Image(...): a component made here would encode and cache
        # its image at once, and Gradio would then build the component again for the update
        att = gr.update(value=img, label=f"Attention · {V.module_label(rec, a.maps)} "
                                        f"{V.block_name(rec)}{where}")
        rho = agreement(sess, rec, method)
        rho_s = "n/a (a constant map)" if rho is None else f"{rho:+.2f}"
        lines = [f"**Attention:** {V.map_caption(rec, a.maps)}{where}, range "
                 f"{V.range_text(m, rng, shared is not None)} — the most "
                 "concentrated map of the deepest stage", attr_line,
                 f"**Agreement** (Spearman ρ between the two): **{rho_s}** "
                 "<span class='av-muted'>1 = same pixel ranking, 0 = unrelated</span>"]
    attr = gr.update(value=attr_img, label=f"{V.method_name(method)} → {a.target_name}{at}"
                                          + (" (computing…)" if pending else ""))
    # the framing (random weights, a lite model's six shapes) stays with every redraw of these
    # results: a slow attribution, a new colour scale
    note = framing_note(sess)
    out = {"head_att": att, "head_attr": attr,
           "agreement": "<br>".join(([note] if note else []) + lines),
           "legend": V.legend(scale, shared)}
    if gallery:
        out["gal_all"] = all_maps(sess, scale, memo)
    return out


def inspect_values(sess: Session, scale: str, gallery: bool = True) -> dict:
    """Everything the analysis step shows: prediction, badge, headline (with the gallery of
    every map unless ``gallery`` is False), summary, state."""
    loaded = MODELS.get(sess.model_name)
    values = {"top5": V.top_k_dict(sess.analysis), "badge": badge_md(loaded),
              **headline(sess, scale, gallery), "summary": summary(sess), "state": sess}
    note = prediction_note(loaded, sess.example)
    values["summary"]["prediction_note"] = re.sub(r"<[^>]+>", "", note) or None
    return values


# ------------------------------------------------------------------------------ kind tabs
def query_display(sess: Session) -> tuple[float, float]:
    """The affinity query in display pixels (default: the image centre)."""
    h, w = sess.analysis.image.shape[:2]
    x, y = sess.query if sess.query is not None else ((w - 1) / 2, (h - 1) / 2)
    return x * sess.scale, y * sess.scale


def record_figure(rec, sess: Session, scale: str):
    """The Plotly figure of one record (its kind's builder): on the shared scale, the range of
    every record of its kind; an affinity with the session's query."""
    if rec is None:
        return None
    h, w = sess.analysis.image.shape[:2]
    query = sess.query if sess.query is not None else ((w - 1) / 2, (h - 1) / 2)
    if sess.head == V.ROLLOUT and K.of(rec).queried:
        rec = V.rollout_record(sess.analysis.maps) or rec
    fig = V.map_figure(rec, sess.analysis.maps, scale == "shared", query, (h, w),
                       head=V.head_of(sess.head, rec))
    if sess.links is not None and K.of(rec).queried and rec.meta.get("key_hw"):
        # a relational example: its ground truth outlined as the Statistics tab does
        outline_regions(fig, {name: (sess.links["regions"][name], colour, dash)
                              for name, (colour, dash) in LINK_REGIONS.items()},
                        (h, w), rec.meta["key_hw"])
    return fig


def affinity_gallery(sess: Session, scale: str) -> list:
    """The overlays of every queried kind (position affinities): the row of the query, marked."""
    recs = V.queried_records(sess.analysis.maps)
    qx, qy = query_display(sess)
    out = []
    shared = None
    heads = {r.tap: V.head_of(sess.head, r) for r in recs}
    if scale == "shared" and recs:
        from ..capture.maps import affinity_row
        from ..render.scale import shared_range
        h, w = sess.display.shape[:2]
        shared = shared_range([affinity_row(r, qy / h, qx / w, heads[r.tap])[0][0].float()
                               .numpy() for r in recs])
    ox, oy = qx / sess.scale, qy / sess.scale
    roll = V.rollout_record(sess.analysis.maps) if sess.head == V.ROLLOUT else None
    if roll is not None:  # first: what the chosen view adds
        img, rng = V.draw_affinity(sess.display, roll, qx, qy, "minmax")
        out.append((tile(img, rng), f"attention rollout across {roll.meta['layers']} layers · "
                                    f"from query ({ox:.0f}, {oy:.0f}) · {V.fmt_range(*rng)}"))
    for r in recs:
        img, rng = V.draw_affinity(sess.display, r, qx, qy, shared or "minmax", heads[r.tap])
        n = K.of(r).heads(r.meta, r.tensor)
        which = "" if n == 1 else (f" · head {heads[r.tap]} of {n}" if heads[r.tap] is not None
                                   else f" · mean of {n} heads")
        out.append((tile(img, rng), f"{V.map_caption(r, sess.analysis.maps)}{which} · attention "
                                    f"from query ({ox:.0f}, {oy:.0f}) · {V.fmt_range(*rng)}"))
    return out


def _overlays(sess: Session, recs, norms) -> list:
    out = []
    for r in recs:
        m = V.grid_map(r)
        img, rng = V.draw(sess.display, m, norms[r.tap])
        shared = not isinstance(norms[r.tap], str)  # a (lo, hi) shared by every map
        out.append((tile(img, rng), f"{V.map_caption(r, sess.analysis.maps)} · "
                                    f"{V.range_text(m, rng, shared)}"))
    return out


def kind_figure(kind: str, recs, sess: Session, scale: str):
    """The figure of a kind in its tab: one figure of every layer for grouped kinds (channel
    gates, kernel selection), else the deepest layer's; None without records."""
    recs = of_kinds(recs, (kind,))
    if not recs:
        return None
    spec = K.get(kind)
    if spec.grouped:
        fig = spec.figure_builder()(recs)
        fig.update_layout(height=max(380, fig.layout.height or 0))
        return fig
    if not spec.spatial:  # e.g. DANet's channel affinity: the tensor itself
        return F.figure_for(recs[-1], max_size=64)
    return record_figure(recs[-1], sess, scale)


def tab_contents(sess: Session, scale: str, t: KindTab) -> dict:
    """One kind tab's overlays and figures for the session's analysis."""
    recs = sess.analysis.maps
    out = {}
    if t.gallery:
        out[f"gal_{t.key}"] = (affinity_gallery(sess, scale) if t.spec.queried else
                               _overlays(sess, of_kinds(recs, t.kinds[:1]),
                                         V.scale_norms(recs, scale)))
    if t.spec.queried:  # the explorer: the deepest map of any queried kind of the tab
        queried = [r for r in of_kinds(recs, t.kinds) if K.of(r).queried]
        out[f"plot_{t.key}"] = record_figure(queried[-1], sess, scale) if queried else None
    else:
        out[f"plot_{t.key}"] = kind_figure(t.kinds[0], recs, sess, scale)
    for kind, name in zip(t.kinds[1:], t.extra_plots):
        fig = None if K.get(kind).queried else kind_figure(kind, recs, sess, scale)
        # updates (dicts), not components: a gr.Plot(value=fig) made here would serialise the
        # figure once more
        out[name] = gr.update(value=fig, visible=fig is not None)
    return out


def _emptied(t: KindTab) -> dict:
    """A kind tab's outputs emptied (drawn when the tab is opened: :func:`tab_views`)."""
    out = {f"gal_{t.key}": []} if t.gallery else {}
    out[f"plot_{t.key}"] = None
    for name in t.extra_plots:
        out[name] = gr.update(value=None, visible=False)
    return out


def tab_views(sess: Session, scale: str, key: str) -> dict:
    """The contents of kind tab ``key`` (the browser draws a tab when it is opened); {} for
    "all" (the All maps gallery comes with the analysis) or an unknown key."""
    t = next((t for t in KIND_TABS if t.key == key), None)
    return {} if t is None else tab_contents(sess, scale, t)


def kind_views(sess: Session, scale: str, selected: str = "all", only=None) -> dict:
    """Every kind tab: its label with the count (tabs without maps are disabled, and hidden by
    the app's CSS), its overlays and figures; the note listing the kinds present; the query.
    ``only``: the keys of the tabs whose overlays and figures are drawn now (None: every
    tab); the others are emptied, to be drawn when opened (:func:`tab_views`)."""
    recs = sess.analysis.maps
    by = {t.key: of_kinds(recs, t.kinds) for t in KIND_TABS}
    out = {}
    for t in KIND_TABS:
        n = len(by[t.key])
        # Gradio 6.31 does not hide a tab on a visibility update: a disabled one is hidden by CSS
        out[f"tab_{t.key}"] = gr.update(label=f"{t.title} · {n}" if n else t.title,
                                        interactive=n > 0)
        drawn = only is None or (t.key in only and n > 0)
        out.update(tab_contents(sess, scale, t) if drawn else _emptied(t))
    present = [f"{t.title} ({len(by[t.key])})" for t in KIND_TABS if by[t.key]]
    out["kind_note"] = ("**Attention in this model:** " + ", ".join(present) if present else
                        "**This model has no attention modules** (plain ResNet): only the "
                        "attribution is shown.")
    if selected in by and not by[selected]:
        out["kind_tabs"] = gr.update(selected="all")
    out["qx"], out["qy"] = (round(v / sess.scale) for v in query_display(sess))
    choices = V.head_choices(recs)
    if sess.head not in choices:
        sess.head = V.MEAN_HEADS
    out["head"] = gr.update(choices=choices, value=sess.head,
                            interactive=len(choices) > 1)
    return out


def cleared(message: str = "") -> dict:
    """Values that empty every analysis output (a failed or not yet run analysis)."""
    import pandas as pd

    from .scores_view import SCORE_HEADERS
    out = {"top5": None, "head_att": gr.update(value=None, label="Attention"),
           "head_attr": gr.update(value=None, label="Attribution"), "agreement": message,
           "gal_all": [], "summary": None, "state": None, "kind_note": "",
           "scores": pd.DataFrame([], columns=SCORE_HEADERS)}
    for t in KIND_TABS:
        # no counts over emptied results: every kind tab back to its bare title, disabled
        out[f"tab_{t.key}"] = gr.update(label=t.title, interactive=False)
        if t.gallery:
            out[f"gal_{t.key}"] = []
        for name in (f"plot_{t.key}", *t.extra_plots):
            out[name] = None
    out["kind_tabs"] = gr.update(selected="all")
    return out
