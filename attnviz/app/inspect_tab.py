"""Inspect: one image, one model. Prediction, headline overlays, a tab per attention kind with a
gallery and a Plotly figure, the affinity explorer (click the image), scores. The values come
from :mod:`~attnviz.app.analysis`, :mod:`~attnviz.app.inspect_views` and
:mod:`~attnviz.app.scores_view`; this module lays the tab out and wires its events, every
handler returning its outputs by name (:class:`~attnviz.app.components.Outputs`).

API events (api_name): ``inspect`` (analysis + headline + every overlay + JSON summary),
``maps`` (the kind tabs), ``attribute`` (a slow attribution, in the heavy queue), ``scores``,
``scores_full``, ``affinity`` (query at pixel x, y), ``rescale`` (per-map / shared colour scale),
``figure_<kind>`` (a gallery click picks the figure).

In the browser the same analysis runs as ``inspect_ui`` (Analyse) and ``inspect_auto`` (a new
image, a lite model, the first screen): these never raise; a failure empties every output and
says why once, in the status line under Analyse. While an analysis runs, the results column is
marked stale (greyed, "Analysing…").
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np

from .. import kinds as K
from ..errors import AttnvizError
from ..capture.maps import has_spatial
from . import limits
from . import views as V
from .analysis import (add_attribution, analyse, count, request_key,  # noqa: F401 - re-exported
                       shown_method, single_flight, summary)
from .capacity import analyses_at_once
from .components import InputImage, Outputs
from .errors import bad_request, to_gr_error, user_errors
from .examples import ensure_examples
from .framing import entry_badge_md
from . import inspect_views as IV
from .inspect_views import (HEADLINE_OUTPUTS, affinity_gallery, all_maps, cleared, headline,
                            inspect_values, kind_views, of_kinds, record_figure)
from .scores_view import SCORE_HEADERS, SCORE_WIDTHS, scores_table, update_scores
from .catalogue import default_model, find_entry, model_choices
from .model_cache import MODELS
from .sessions import SESSIONS, Session, exclusive, free_session, request_session, use

# analysis requests at once (4 per core; one batched pass per model, see .capacity)
ANALYSES = analyses_at_once()
INSPECT_OUTPUTS = ("top5", "badge", *HEADLINE_OUTPUTS, "summary", "state")
# the browser's analysis also clears the tabs and scores of the previous one, and says how it went
UI_TAIL = ("scores", "status")  # the browser's analysis fills INSPECT_OUTPUTS, the kind tabs'
# outputs (inspect_views.KIND_OUTPUTS, taken when the demo is built) and these

# the results column is greyed with an "Analysing…" sign from the click until the maps are drawn
MARK_STALE = ("() => { const r = document.getElementById('av-right'); "
              "if (r) r.classList.add('av-stale'); }")
# after a click on the image: the affinity overlays (their tab open), else the headline, in view
SHOW_AFFINITY = ("() => { const g = document.getElementById('av-gal-affinity'); "
                 "const t = g && g.offsetParent !== null ? g : "
                 "document.getElementById('av-head-att'); "
                 "if (t) t.scrollIntoView({block: 'nearest'}); }")
UNMARK_STALE = ("() => { const r = document.getElementById('av-right'); "
                "if (r) r.classList.remove('av-stale'); }")


# ------------------------------------------------------------------------------ handlers
def inspect_outputs(sess, scale: str) -> dict:
    """The analysis step's values for a session (named as INSPECT_OUTPUTS)."""
    return inspect_values(sess, scale)


def run_inspect(image, model_name, method, scale="per map", target=None, layer=None,
                mask=None, box=None) -> dict:
    """``/inspect``: analyse the image; errors are raised as clear ``gr.Error`` messages.
    Optional: ``target`` (a class index or name; blank: the prediction), ``layer`` (the CAM
    methods' layer path; blank: the model's default), ``mask`` (an uploaded PNG the size of the
    image, white = object: every localisation score uses it), ``box`` ("x0, y0, x1, y1" in image
    pixels: the object's box, when there is no mask)."""
    with user_errors("analysing the image"):
        return inspect_values(analyse(image, model_name, method, target, layer, mask, box),
                              scale)


