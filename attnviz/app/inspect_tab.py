"""Inspect: one image, one model. Prediction, headline overlays, a tab per attention kind with a
gallery and a Plotly figure, the affinity explorer (click the image), scores.

Events (api_name): ``inspect`` (analysis + headline + every overlay + JSON summary; also
``inspect_auto`` when the image or a lite model changes), ``maps`` (the kind tabs), ``attribute``
(a slow attribution, in the heavy queue), ``scores``, ``affinity`` (query at pixel x, y),
``rescale`` (per-map / shared colour scale), ``figure_<kind>`` (a gallery click picks the figure).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import torch

from ..errors import AttnvizError
from ..maps import has_spatial
from ..render import figures as F
from . import views as V
from .components import InputImage, gpu, skips
from .errors import bad_request, user_errors
from .examples import ensure_examples, known_mask
from .state import MODELS, Session, default_model, find_entry, model_choices

SCORE_STEPS = 16  # deletion / insertion curve steps in the app (the library default is 32)
MEANINGS = {
    "pointing game": "hit when the map's peak lies on the object (mask known for the examples)",
    "energy in object": "share of the map's positive mass inside the object mask (higher is "
                        "better)",
    "deletion AUC": "class probability as the most attributed pixels are removed first; lower "
                    "means the map found what the prediction rests on",
    "insertion AUC": "class probability as the most attributed pixels are restored first; "
                     "higher is better",
    "rank correlation": "Spearman correlation of this attention map with the attribution: "
                        "1 = same pixel ranking, 0 = unrelated, -1 = opposite",
}
SCORE_HEADERS = ["score", "map", "value", "what it means"]


# ------------------------------------------------------------------------------ analysis
def _to_cpu(a) -> None:
    """Keep the session's copy of the analysis off the GPU, in float32 (an analysis under
    autocast records bfloat16 tensors)."""
    for r in a.maps:
        r.tensor = r.tensor.detach().float().cpu()
    for att in a.attributions.values():
        att.raw = att.raw.detach().float().cpu()


@gpu
def _run_inspect(model, pil, methods, amp: bool = False):
    from ..inspect import inspect
    from .state import AMP_DTYPE, DEVICE
    ctx = torch.autocast(DEVICE.type, dtype=AMP_DTYPE) if amp else contextlib.nullcontext()
    with ctx:
        return inspect(model, pil, attributions=methods)


def analyse(image_path, model_name, method) -> Session:
    """The analysis of one request, as a Session (no rendering)."""
    from ..preprocess import load_image
    if image_path is None or (isinstance(image_path, str) and not image_path.strip()):
        raise bad_request("Upload an image or pick one of the examples first.", "No image")
    method = V.check_method(method)
    loaded = MODELS.get(model_name)
    pil = load_image(image_path)
    img = np.asarray(pil)
    methods = [method] if method in V.FAST_METHODS else ["gradcam"]
    t0 = time.perf_counter()
    a = _run_inspect(loaded.model, pil, methods, loaded.amp)
    a.timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    _to_cpu(a)
    example, mask = known_mask(img)
    name = Path(str(image_path)).name if isinstance(image_path, (str, Path)) else "image"
    return Session(a, loaded.name, method, V.display_image(img), name, mask, example,
                   badge=loaded.badge)


def shown_method(sess: Session) -> str:
    """The attribution shown: the one asked for once computed, else Grad-CAM."""
    return sess.method if sess.method in sess.analysis.attributions else \
        next(iter(sess.analysis.attributions))


def agreement(sess: Session, rec, method: str):
    """Spearman rank correlation of an attention record with an attribution (input grid)."""
    from ..metrics import rank_correlation
    if rec is None or method not in sess.analysis.attributions:
        return None
    return V.finite(rank_correlation(V.grid_map(rec), V.attribution_grid(sess.analysis, method)))


def headline(sess: Session, scale: str):
    """(attention overlay update, attribution overlay update, details markdown, gallery of every
    overlay, legend image)."""
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
        att_update = gr.Image(value=None, label="No spatial attention map in this model")
        lines = [f"**Attention:** {sess.model_name} has no spatial attention map (see the "
                 "Channel / Kernel selection tabs).", attr_line,
                 f"**Agreement:** n/a — no spatial attention map to compare with "
                 f"{V.method_name(method)}."]
    else:
        img, rng = V.draw(sess.display, V.grid_map(rec), norms[rec.tap])
        att_update = gr.Image(value=img, label=f"Attention · {V.short_layer(rec)} "
                                               f"{V.block_name(rec)}")
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
    attr_update = gr.Image(value=attr_img, label=f"{V.method_name(method)} → {a.target_name}"
                                                 + (" (computing…)" if pending else ""))
    return att_update, attr_update, "<br>".join(lines), gallery, V.legend(scale, shared)


def summary(sess: Session) -> dict:
    """The JSON summary /inspect returns."""
    a = sess.analysis
    d = a.to_dict()
    rec = V.headline_record(a.maps)
    method = shown_method(sess)
    d.update(
        weights=sess.badge, example=sess.example, mask_known=sess.mask is not None,
        attribution=method, attribution_pending=None if method == sess.method else sess.method,
        headline=None if rec is None else {"tap": rec.tap, "caption": V.map_caption(rec)},
        agreement=agreement(sess, rec, method),
        overlays=[V.map_caption(r) for r in a.maps if has_spatial(r)] + [V.method_name(method)],
    )
    d.pop("preprocess", None)
    return d


def inspect_outputs(sess: Session, scale: str):
    att, attr, agree, gallery, legend = headline(sess, scale)
    loaded = MODELS.get(sess.model_name)
    return (V.top_k_dict(sess.analysis), V.badge_md(loaded), att, attr, agree, gallery, legend,
            summary(sess), sess)


def run_inspect(image, model_name, method, scale):
    with user_errors("analysing the image"):
        sess = analyse(image, model_name, method)
        return inspect_outputs(sess, scale)


N_INSPECT_OUT = 9


def run_inspect_auto(image, model_name, method, scale):
    """Changing the image or the model re-runs the analysis when it is fast (lite models)."""
    if image is None:
        return skips(N_INSPECT_OUT)
    try:
        entry = find_entry(model_name)
    except AttnvizError:
        return skips(N_INSPECT_OUT)
    if not entry.is_lite:
        gr.Info(f"{entry.name} is a full-size model: press Analyse to run it.")
        return skips(N_INSPECT_OUT)
    return run_inspect(image, model_name, method, scale)


def rescale(sess, scale):
    if sess is None:
        return skips(5)
    with user_errors("redrawing the maps"):
        return headline(sess, scale)


# ------------------------------------------------------------------------------ kind tabs
def _query_display(sess: Session) -> tuple[float, float]:
    """The affinity query in display pixels (default: the image centre)."""
    h, w = sess.analysis.image.shape[:2]
    x, y = sess.query if sess.query is not None else ((w - 1) / 2, (h - 1) / 2)
    return x * sess.scale, y * sess.scale


def _figure(rec, sess: Session, scale: str, records):
    if rec is None:
        return None
    kw = {"max_size": 64}
    if scale == "shared" and rec.kind in ("spatial", "calibration", "group"):
        from ..render.scale import shared_range
        same = [V.grid_map(r) if r.kind != "group" else r.tensor[0].float().numpy()
                for r in records if r.kind == rec.kind]
        kw["zmin"], kw["zmax"] = shared_range(same)
    if rec.kind == "affinity":
        h, w = sess.analysis.image.shape[:2]
        qx, qy = sess.query if sess.query is not None else ((w - 1) / 2, (h - 1) / 2)
        kw.update(qx=qx, qy=qy, image_hw=(h, w))
    fig = F.figure_for(rec, **kw)
    fig.update_layout(height=380 if rec.kind != "group" else None, margin=dict(l=50, r=10, t=50,
                                                                                 b=40))
    return fig


def affinity_gallery(sess: Session, scale: str):
    recs = [r for r in sess.analysis.maps if r.kind == "affinity"]
    qx, qy = _query_display(sess)
    out = []
    rngs = []
    if scale == "shared" and recs:
        from ..maps import affinity_row
        h, w = sess.display.shape[:2]
        rows = [affinity_row(r, qy / h, qx / w)[0][0].float().numpy() for r in recs]
        from ..render.scale import shared_range
        shared = shared_range(rows)
    for r in recs:
        img, rng = V.draw_affinity(sess.display, r, qx, qy,
                                   shared if scale == "shared" else "minmax")
        rngs.append(rng)
        ox, oy = qx / sess.scale, qy / sess.scale
        out.append((img, f"{V.map_caption(r)} · attention from query ({ox:.0f}, {oy:.0f}) · "
                         f"{V.fmt_range(*rng)}"))
    return out


KIND_OUTPUTS = ("tab_spatial", "gal_spatial", "plot_spatial", "tab_channel", "plot_channel",
                "tab_kernel", "plot_kernel", "tab_group", "gal_group", "plot_group",
                "tab_affinity", "gal_affinity", "plot_affinity", "plot_chaff", "tab_calibration",
                "gal_calibration", "plot_calibration", "kind_note", "kind_tabs", "qx", "qy")


def kind_views(sess, scale, selected="all"):
    """Updates for every kind tab: visibility (tabs without maps are hidden), galleries, figures."""
    if sess is None:
        return skips(len(KIND_OUTPUTS))
    with user_errors("drawing the attention maps"):
        a = sess.analysis
        recs = a.maps
        by = {k: [r for r in recs if r.kind in kinds] for k, _, kinds in V.KIND_TABS}
        norms = V.scale_norms(recs, scale)

        def gallery(kind):
            out = []
            for r in by[kind]:
                img, rng = V.draw(sess.display, V.grid_map(r), norms[r.tap])
                out.append((img, f"{V.map_caption(r)} · {V.fmt_range(*rng)}"))
            return out

        def tab(kind, title):
            # Gradio 6.31 does not hide a tab on a visibility update; a disabled tab is hidden
            # by the app's CSS instead
            n = len(by[kind])
            return gr.Tab(label=f"{title} · {n}" if n else title, interactive=n > 0)

        titles = {k: t for k, t, _ in V.KIND_TABS}
        channel = [r for r in recs if r.kind == "channel"]
        kernel = [r for r in recs if r.kind == "kernel"]
        aff = [r for r in recs if r.kind == "affinity"]
        chaff = [r for r in recs if r.kind == "channel_affinity"]
        fig_ch = F.channel_gate_bars(channel) if channel else None
        if fig_ch is not None:
            fig_ch.update_layout(height=380)
        fig_k = F.kernel_selection_bars(kernel) if kernel else None
        fig_chaff = F.channel_affinity_heatmap(chaff[-1], max_size=64) if chaff else None
        present = [titles[k] for k, _, _ in V.KIND_TABS if by[k]]
        note = ("**Attention in this model:** " + ", ".join(
            f"{t} ({len(by[k])})" for k, t, _ in V.KIND_TABS if by[k])) if present else \
            "**This model has no attention modules** (plain ResNet): only the attribution is shown."
        return (
            tab("spatial", "Spatial"), gallery("spatial"),
            _figure(by["spatial"][-1] if by["spatial"] else None, sess, scale, recs),
            tab("channel", "Channel"), fig_ch,
            tab("kernel", "Kernel selection"), fig_k,
            tab("group", "Group factors"), gallery("group"),
            _figure(by["group"][-1] if by["group"] else None, sess, scale, recs),
            tab("affinity", "Affinity"), affinity_gallery(sess, scale),
            _figure(aff[-1] if aff else None, sess, scale, recs),
            gr.Plot(value=fig_chaff, visible=fig_chaff is not None),
            tab("calibration", "Calibration"), gallery("calibration"),
            _figure(by["calibration"][-1] if by["calibration"] else None, sess, scale, recs),
            note,
            gr.Tabs(selected="all") if selected in by and not by[selected] else gr.skip(),
            *(round(v / sess.scale) for v in _query_display(sess)),
        )


def figure_for_kind(kind: str):
    """Gallery click -> that map's Plotly figure."""
    def pick(sess, scale, evt: gr.SelectData):
        if sess is None or evt is None:
            return gr.skip()
        recs = [r for r in sess.analysis.maps if r.kind == kind and has_spatial(r)]
        i = evt.index if isinstance(evt.index, int) else 0
        if not 0 <= i < len(recs):
            return gr.skip()
        with user_errors("drawing the figure"):
            return _figure(recs[i], sess, scale, sess.analysis.maps)
    return pick


