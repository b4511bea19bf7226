"""The attnviz Gradio app, one module per tab; ``app.py`` at the top builds and launches it.

    from attnviz.app import build_demo, launch_kwargs
    demo = build_demo()
    demo.launch(**launch_kwargs())

Queues: analyses run in the "inspect" group (several at once); slow attributions have the
"attribution" group, evaluation and the sanity check the "jobs" group (one at a time) and training
its own, so they never hold up an analysis; scores and ablation have small groups of their own.
Training, evaluation and the sanity check also take the one heavy-job slot (:mod:`.jobs`), held
until the work has really stopped. Long jobs wait in a room of their own, one per session
(:mod:`.admission`); requests are size-capped and error messages cut (:mod:`.guards`); every
limit is in :mod:`.limits` (listed in the README's Reliability section).
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import gradio as gr

from .leftovers import stop_on_sigterm  # noqa: F401 - app.py calls it
from .catalogue import model_choices
from .sessions import free_request_session, mark_page

CSS = """
#av-header h1 {margin-bottom: 0.1em;}
#av-header p {margin-top: 0; color: var(--body-text-color-subdued);}
.av-badge {display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.85em;
           font-weight: 600; margin-right: 4px;}
.av-random {background: #fde68a; color: #7c2d12; border: 1px solid #f59e0b;}
.av-trained {background: #dcfce7; color: #14532d; border: 1px solid #22c55e;}
.av-own {background: #e0f2fe; color: #0c4a6e; border: 1px solid #38bdf8; font-weight: 500;}
.av-weak {background: #ffedd5; color: #7c2d12; border: 1px solid #fb923c;}
.av-frame {font-size: 0.92em; color: #1e3a8a;}
.av-frame-warn {color: #9a3412;}
.av-muted {color: var(--body-text-color-subdued); font-size: 0.9em;}
.av-hint {font-size: 0.85em; color: var(--body-text-color-subdued);}
#av-legend img {object-fit: contain; max-height: 40px;}
#av-kind-tabs button[role=tab][disabled] {display: none;}
#av-head-att img, #av-head-attr img, .av-fill img {width: 100%; height: 100%;
    object-fit: contain;}
.caption-label {white-space: normal !important; font-size: 0.72em !important;
    line-height: 1.15; max-width: 96% !important; overflow: visible !important;}
#av-legend {max-width: 380px;}
#av-image img {cursor: crosshair;}  /* not upscaled: Gradio's click coordinates assume that */
.av-compare-row {border-top: 1px solid var(--border-color-primary); padding-top: 6px;}
/* a laptop screen (1280x800) shows the whole left column, Analyse included: the examples are
   one strip of small thumbnails (eight: the six shapes and two relational images) */
#av-examples .gallery {gap: 2px !important; flex-wrap: wrap;}
#av-examples .gallery-item .container.gallery {width: 30px !important; height: 30px !important;}
#av-scale .wrap {flex-wrap: nowrap;}
#av-scale label {white-space: nowrap;}
/* overlay galleries: every tile is the whole image, its colour bar and its caption beneath it,
   whatever the image's shape and the screen's width (the gallery grows instead of scrolling) */
.av-tiles {height: auto !important; overflow: visible !important;}
.av-tiles .grid-wrap {height: auto !important; max-height: none !important;
    overflow: visible !important;}
.av-tiles .grid-container {grid-template-rows: none !important; grid-auto-rows: auto !important;
    align-items: start;}
.av-tiles .thumbnail-item {aspect-ratio: auto !important; height: auto !important;
    display: flex !important; flex-direction: column; overflow: visible !important;}
.av-tiles .thumbnail-item > img {width: 100% !important; height: auto !important;
    max-height: 360px; object-fit: contain !important;}
.av-tiles .caption-label {position: static !important; max-width: none !important;
    white-space: normal !important; overflow: visible !important; opacity: 1 !important;
    text-overflow: clip !important; border: 0 !important; border-radius: 0 !important;
    border-top: 1px solid var(--border-color-primary) !important; text-align: center;
    font-size: 0.74em !important; line-height: 1.25; padding: 3px 4px !important;
    overflow-wrap: anywhere;}
@media (max-width: 700px) {
  .av-tiles .grid-container {grid-template-columns: repeat(2, minmax(0, 1fr)) !important;}
}
/* the note of the kinds present keeps a readable width: the row wraps on a phone */
#av-kinds-row {flex-wrap: wrap !important;}
#av-kinds {flex: 1 1 220px !important; min-width: 220px !important;}
/* Scores on a phone: score, map and value share the width (no word broken, "(random ...)"
   whole); the column of meanings, a paragraph per score, is left out there */
@media (max-width: 700px) {
  #av-scores thead th:nth-child(4), #av-scores [role=gridcell]:nth-child(4) {
      display: none !important;}
  #av-scores thead th:nth-child(1), #av-scores [role=gridcell]:nth-child(1) {--av-w: 36%;}
  #av-scores thead th:nth-child(2), #av-scores [role=gridcell]:nth-child(2) {--av-w: 36%;}
  #av-scores thead th:nth-child(3), #av-scores [role=gridcell]:nth-child(3) {--av-w: 28%;}
  #av-scores thead th:nth-child(-n+3), #av-scores [role=gridcell]:nth-child(-n+3) {
      width: var(--av-w) !important; min-width: 0 !important; max-width: none !important;
      flex: 0 0 var(--av-w) !important;}
  #av-scores table.header-table {width: 100% !important; table-layout: fixed;}
}
/* an image's or a gallery's title sits above it, never over the map */
#av-head-att.block, #av-head-attr.block, .av-fill.block {display: flex !important;
    flex-direction: column;}
#av-head-att label[data-testid=block-label], #av-head-attr label[data-testid=block-label],
.av-fill label[data-testid=block-label], .av-tiles label[data-testid=block-label] {
    position: static !important; margin: 4px 4px 2px 4px; flex: none; align-self: flex-start;}
#av-head-att .image-container, #av-head-attr .image-container, .av-fill .image-container {
    flex: 1 1 0; min-height: 0; height: auto !important;}
/* a dropdown's text stops before its arrow (Gradio draws the arrow over the input) */
.secondary-wrap > input[role=combobox] {padding-right: 24px !important;}
/* labels wrap instead of being cut */
#av-head-att label[data-testid=block-label], #av-head-attr label[data-testid=block-label],
.av-fill label[data-testid=block-label] {white-space: normal; max-width: calc(100% - 64px);
    line-height: 1.2;}
#av-head-att label[data-testid=block-label] span, #av-head-attr label[data-testid=block-label] span
    {flex-shrink: 0;}
/* the analysis running: the previous results are greyed under a busy sign */
#av-right.av-stale .av-result {opacity: 0.35; filter: grayscale(0.6);}
#av-right.av-stale::before {content: "Analysing… the results below are from the previous analysis";
    display: block; padding: 4px 10px; border-radius: 8px; font-size: 0.9em; font-weight: 600;
    background: #e0e7ff; color: #3730a3; border: 1px solid #a5b4fc;}
.av-error {padding: 6px 10px; border-radius: 8px; background: #fee2e2; color: #7f1d1d;
    border: 1px solid #fca5a5; font-size: 0.92em;}
.av-ok {font-size: 0.85em; color: var(--body-text-color-subdued);}
/* a running job's progress bar is drawn over its note: the note keeps room for it */
#av-train-note, #av-eval-note {min-height: 72px;}
"""

HEADER = ("# attnviz\nWhat the attention modules inside a CNN compute (CBAM, SE, SK, SGE, "
          "non-local, DANet, SAGAN, SCNet), beside Captum attributions.")


def build_demo(models: dict | None = None) -> gr.Blocks:
    """Build the Blocks app (not launched). ``models``: {name: nn.Module or a function returning
    one}, served beside the shipped models (see :mod:`attnviz.external`)."""
    from ..models.external import register_models
    register_models(models)
    from . import cache_fix, compare_tab, experiment_tab, export, inspect_tab, models_tab

    cache_fix.install()
    from . import session_configs
    session_configs.install()  # each API call's new session: configs built only if read
    from . import capacity
    capacity.configure()  # one torch thread per analysis, analyses side by side
    from . import user_models
    export.remove_orphans()  # what a server that is gone left behind
    user_models.remove_orphans()

    ui = SimpleNamespace()
    with gr.Blocks(title="attnviz · attention inside CNNs") as demo:
        ui.demo = demo
        gr.Markdown(HEADER, elem_id="av-header")
        with gr.Tabs(elem_id="av-tabs") as ui.tabs:
            with gr.Tab("Inspect", id="inspect"):
                inspect_tab.build(ui)
            with gr.Tab("Compare", id="compare"):
                compare_tab.build(ui)
            with gr.Tab("Experiment", id="experiment"):
                experiment_tab.build(ui)
            with gr.Tab("Models", id="models"):
                models_tab.build(ui)
            with gr.Tab("Export", id="export"):
                export.build(ui)
            with gr.Tab("Statistics", id="stats"):
                from . import stats_tab  # the dataset statistics and relational links tab
                stats_tab.build(ui)
        ui.model_dropdowns = [ui.model, ui.cmp_models, ui.eval_model, ui.card_model]
        # operations: resident models and hooks left on them (for monitoring and the tests)
        health_btn = gr.Button(visible=False)
        health_out = gr.JSON(visible=False)
        health_btn.click(health, None, health_out, api_name="health",
                         api_visibility="undocumented", queue=False)
        experiment_tab.wire(ui)
        # a page that closes frees its analysis now (Gradio keeps closed sessions' state 1 h)
        demo.unload(free_request_session)
        # every page load offers the current catalogue (checkpoints appear, models get trained)
        demo.load(refresh_choices, None, ui.model_dropdowns, api_name="model_choices",
                  api_visibility="undocumented", show_progress="hidden").then(
            models_tab.run_models, None, [ui.models_table, ui.models_names],
            api_name="models_on_load", api_visibility="undocumented", show_progress="hidden")
    demo.queue(default_concurrency_limit=4)
    from . import admission, guards, optional_inputs
    guards.install(demo)
    optional_inputs.install(demo)  # raw HTTP requests may leave out target, layer, mask
    admission.install(demo)  # the queue's limits, long jobs apart from analyses
    return demo


def health(request: gr.Request) -> dict:
    """Operations: models resident in the cache (device, autocast and the measurement that
    decided it, hooks: ``hooks_in_flight`` held by requests running on the model now,
    ``hooks_leaked`` left when none runs, which must stay 0), the heavy job running (named only
    to the session that started it), and the sessions' memory."""
    from ..capture.recorder import hook_count
    from . import jobs
    from .components import IN_FLIGHT
    from .model_cache import MODELS
    out = {}
    for loaded in MODELS.loaded():
        m = loaded.model
        for _ in range(20):  # a consistent reading: no model call started or ended meanwhile
            before = IN_FLIGHT.snapshot()
            hooks = hook_count(m)
            if IN_FLIGHT.snapshot() == before:
                break
        running = before[1].get(id(m), 0) + before[1].get(0, 0)
        out[loaded.name] = {"hooks": hooks, "requests_running": running,
                            "hooks_in_flight": hooks if running else 0,
                            "hooks_leaked": 0 if running else hooks,
                            "training": m.training,
                            "device": str(next(m.parameters()).device),
                            "autocast": loaded.amp, "autocast_check": loaded.amp_check}
    from .analysis import work
    from .sessions import SESSIONS
    session = getattr(request, "session_hash", None)
    return {"models": out, "loads": MODELS.loads, "job": jobs.current(session),
            "jobs": jobs.stats(), "sessions": SESSIONS.stats(), "work": work()}


def refresh_choices(request: gr.Request):
    """Fresh choices for every model dropdown (values kept); the session is a page's (its load
    event runs this), so its analysis is not dropped after the API sessions' idle time."""
    mark_page(request)
    from .experiment_tab import evaluate_choices
    full = model_choices()
    return (gr.Dropdown(choices=full), gr.Dropdown(choices=full),
            gr.Dropdown(choices=evaluate_choices()), gr.Dropdown(choices=full))


def launch_kwargs() -> dict:
    """Arguments for ``demo.launch``: host and port from GRADIO_SERVER_NAME / _PORT (default
    127.0.0.1:7860), theme and CSS (Gradio 6 takes them in launch), the file and request size
    limits."""
    from . import guards, json_api, limits
    return dict(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
        css=CSS,
        max_file_size=f"{limits.FILE_MAX_MB}mb",
        # request bodies over the limit: 413; then the lean JSON route (json_api) for programs
        app_kwargs={"middleware": guards.middleware() + json_api.middleware()},
        show_error=True,  # Gradio's own refusals (wrong number of inputs, ...) say why too
        state_session_capacity=2000,
        footer_links=["api", "gradio"],
    )