def _pending_scores():
    import pandas as pd
    return pd.DataFrame([["…", "computing the scores of this analysis", "", ""]],
                        columns=SCORE_HEADERS)


def _status(sess) -> str:
    a = sess.analysis
    ms = a.timings.get("total_ms")
    took = f" · {ms / 1000:.2f} s" if ms is not None else ""
    mask = {"uploaded": " · scored against your mask",
            "box": " · scored against your box"}.get(sess.mask_source, "")
    return (f"<span class='av-ok'>{sess.model_name} on {sess.image_name}{took}{mask}</span>")


def _failed(e: Exception) -> dict:
    """Every output emptied and one message saying what was wrong."""
    err = to_gr_error(e, "analysing the image")
    title = getattr(err, "title", None) or "Cannot analyse"
    msg = f"<div class='av-error'><b>{title}.</b> {err.message}</div>"
    return {**cleared(), "status": msg}


def run_inspect_ui(image, model_name, method, scale, target=None, layer=None,
                   mask=None, box=None):
    """The browser's analysis, in steps (a generator of ``{name: value}``): the prediction and
    headline maps, then the gallery of every map. Like ``/inspect``, but a failure empties the
    outputs and says why once (no error on every output)."""
    try:
        sess = analyse(image, model_name, method, target, layer, mask, box)
        first = {**inspect_values(sess, scale, gallery=False), "scores": _pending_scores(),
                 "status": _status(sess)}
    except Exception as e:  # noqa: BLE001 - every failure is answered in the status line
        yield _failed(e)
        return
    # progressive: the prediction and headline maps first, then the gallery of every map
    yield first
    try:
        yield {"gal_all": all_maps(sess, scale)}
    except Exception as e:  # noqa: BLE001
        yield {"status": _failed(e)["status"]}


def selected_badge(model_name):
    """The catalogue's badge for the model just selected (nothing is built)."""
    try:
        return entry_badge_md(find_entry(model_name))
    except AttnvizError:
        return gr.skip()


def _already_shown(sess, image, model_name, method, *options) -> bool:
    """Whether ``sess`` already holds the analysis of (image, model, method, options)."""
    if not isinstance(sess, Session) or sess.dropped:
        return False
    try:
        method = V.check_method(method)
    except AttnvizError:
        return False
    return sess.request == request_key(image, model_name, method, *options)


def run_inspect_auto(image, model_name, method, scale, target=None, layer=None,
                     mask=None, box=None, sess=None):
    """A new image, model or method re-runs the analysis when it is fast (lite models); for a
    full-size model the previous results are cleared and Analyse runs it. An event that asks
    for the analysis already shown (an upload fires ``change`` more than once: the image
    cleared, then the file, then its URL) changes nothing."""
    if image is None:
        yield {}
        return
    try:
        entry = find_entry(model_name)
    except AttnvizError as e:
        yield _failed(e)
        return
    # the analysis this page already shows or that its previous event just made (an upload
    # fires change more than once: the image cleared, then the file, then its URL)
    sid = request_session()
    options = (target, layer, mask, box)
    if any(_already_shown(s, image, entry.name, method, *options)
           for s in (sess, SESSIONS.latest(sid))):
        yield {}
        return
    if not entry.is_lite:
        # the badge follows the selection at once (from the catalogue: nothing is built)
        yield {**cleared(), "badge": entry_badge_md(entry),
               "status": f"<span class='av-hint'><b>{entry.name}</b> is a "
                         "full-size model: press <b>Analyse</b> to run it.</span>"}
        return
    # the same request from the same page while it runs (an upload's repeated change events):
    # it runs once, the repeat waits for it and changes nothing
    with single_flight((sid, str(image), entry.name, str(method), *map(str, options))) as first:
        if not first or _already_shown(SESSIONS.latest(sid), image, entry.name, method, *options):
            yield {}
            return
        yield from run_inspect_ui(image, model_name, method, scale, target, layer, mask, box)


def rescale(sess, scale) -> dict:
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None:
        return {}
    with user_errors("redrawing the maps"):
        return headline(sess, scale)


def superseded(sess) -> bool:
    """True when this page has a newer analysis than ``sess``: a chained step (kind tabs, a
    slow attribution, scores) of an earlier analysis that ends after a new one began must not
    draw over it, nor write its old session back into the page's state."""
    if not isinstance(sess, Session) or sess.owner is None:
        return False
    latest = SESSIONS.latest(sess.owner)  # the page's newest analysis (sessions.add sets owner)
    return latest is not None and latest is not sess