# ------------------------------------------------------------------------------ affinity
def pick_query(evt: gr.SelectData):
    """Image click -> (x, y) in image pixels."""
    try:
        x, y = evt.index[:2]
        return float(x), float(y)
    except (TypeError, ValueError):
        return gr.skip(), gr.skip()


def run_affinity(sess, x, y, scale):
    """The affinity rows of the query at image pixel (x, y): every affinity overlay with the query
    marked, and the explorer figure of the deepest affinity map."""
    with user_errors("computing the affinity of the query"):
        if sess is None:
            raise bad_request("Run an analysis first (Analyse, or /inspect), then choose a query "
                              "point.", "No analysis yet")
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise bad_request(f"The query point must be two numbers (x, y) in image pixels, not "
                              f"{x!r}, {y!r}.") from None
        h, w = sess.analysis.image.shape[:2]
        if not (0 <= x < w and 0 <= y < h) or not np.isfinite([x, y]).all():
            raise bad_request(f"The query ({x:g}, {y:g}) lies outside the image ({w} x {h} "
                              "pixels).")
        recs = [r for r in sess.analysis.maps if r.kind == "affinity"]
        sess.query = (x, y)
        if not recs:
            gr.Warning(f"{sess.model_name} has no position-affinity module; lite_nonlocal, "
                       "lite_danet and lite_sagan have one.")
            return [], None, sess
        fig = _figure(recs[-1], sess, scale, sess.analysis.maps)
        return affinity_gallery(sess, scale), fig, sess


