"""Inspect: one image, one model. Prediction, headline overlays, a tab per attention kind with a
gallery and a Plotly figure, the affinity explorer (click the image), scores. The values come
from :mod:`~attnviz.app.analysis`, :mod:`~attnviz.app.inspect_views` and
:mod:`~attnviz.app.scores_view`; the handlers are in :mod:`~attnviz.app.inspect_handlers`; this
module lays the tab out and wires its events, every handler returning its outputs by name
(:class:`~attnviz.app.components.Outputs`).

API events (api_name): ``inspect`` (analysis + headline + every overlay + JSON summary),
``maps`` (the kind tabs), ``attribute`` (a slow attribution, in the heavy queue), ``scores``,
``scores_full``, ``affinity`` (query at pixel x, y), ``rescale`` (per-map / shared colour scale),
``figure_<kind>`` (a gallery click picks the figure).

In the browser the same analysis runs as ``inspect_ui`` (Analyse) and ``inspect_auto`` (a new
image, a lite model, the first screen): these never raise; a failure empties every output and
says why once, in the status line under Analyse (an image or an object mask that cannot be
used is taken out of its box). While an analysis runs, the results column is
marked stale (greyed, "Analysing…").
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from .. import kinds as K
from . import limits
from . import views as V
from .analysis import (add_attribution, analyse, count, request_key,  # noqa: F401 - re-exported
                       shown_method, single_flight, summary)
from .capacity import analyses_at_once
from .components import InputImage, Outputs
from .examples import ensure_examples, ensure_relational_examples
from . import inspect_views as IV
from .inspect_views import HEADLINE_OUTPUTS
from .inspect_handlers import (  # noqa: F401 - the handlers, also reachable from here
    choices_for, figure_for_kind, inspect_outputs, pick_class, pick_query, rescale,
    note_request, run_affinity, run_attribute, run_inspect, run_inspect_auto, run_inspect_ui,
    run_maps, run_maps_once, run_maps_shown, run_scores, run_scores_full, run_tab,
    selected_badge, superseded)
from .scores_view import SCORE_HEADERS, SCORE_WIDTHS
from .catalogue import default_model, model_choices
from .sessions import free_session

# analysis requests at once (4 per core; one batched pass per model, see .capacity)
ANALYSES = analyses_at_once()
INSPECT_OUTPUTS = ("top5", "badge", *HEADLINE_OUTPUTS, "summary", "state")
# the browser's analysis also clears the tabs and scores of the previous one, says how it went
# and empties the image's or the mask's box when that file was refused
UI_TAIL = ("scores", "status", "image", "mask")  # the browser's analysis fills INSPECT_OUTPUTS, the
# kind tabs' outputs (inspect_views.KIND_OUTPUTS, taken when the demo is built) and these

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
    # the shapes (their object's mask known) and two relational images (the partner and the
    # distractor outlined in the affinity explorer, the query on the query square)
    shown = examples + ensure_relational_examples()
    gr.Examples([[str(p)] for p in shown], inputs=[ui.image],
                label="Examples (object masks known)",
                examples_per_page=len(shown),
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
        ev = getattr(ui, f"tab_{key}").select(lambda k=key: k, None, ui.kind_sel, queue=False,
                                              api_name=f"tab_{key}", api_visibility="private",
                                              show_progress="hidden")
        t = next((t for t in IV.KIND_TABS if t.key == key), None)
        if t is not None:  # a kind tab's overlays and figures are drawn when it is opened
            tab_out = Outputs(ui, *[n for n in IV.KIND_OUTPUTS if n in (
                f"gal_{key}", f"plot_{key}", *t.extra_plots)])
            ev.then(tab_out.handler(run_tab), [ui.state, ui.scale, ui.kind_sel],
                    tab_out.components, api_name=f"draw_tab_{key}", api_visibility="private",
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
        """After an analysis: the kind tabs, then a slow attribution, then the scores. Each
        step is "always_last": triggered by a later analysis of the page while the same step
        of an earlier one still runs, it runs once that one ends (Gradio's default, "once",
        would drop it, and the earlier step, no longer current, writes nothing: the later
        analysis would never get its scores)."""
        ev = ev.then(kind_out.handler(run_maps_once if suffix else run_maps),
                     [ui.state, ui.scale, ui.kind_sel],
                     kind_out.components, api_name=f"maps{suffix}", api_visibility=vis,
                     show_progress="hidden", trigger_mode="always_last")
        if unmark:
            ev = ev.then(None, js=UNMARK_STALE)
        ev = ev.then(attr_out.handler(run_attribute), [ui.state, ui.scale, ui.target, ui.layer],
                     attr_out.components, api_name=f"attribute{suffix}", api_visibility=vis,
                     concurrency_id="attribution",
                     concurrency_limit=1, show_progress="minimal",
                     show_progress_on=[ui.head_attr], trigger_mode="always_last")
        ev.then(score_out.handler(run_scores), [ui.state], score_out.components,
                api_name=f"scores{suffix}", api_visibility=vis, concurrency_id="scores",
                concurrency_limit=2, show_progress="minimal", show_progress_on=[ui.scores],
                trigger_mode="always_last")

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
    # the mask by the user's upload or clearing only (input): the box emptied by a refusal
    # (UI_TAIL) asks for no analysis without it, which would replace the refusal's message
    triggers = [ui.image.change, ui.model.change, ui.method.change, ui.target.change,
                ui.layer.change, ui.mask.input, ui.box.submit]
    gr.on(triggers, None, js=MARK_STALE)
    # what the page now asks for, noted at once (outside the queue): an earlier analysis of the
    # page still waiting or running, and its chained steps, give way to it
    gr.on(triggers, note_request, inputs, None, queue=False, api_name="asked",
          api_visibility="private", show_progress="hidden", trigger_mode="always_last")
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
        kind_out.handler(run_maps_shown), [ui.state, ui.scale, ui.kind_sel],
        kind_out.components, api_name="maps_rescale", api_visibility="undocumented",
        show_progress="hidden")
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
            fig_out = Outputs(ui, f"plot_{t.key}")
            getattr(ui, f"gal_{t.key}").select(
                fig_out.handler(figure_for_kind(t.kinds[0], f"plot_{t.key}")),
                [ui.state, ui.scale], fig_out.components,
                api_name=f"figure_{t.key}", api_visibility="undocumented",
                show_progress="hidden")