def run_maps(sess, scale, selected="all") -> dict:
    """``/maps``: every kind tab for the session's analysis."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None or superseded(sess):
        return {}
    count("maps")
    with user_errors("drawing the attention maps"):
        out = kind_views(sess, scale, selected)
        sess.drawn = (scale, selected)
        return out


def run_maps_once(sess, scale, selected="all") -> dict:
    """The browser's kind tabs after an analysis: drawn unless already drawn for this analysis
    with this scale and selection (a repeated event changes nothing)."""
    if isinstance(sess, Session) and not sess.dropped:
        if sess.drawn == (scale, selected):
            return {}
        sess.drawn = (scale, selected)  # claimed now: a repeated chain that starts meanwhile skips
    return run_maps(sess, scale, selected)


def figure_for_kind(kind: str):
    """Gallery click -> that map's Plotly figure."""
    kinds = (kind,)
    def pick(sess, scale, evt: gr.SelectData):
        use(sess)  # this session's analysis was just used (sessions' LRU)
        if sess is None or evt is None:
            return gr.skip()
        recs = [r for r in of_kinds(sess.analysis.maps, kinds) if has_spatial(r)]
        i = evt.index if isinstance(evt.index, int) else 0
        if not 0 <= i < len(recs):
            return gr.skip()
        with user_errors("drawing the figure"):
            return record_figure(recs[i], sess, scale)
    return pick


def choices_for(model_name):
    """The target and layer choices of ``model_name`` ("index: name" for every class, searchable;
    the convolutional stages by path), both cleared."""
    from ..attribution.choice import cam_layers, class_choices
    try:
        model = MODELS.get(model_name).model
    except AttnvizError:
        return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
    return (gr.update(choices=class_choices(model), value=None),
            gr.update(choices=cam_layers(model), value=None))


def pick_class(sess, evt: gr.SelectData):
    """A click on a class of the top 5 -> explain that class."""
    if sess is None or evt is None or not isinstance(evt.value, str):
        return gr.skip()
    names = sess.analysis.classes or []
    if evt.value in names:
        return f"{names.index(evt.value)}: {evt.value}"
    return evt.value


def pick_query(evt: gr.SelectData):
    """Image click -> (x, y) in image pixels."""
    try:
        x, y = evt.index[:2]
        return float(x), float(y)
    except (TypeError, ValueError):
        return gr.skip(), gr.skip()


def run_affinity(sess, x, y, scale, head=None) -> dict:
    """The affinity rows of the query at image pixel (x, y): every affinity overlay with the query
    marked, and the explorer figure of the deepest affinity map. ``head``: the head selector's
    choice for multi-head maps ("mean over heads", "rollout across layers", "head 2")."""
    if superseded(sess):  # the page's state still holds an earlier analysis: query the new one
        sess = SESSIONS.latest(sess.owner)
    use(sess)  # this session's analysis was just used (sessions' LRU)
    with user_errors("computing the affinity of the query"):
        if sess is None:
            raise bad_request("Run an analysis first (Analyse, or /inspect), then choose a query "
                              "point.", "No analysis yet")
        h, w = sess.analysis.image.shape[:2]
        try:
            x, y = float(x), float(y)
        except OverflowError:  # an integer beyond any float (10**400)
            raise bad_request(f"The query point lies outside the image ({w} x {h} pixels): "
                              "a coordinate is too large.", "Query outside the image") from None
        except (TypeError, ValueError):
            raise bad_request(f"The query point must be two numbers (x, y) in image pixels, not "
                              f"{limits.echo(x)}, {limits.echo(y)}.") from None
        if not (0 <= x < w and 0 <= y < h) or not np.isfinite([x, y]).all():
            raise bad_request(f"The query ({x:.6g}, {y:.6g}) lies outside the image ({w} x {h} "
                              "pixels).", "Query outside the image")
        recs = V.queried_records(sess.analysis.maps)
        sess.query = (x, y)
        if head is not None:
            if head not in V.head_choices(sess.analysis.maps):
                raise bad_request(f"{head!r} is not a head of {sess.model_name}'s attention; "
                                  f"choose from {V.head_choices(sess.analysis.maps)}.")
            sess.head = head
        if not recs:  # an error, not a warning: API clients are told why too
            raise bad_request(f"{sess.model_name} has no position-affinity module, so there is "
                              "no affinity to query; lite_nonlocal, lite_danet and lite_sagan "
                              "have one.", "No affinity map")
        return {"gal_affinity": affinity_gallery(sess, scale),
                "plot_affinity": record_figure(recs[-1], sess, scale), "state": sess}