# ------------------------------------------------------------------------------ scores
def _scores(sess: Session, faithfulness: bool) -> dict:
    from .. import metrics
    from ..preprocess import Preprocess, preprocess
    a = sess.analysis
    loaded = MODELS.get(sess.model_name)
    method = shown_method(sess)
    att_grid = V.attribution_grid(a, method)
    out = {"attribution": method, "faithfulness": faithfulness, "rows": []}
    rows = out["rows"]
    spatial = [r for r in a.maps if has_spatial(r)]
    head = V.headline_record(a.maps)
    if sess.mask is not None:
        pre = a.preprocess
        named = [(V.map_caption(r), pre.to_image(V.grid_map(r))) for r in spatial]
        named.append((V.method_name(method), pre.to_image(att_grid)))
        for n, m in named:
            rows.append(["pointing game", n, "hit" if metrics.pointing_game(m, sess.mask) else
                         "miss"])
        for n, m in (named[-1:] if head is None else
                     [(V.map_caption(head), pre.to_image(V.grid_map(head))), named[-1]]):
            rows.append(["energy in object", n, round(metrics.energy_pointing_game(m, sess.mask),
                                                       3)])
    if faithfulness:
        x, _ = preprocess(loaded.model, a.image)
        S = x.shape[-1]
        grid = Preprocess((S, S), S)
        gm = grid.to_image(att_grid)
        kw = dict(steps=SCORE_STEPS, batch_size=SCORE_STEPS + 1)
        from ..explain import model_lock
        with model_lock(loaded.model):  # forward passes on the shared model
            d = metrics.deletion_auc(loaded.model, (x, grid), gm, a.target, **kw)
            i = metrics.insertion_auc(loaded.model, (x, grid), gm, a.target, **kw)
        rows.append(["deletion AUC", V.method_name(method), round(float(d), 3)])
        rows.append(["insertion AUC", V.method_name(method), round(float(i), 3)])
    else:
        for k in ("deletion AUC", "insertion AUC"):
            rows.append([k, V.method_name(method), "press “Deletion / insertion” (slow for a "
                                                   "full-size model on a CPU)"])
    for r in spatial:
        rho = V.finite(metrics.rank_correlation(V.grid_map(r), att_grid))
        rows.append(["rank correlation", f"{V.map_caption(r)} vs {V.method_name(method)}",
                     "n/a" if rho is None else round(rho, 3)])
    return out


_score_model = gpu(_scores)


def scores_table(sess: Session):
    import pandas as pd
    rows, seen = [], set()
    for s, m, v in sess.scores.get("rows", []):
        rows.append([s if s not in seen else "", m, v, MEANINGS[s] if s not in seen else ""])
        seen.add(s)
    return pd.DataFrame(rows, columns=SCORE_HEADERS)


def run_scores(sess, full: bool = False):
    """Pointing game (mask known), deletion / insertion AUC, attention-vs-attribution
    correlation, for the last analysis; computed once per analysis. Deletion / insertion run
    at once for lite models or on a GPU; for a full-size model on a CPU on request (``full``)."""
    if sess is None:
        if full:
            raise bad_request("Run an analysis first.", "No analysis yet")
        return gr.skip(), gr.skip()
    with user_errors("scoring the maps"):
        from .state import DEVICE
        want = shown_method(sess)
        faith = bool(full or MODELS.get(sess.model_name).is_lite or DEVICE.type == "cuda")
        if sess.scores.get("attribution") != want or (faith and not
                                                     sess.scores.get("faithfulness")):
            sess.scores = _score_model(sess, faith)
        return scores_table(sess), sess


def run_scores_full(sess):
    """All scores including deletion / insertion AUC, whatever the model's size."""
    return run_scores(sess, full=True)