def run_scores(sess, full: bool = False) -> dict:
    """Pointing game (mask known), deletion / insertion AUC, attention-vs-attribution
    correlation, for the last analysis; computed once per analysis. Deletion / insertion run
    at once for lite models or on a GPU; for a full-size model on a CPU on request (``full``)."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None:
        if full:
            raise bad_request("Run an analysis first.", "No analysis yet")
        return {}
    if superseded(sess):
        return {}
    with user_errors("scoring the maps"), exclusive(sess):  # once per analysis
        update_scores(sess, full)
        return {"scores": scores_table(sess), "state": sess}


def run_scores_full(sess) -> dict:
    """All scores including deletion / insertion AUC, whatever the model's size."""
    return run_scores(sess, full=True)


def run_attribute(sess, scale, target=None, layer=None) -> dict:
    """Compute a slow attribution (IG, SmoothGrad, Occlusion, GradientSHAP, Score-CAM,
    Ablation-CAM) for the last analysis in the heavy queue, then redraw the headline. ``target``
    and ``layer`` (optional) are the analysis's own: another class or layer needs a new
    analysis (``/inspect`` with them), whose scores and headline follow it."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None or superseded(sess) or sess.method in sess.analysis.attributions:
        return {}
    with user_errors(f"computing {V.method_name(sess.method)}"):
        from ..attribution.choice import resolve_cam_layer, resolve_target
        model = MODELS.get(sess.model_name).model
        t, lay = resolve_target(model, target), resolve_cam_layer(model, layer)
        if (t is not None and t != sess.analysis.target) or (lay is not None and
                                                              lay != sess.layer):
            raise bad_request(f"This analysis explains class {sess.analysis.target} at layer "
                              f"{sess.layer or 'default'}; run /inspect with target={target!r}"
                              f" and layer={layer!r} to explain those.", "Analyse again")
        add_attribution(sess)
        return {**headline(sess, scale), "state": sess}


# ------------------------------------------------------------------------------ layout
def _gallery(label: str, elem_id: str, columns: int = 4, height: int | str = "auto",
             preview: bool = False) -> gr.Gallery:
    """A gallery of overlays: JPEG (quality 90: no exact pixels needed, ~100x cheaper to encode
    than PNG), whole images with their colour bars and captions beneath (the app's CSS, class
    av-tiles), a fixed column count."""
    return gr.Gallery(label=label, columns=columns, height=height, format="jpeg",
                      fit_columns=False, object_fit="contain", allow_preview=preview,
                      elem_id=elem_id, elem_classes=["av-tiles"])


def _left_column(ui: SimpleNamespace) -> None:
    examples = ensure_examples()
    first = next((p for p in examples if p.stem == "star"), examples[0])
    ui.first_example = str(first)
    ui.image = InputImage(value=str(first), label="Image", type="filepath",
                          sources=["upload", "clipboard"], height=170, elem_id="av-image")
    gr.Markdown("<span class='av-hint'>Click the image to choose an affinity query "
                "point.</span>", elem_id="av-click-hint")
    gr.Examples([[str(p)] for p in examples], inputs=[ui.image],
                label="Examples (object masks known)", examples_per_page=6,
                elem_id="av-examples", api_name="load_example")
    ui.model = gr.Dropdown(model_choices(), value=default_model(), label="Model",
                           allow_custom_value=True, elem_id="av-model")
    ui.badge = gr.Markdown(elem_id="av-badge")
    # full width: the longest choice ("Integrated Gradients (slow)") fits the box
    ui.method = gr.Dropdown(V.METHOD_CHOICES, value="gradcam", label="Attribution",
                            allow_custom_value=True, elem_id="av-method")
    ui.analyse = gr.Button("Analyse", variant="primary", elem_id="av-analyse")
    ui.status = gr.Markdown(elem_id="av-status")
    # what is explained and where: a class (type to search; a click in the top 5 picks one and
    # opens this box), a layer of the model's convolutional stages, and the user's own ground
    # truth; folded by default so that Analyse stays on a laptop's first screen
    with gr.Accordion("Class, layer, your own mask", open=False, elem_id="av-choices") as box:
        ui.target = gr.Dropdown([], value=None, label="Explain class (blank: the prediction)",
                                allow_custom_value=True, filterable=True, elem_id="av-target")
        ui.layer = gr.Dropdown([], value=None, label="Layer (CAM methods; blank: the default)",
                               allow_custom_value=True, elem_id="av-layer")
        ui.mask = InputImage(value=None, label="Object mask (optional PNG the size of the image, "
                             "white = object)", type="filepath", sources=["upload"], height=110,
                             elem_id="av-mask")
        ui.box = gr.Textbox(label="or the object's box: x0, y0, x1, y1 (image pixels; Enter)",
                            placeholder="e.g. 20, 30, 100, 110", elem_id="av-box")
    ui.choices_box = box
    # /inspect for API clients: the same analysis, raising its errors (Analyse answers in
    # the status line instead)
    ui.api_inspect = gr.Button(visible=False)


def _kind_tab(ui: SimpleNamespace, t) -> None:
    with gr.Tab(t.title, id=t.key) as tab:
        setattr(ui, f"tab_{t.key}", tab)
        if t.spec.queried:
            gr.Markdown("**Click the image to choose a query point**: each overlay shows where "
                        "that position attends (the query is marked with a white cross in a "
                        "ring).")
            with gr.Row():
                ui.qx = gr.Number(None, label="query x (image px)", precision=0,
                                  min_width=100, elem_id="av-qx")
                ui.qy = gr.Number(None, label="query y (image px)", precision=0,
                                  min_width=100, elem_id="av-qy")
                ui.head = gr.Dropdown([V.MEAN_HEADS], value=V.MEAN_HEADS, label="Heads",
                                      interactive=False, min_width=200, elem_id="av-head")
        if t.gallery:
            setattr(ui, f"gal_{t.key}", _gallery(t.gallery, f"av-gal-{t.key}",
                                                 columns=3 if t.spec.queried else 4))
        setattr(ui, f"plot_{t.key}", gr.Plot(label=t.plot, elem_id=f"av-plot-{t.key}"))
        for kind, name in zip(t.kinds[1:], t.extra_plots):
            setattr(ui, name, gr.Plot(label=K.get(kind).title, visible=False,
                                      elem_id=f"av-{name.replace('_', '-')}"))


def _right_column(ui: SimpleNamespace) -> None:
    with gr.Row(equal_height=False):
        ui.top5 = gr.Label(num_top_classes=5, label="Prediction (top 5)", scale=1,
                           min_width=200, elem_id="av-top5", elem_classes=["av-result"])
        ui.head_att = gr.Image(label="Strongest attention, deepest stage", interactive=False,
                               format="jpeg", height=260, scale=1, min_width=200,
                               elem_id="av-head-att", buttons=["download", "fullscreen"],
                               elem_classes=["av-result"])
        ui.head_attr = gr.Image(label="Attribution", interactive=False, format="jpeg",
                                height=260, scale=1, min_width=200, elem_id="av-head-attr",
                                buttons=["download", "fullscreen"], elem_classes=["av-result"])
    ui.agreement = gr.Markdown(elem_id="av-agreement", elem_classes=["av-result"])
    with gr.Row(equal_height=True, elem_id="av-kinds-row"):
        ui.kind_note = gr.Markdown(elem_id="av-kinds", elem_classes=["av-result"])
        # the colour bar says its scale; the toggle beside it switches the scale
        ui.scale = gr.Radio(list(V.SCALES), value="per map", label="Colour scale",
                            elem_id="av-scale", scale=0, min_width=240)
        ui.legend = gr.Image(show_label=False, interactive=False, format="png", height=40,
                             container=False, elem_id="av-legend", buttons=[])
    with gr.Tabs(elem_id="av-kind-tabs", elem_classes=["av-result"]) as ui.kind_tabs:
        with gr.Tab("All maps", id="all") as ui.tab_all:
            ui.gal_all = _gallery("Every spatial map and the attribution", "av-gal-all",
                                  columns=5, preview=True)
        for t in IV.KIND_TABS:
            _kind_tab(ui, t)
    with gr.Accordion("Scores", open=True, elem_id="av-scores-box", elem_classes=["av-result"]):
        with gr.Row():
            gr.Markdown("<span class='av-muted'>How well each map localises the object and "
                        "whether the prediction rests on what the attribution marks.</span>")
            ui.scores_full = gr.Button("Deletion / insertion", size="sm", scale=0,
                                       min_width=180, variant="secondary",
                                       elem_id="av-scores-full")
        # the whole table on the page (a dozen rows): no scrolling inside a box that cuts
        # the "(random ...)" references
        ui.scores = gr.Dataframe(headers=SCORE_HEADERS, interactive=False, wrap=True,
                                 column_widths=SCORE_WIDTHS, elem_id="av-scores",
                                 max_height=5000)
    with gr.Accordion("Summary (JSON)", open=False):
        ui.summary = gr.JSON(label="What /inspect returns")


def build(ui: SimpleNamespace) -> None:
    """Lay out the Inspect tab and wire its events; shared components go on ``ui``. The kind
    tabs are taken from the kind registry now, so a kind registered before the demo is built
    gets its tab."""
    IV.build_kind_tabs()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=330, elem_id="av-left"):  # the longest model label fits
            _left_column(ui)
        with gr.Column(scale=3, elem_id="av-right"):
            _right_column(ui)
    # the session's analysis: freed when it expires or its page closes (state.SESSIONS)
    ui.state = gr.State(None, time_to_live=limits.SESSION_TTL_SECONDS,
                        delete_callback=free_session)
    ui.kind_sel = gr.State("all")
    _wire(ui)


def _wire(ui: SimpleNamespace) -> None:
    for key in ["all"] + [t.key for t in IV.KIND_TABS]:
        getattr(ui, f"tab_{key}").select(lambda k=key: k, None, ui.kind_sel, queue=False,
                                         api_name=f"tab_{key}", api_visibility="private",
                                         show_progress="hidden")
    inspect_out = Outputs(ui, *INSPECT_OUTPUTS)
    ui_out = Outputs(ui, *INSPECT_OUTPUTS, *IV.KIND_OUTPUTS, *UI_TAIL)
    kind_out = Outputs(ui, *IV.KIND_OUTPUTS)
    head_out = Outputs(ui, *HEADLINE_OUTPUTS)
    attr_out = head_out + Outputs(ui, "state")
    score_out = Outputs(ui, "scores", "state")
    aff_out = Outputs(ui, "gal_affinity", "plot_affinity", "state")
    inputs = [ui.image, ui.model, ui.method, ui.scale, ui.target, ui.layer, ui.mask, ui.box]

    def chain(ev, suffix: str, vis: str, unmark: bool = True):
        """After an analysis: the kind tabs, then a slow attribution, then the scores."""
        ev = ev.then(kind_out.handler(run_maps_once if suffix else run_maps),
                     [ui.state, ui.scale, ui.kind_sel],
                     kind_out.components, api_name=f"maps{suffix}", api_visibility=vis,
                     show_progress="hidden")
        if unmark:
            ev = ev.then(None, js=UNMARK_STALE)
        ev = ev.then(attr_out.handler(run_attribute), [ui.state, ui.scale, ui.target, ui.layer],
                     attr_out.components, api_name=f"attribute{suffix}", api_visibility=vis,
                     concurrency_id="attribution",
                     concurrency_limit=1, show_progress="minimal",
                     show_progress_on=[ui.head_attr])
        ev.then(score_out.handler(run_scores), [ui.state], score_out.components,
                api_name=f"scores{suffix}", api_visibility=vis, concurrency_id="scores",
                concurrency_limit=2, show_progress="minimal", show_progress_on=[ui.scores])

    # API clients
    ev = ui.api_inspect.click(inspect_out.handler(run_inspect), inputs, inspect_out.components,
                              api_name="inspect", concurrency_id="inspect",
                              concurrency_limit=ANALYSES)
    chain(ev, "", "public", unmark=False)
    # the browser: the results column is marked stale at once, then the analysis replaces it
    ui.analyse.click(None, js=MARK_STALE)
    ev = ui.analyse.click(ui_out.stream(run_inspect_ui), inputs, ui_out.components,
                          api_name="inspect_ui", api_visibility="undocumented",
                          concurrency_id="inspect", concurrency_limit=ANALYSES,
                          trigger_mode="always_last",
                          show_progress="minimal", show_progress_on=[ui.top5])
    chain(ev, "_ui", "undocumented")
    # a new model lists its classes and layers (and clears the old choice)
    gr.on([ui.model.change, ui.demo.load], choices_for, [ui.model], [ui.target, ui.layer],
          api_name="choices", api_visibility="undocumented", show_progress="hidden",
          queue=False)
    ui.top5.select(pick_class, [ui.state], [ui.target], api_name="pick_class",
                   api_visibility="private", show_progress="hidden").then(
        lambda: gr.Accordion(open=True), None, [ui.choices_box], queue=False,
        api_visibility="private", show_progress="hidden")
    triggers = [ui.image.change, ui.model.change, ui.method.change, ui.target.change,
                ui.layer.change, ui.mask.change, ui.box.submit]
    gr.on(triggers, None, js=MARK_STALE)
    # the badge follows the selected model at once, before any analysis
    ui.model.change(selected_badge, ui.model, ui.badge, queue=False, api_name="badge",
                    api_visibility="undocumented", show_progress="hidden")
    ev = gr.on(triggers, ui_out.stream(run_inspect_auto), inputs + [ui.state], ui_out.components,
               api_name="inspect_auto", api_visibility="undocumented", concurrency_id="inspect",
               concurrency_limit=ANALYSES,
               trigger_mode="always_last", show_progress="minimal", show_progress_on=[ui.top5])
    chain(ev, "_auto", "undocumented")
    # the first screen is an analysis of the example already in place
    ev = ui.demo.load(ui_out.stream(run_inspect_auto), inputs, ui_out.components,
                      api_name="inspect_on_load", api_visibility="undocumented",
                      concurrency_id="inspect", concurrency_limit=ANALYSES,
                      show_progress="minimal",
                      show_progress_on=[ui.top5])
    chain(ev, "_load", "undocumented")
    ui.scores_full.click(score_out.handler(run_scores_full), [ui.state], score_out.components,
                         api_name="scores_full", concurrency_id="scores",
                         concurrency_limit=2, show_progress_on=[ui.scores])
    ui.scale.change(head_out.handler(rescale), [ui.state, ui.scale], head_out.components,
                    api_name="rescale", show_progress="hidden").then(
        kind_out.handler(run_maps), [ui.state, ui.scale, ui.kind_sel], kind_out.components,
        api_name="maps_rescale", api_visibility="undocumented", show_progress="hidden")
    aff_in = [ui.state, ui.qx, ui.qy, ui.scale, ui.head]
    ui.image.select(pick_query, None, [ui.qx, ui.qy], api_name="pick_query",
                    api_visibility="private", show_progress="hidden").then(
        aff_out.handler(run_affinity), aff_in, aff_out.components,
        api_name="affinity", show_progress="minimal").success(
        # the headline and the all-maps tiles mark the new query too; the result is brought
        # into view beside the image
        head_out.handler(rescale), [ui.state, ui.scale], head_out.components,
        api_name="affinity_headline", api_visibility="private", show_progress="hidden").then(
        None, js=SHOW_AFFINITY)
    gr.on([ui.qx.submit, ui.qy.submit], aff_out.handler(run_affinity), aff_in,
          aff_out.components, api_name="affinity_typed", api_visibility="undocumented")
    ui.head.input(aff_out.handler(run_affinity), aff_in, aff_out.components,
                  api_name="affinity_head", api_visibility="undocumented",
                  show_progress="minimal")
    for t in IV.KIND_TABS:
        if t.gallery:
            getattr(ui, f"gal_{t.key}").select(
                figure_for_kind(t.kinds[0]), [ui.state, ui.scale], getattr(ui, f"plot_{t.key}"),
                api_name=f"figure_{t.key}", api_visibility="undocumented",
                show_progress="hidden")