# ------------------------------------------------------------------------------ slow methods
@gpu(duration=120)
def _slow_attribution(model, image, method, target):
    from ..explain import explain_tensor
    from ..preprocess import preprocess
    x, pre = preprocess(model, image)
    return explain_tensor(model, x, pre, method, target)


def run_attribute(sess, scale):
    """Compute a slow attribution (IG, SmoothGrad, Occlusion, GradientSHAP) for the last analysis
    in the heavy queue, then redraw the headline."""
    if sess is None or sess.method in sess.analysis.attributions:
        return skips(5) + (gr.skip(),)
    with user_errors(f"computing {V.method_name(sess.method)}"):
        loaded = MODELS.get(sess.model_name)
        t0 = time.perf_counter()
        att = _slow_attribution(loaded.model, sess.analysis.image, sess.method,
                                sess.analysis.target)
        att.raw = att.raw.detach().cpu()
        sess.analysis.attributions[sess.method] = att
        sess.analysis.timings[sess.method] = round((time.perf_counter() - t0) * 1000, 1)
        sess.scores = {}
        return headline(sess, scale) + (sess,)


# ------------------------------------------------------------------------------ layout
def _gallery(label: str, elem_id: str, columns: int = 4, height: int = 290,
             preview: bool = False) -> gr.Gallery:
    """A gallery of overlays: PNG (exact pixels), whole images, a fixed column count."""
    return gr.Gallery(label=label, columns=columns, height=height, format="png",
                      fit_columns=False, object_fit="contain", allow_preview=preview,
                      elem_id=elem_id)


def build(ui: SimpleNamespace) -> None:
    """Lay out the Inspect tab and wire its events; shared components go on ``ui``."""
    examples = ensure_examples()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280, elem_id="av-left"):
            first = next((p for p in examples if p.stem == "star"), examples[0])
            ui.first_example = str(first)
            ui.image = InputImage(value=str(first), label="Image", type="filepath",
                                  sources=["upload", "clipboard"], height=190,
                                  elem_id="av-image")
            gr.Markdown("<span class='av-hint'>Click the image to choose an affinity query "
                        "point.</span>", elem_id="av-click-hint")
            gr.Examples([[str(p)] for p in examples], inputs=[ui.image],
                        label="Examples (object masks known)", examples_per_page=6,
                        elem_id="av-examples", api_name="load_example")
            ui.model = gr.Dropdown(model_choices(), value=default_model(), label="Model",
                                   allow_custom_value=True, elem_id="av-model")
            ui.badge = gr.Markdown(elem_id="av-badge")
            with gr.Row(equal_height=True, elem_id="av-run-row"):
                ui.method = gr.Dropdown(V.METHOD_CHOICES, value="gradcam", label="Attribution",
                                        allow_custom_value=True, elem_id="av-method", scale=2,
                                        min_width=150)
                ui.analyse = gr.Button("Analyse", variant="primary", elem_id="av-analyse",
                                       scale=1, min_width=90)
        with gr.Column(scale=3, elem_id="av-right"):
            with gr.Row(equal_height=False):
                ui.top5 = gr.Label(num_top_classes=5, label="Prediction (top 5)", scale=1,
                                   min_width=200, elem_id="av-top5")
                ui.head_att = gr.Image(label="Strongest attention, deepest stage",
                                       interactive=False, format="png", height=260, scale=1,
                                       min_width=200, elem_id="av-head-att",
                                       buttons=["download", "fullscreen"])
                ui.head_attr = gr.Image(label="Attribution", interactive=False, format="png",
                                        height=260, scale=1, min_width=200,
                                        elem_id="av-head-attr",
                                        buttons=["download", "fullscreen"])
            ui.agreement = gr.Markdown(elem_id="av-agreement")
            with gr.Row(equal_height=True):
                ui.kind_note = gr.Markdown(elem_id="av-kinds")
                # the colour bar says its scale; the toggle beside it switches the scale
                ui.scale = gr.Radio(list(V.SCALES), value="per map", label="Colour scale",
                                    elem_id="av-scale", scale=0, min_width=240)
                ui.legend = gr.Image(show_label=False, interactive=False, format="png",
                                     height=40, container=False, elem_id="av-legend",
                                     buttons=[])
            with gr.Tabs(elem_id="av-kind-tabs") as ui.kind_tabs:
                with gr.Tab("All maps", id="all") as ui.tab_all:
                    ui.gal_all = _gallery("Every spatial map and the attribution",
                                          "av-gal-all", columns=5, height=230, preview=True)
                with gr.Tab("Spatial", id="spatial") as ui.tab_spatial:
                    ui.gal_spatial = _gallery("Spatial attention (click one for its figure)",
                                              "av-gal-spatial")
                    ui.plot_spatial = gr.Plot(label="Spatial map (hover for values)")
                with gr.Tab("Channel", id="channel") as ui.tab_channel:
                    ui.plot_channel = gr.Plot(label="Channel gates per layer")
                with gr.Tab("Kernel selection", id="kernel") as ui.tab_kernel:
                    ui.plot_kernel = gr.Plot(label="SK kernel selection")
                with gr.Tab("Group factors", id="group") as ui.tab_group:
                    ui.gal_group = _gallery("SGE group factors, mean over groups (click one for "
                                            "its groups)", "av-gal-group")
                    ui.plot_group = gr.Plot(label="Group factors")
                with gr.Tab("Affinity", id="affinity") as ui.tab_affinity:
                    gr.Markdown("**Click the image to choose a query point**: each overlay "
                                "shows where that position attends (the query is marked with a "
                                "white cross in a ring).")
                    with gr.Row():
                        ui.qx = gr.Number(None, label="query x (image px)", precision=0,
                                          min_width=100, elem_id="av-qx")
                        ui.qy = gr.Number(None, label="query y (image px)", precision=0,
                                          min_width=100, elem_id="av-qy")
                    ui.gal_affinity = _gallery("Affinity of the query", "av-gal-affinity",
                                               columns=3)
                    ui.plot_affinity = gr.Plot(label="Affinity explorer",
                                               elem_id="av-plot-affinity")
                    ui.plot_chaff = gr.Plot(label="DANet channel affinity", visible=False)
                with gr.Tab("Calibration", id="calibration") as ui.tab_calibration:
                    ui.gal_calibration = _gallery("SCNet self-calibration gates (mean over "
                                                  "channels)", "av-gal-calibration")
                    ui.plot_calibration = gr.Plot(label="Calibration gate")
            with gr.Accordion("Scores", open=True, elem_id="av-scores-box"):
                with gr.Row():
                    gr.Markdown("<span class='av-muted'>How well each map localises the object "
                                "and whether the prediction rests on what the attribution "
                                "marks.</span>")
                    ui.scores_full = gr.Button("Deletion / insertion", size="sm", scale=0,
                                               min_width=180, variant="secondary",
                                               elem_id="av-scores-full")
                ui.scores = gr.Dataframe(headers=SCORE_HEADERS, interactive=False, wrap=True,
                                         column_widths=["16%", "30%", "10%", "44%"],
                                         elem_id="av-scores", max_height=360)
            with gr.Accordion("Summary (JSON)", open=False):
                ui.summary = gr.JSON(label="What /inspect returns")
    ui.state = gr.State(None, time_to_live=3 * 3600)
    ui.kind_sel = gr.State("all")
    for key in ["all"] + [k for k, _, _ in V.KIND_TABS]:
        getattr(ui, f"tab_{key}").select(lambda k=key: k, None, ui.kind_sel, queue=False,
                                         api_name=f"tab_{key}", api_visibility="private",
                                         show_progress="hidden")

    inspect_out = [ui.top5, ui.badge, ui.head_att, ui.head_attr, ui.agreement, ui.gal_all,
                   ui.legend, ui.summary, ui.state]
    kind_out = [getattr(ui, k) for k in KIND_OUTPUTS]
    head_out = [ui.head_att, ui.head_attr, ui.agreement, ui.gal_all, ui.legend]

    def chain(ev, suffix: str, vis: str):
        ev = ev.then(kind_views, [ui.state, ui.scale, ui.kind_sel], kind_out,
                     api_name=f"maps{suffix}",
                     api_visibility=vis, show_progress="hidden")
        ev = ev.then(run_attribute, [ui.state, ui.scale], head_out + [ui.state],
                     api_name=f"attribute{suffix}", api_visibility=vis,
                     concurrency_id="heavy", concurrency_limit=1, show_progress="minimal",
                     show_progress_on=[ui.head_attr])
        ev.then(run_scores, [ui.state], [ui.scores, ui.state], api_name=f"scores{suffix}",
                api_visibility=vis, concurrency_id="scores", concurrency_limit=2,
                show_progress="minimal", show_progress_on=[ui.scores])

    inputs = [ui.image, ui.model, ui.method, ui.scale]
    ev = ui.analyse.click(run_inspect, inputs, inspect_out, api_name="inspect",
                          concurrency_id="inspect", trigger_mode="always_last")
    chain(ev, "", "public")
    ev = gr.on([ui.image.change, ui.model.change], run_inspect_auto, inputs, inspect_out,
               api_name="inspect_auto", api_visibility="undocumented", concurrency_id="inspect",
               trigger_mode="always_last", show_progress="minimal")
    chain(ev, "_auto", "undocumented")
    ev = ui.method.change(run_inspect_auto, inputs, inspect_out, api_name="inspect_method",
                          api_visibility="undocumented", concurrency_id="inspect",
                          trigger_mode="always_last", show_progress="minimal")
    chain(ev, "_method", "undocumented")
    ui.scores_full.click(run_scores_full, [ui.state], [ui.scores, ui.state],
                         api_name="scores_full", concurrency_id="scores",
                         concurrency_limit=2, show_progress_on=[ui.scores])
    # the first screen is an analysis of the example already in place
    ev = ui.demo.load(run_inspect_auto, inputs, inspect_out, api_name="inspect_on_load",
                      api_visibility="undocumented", concurrency_id="inspect",
                      show_progress="minimal")
    chain(ev, "_load", "undocumented")
    ui.scale.change(rescale, [ui.state, ui.scale], head_out, api_name="rescale",
                    show_progress="hidden").then(
        kind_views, [ui.state, ui.scale, ui.kind_sel], kind_out, api_name="maps_rescale",
        api_visibility="undocumented", show_progress="hidden")
    aff_out = [ui.gal_affinity, ui.plot_affinity, ui.state]
    ui.image.select(pick_query, None, [ui.qx, ui.qy], api_name="pick_query",
                    api_visibility="private", show_progress="hidden").then(
        run_affinity, [ui.state, ui.qx, ui.qy, ui.scale], aff_out, api_name="affinity",
        show_progress="minimal")
    gr.on([ui.qx.submit, ui.qy.submit], run_affinity, [ui.state, ui.qx, ui.qy, ui.scale],
          aff_out, api_name="affinity_typed", api_visibility="undocumented")
    for kind in ("spatial", "group", "calibration", "affinity"):
        gal = getattr(ui, f"gal_{kind}")
        plot = getattr(ui, f"plot_{kind}")
        gal.select(figure_for_kind(kind), [ui.state, ui.scale], plot, api_name=f"figure_{kind}",
                   api_visibility="undocumented", show_progress="hidden")
