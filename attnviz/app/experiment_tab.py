"""Experiment: does the attention matter, do the maps depend on the weights, how good is a model
over many images, and training a lite model.

Events: ``ablate`` (gate ablation on the Inspect image and model), ``sanity`` (cascading
randomisation strip), ``evaluate`` (N synthetic images, with progress), ``train`` (a lite model on
synthetic shapes or an uploaded zip of class folders, saved to runs/<name>, then offered in the
model lists). Training, evaluation and the sanity check are heavy jobs (:mod:`.jobs`): one at a
time, within the limits of :mod:`.limits`, stopped at their next step when cancelled. Training
has a queue of its own, so a request for an evaluation or a sanity check during a training gets
at once a "busy until ..." answer instead of waiting behind it.

The handlers are in :mod:`.experiment_checks` (ablation, sanity), :mod:`.experiment_evaluate`
and :mod:`.experiment_train`; this module lays the tab out and wires its events.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from . import limits
from .components import Outputs
from .catalogue import default_model
from .uploads import UploadedFile
from .experiment_checks import (  # noqa: F401 - re-exported
    ABLATION_HEADERS, SANITY_HEADERS, SANITY_METHODS, ZERO_INIT_BLOCKS, ablation_names,
    run_ablation, run_sanity)
from .experiment_evaluate import (  # noqa: F401 - re-exported
    EVAL_DATA, eval_data_for, eval_data_value, evaluable, evaluate_choices, knows_shapes,
    run_evaluate)
from .experiment_train import TRAIN_OUTPUTS, run_train, time_left  # noqa: F401 - re-exported


def limits_markdown() -> str:
    """The limits a user can reach here, shown under the Train button."""
    return "<span class='av-hint'>Limits: " + " ".join(limits.describe()[1:]) + "</span>"


def build(ui: SimpleNamespace) -> None:
    from ..models.registry import list_models
    gr.Markdown("Gate ablation and the sanity check use the **image and model chosen in the "
                "Inspect tab**.")
    with gr.Accordion("Gate ablation: does each module matter for this prediction?", open=True):
        with gr.Row():
            ui.abl_run = gr.Button("Ablate each module", variant="primary", scale=0,
                                   min_width=200, elem_id="av-ablate")
            ui.abl_note = gr.Markdown()
        # neutral: the chart's axis and the note above say logit or probability change
        ui.abl_plot = gr.Plot(label="Change per module when it is neutralised (sorted)",
                              elem_id="av-abl-plot")
        ui.abl_table = gr.Dataframe(headers=ABLATION_HEADERS, interactive=False,
                                    label="One row per attention module", max_height=300)
    with gr.Accordion("Sanity check: cascading randomisation", open=False):
        with gr.Row():
            ui.san_method = gr.Dropdown(SANITY_METHODS, value="gradcam", label="Map",
                                        scale=1)
            ui.san_run = gr.Button("Randomise layer by layer", variant="primary", scale=0,
                                   min_width=220)
        ui.san_note = gr.Markdown()
        ui.san_strip = gr.Gallery(label="Map after each step (original first; each on its own "
                                  "colour scale, bar beneath)", columns=4, height="auto",
                                  format="png", fit_columns=False, object_fit="contain",
                                  elem_id="av-san-strip", elem_classes=["av-tiles"])
        with gr.Row():
            ui.san_plot = gr.Plot(label="Similarity to the original map")
            ui.san_table = gr.Dataframe(headers=SANITY_HEADERS, interactive=False,
                                        max_height=300)
    with gr.Accordion("Evaluate a model: accuracy and localisation", open=False):
        first = default_model()
        with gr.Row():
            ui.eval_model = gr.Dropdown(evaluate_choices(), value=first,
                                        label="Model", allow_custom_value=True, scale=2,
                                        elem_id="av-eval-model")
            ui.eval_data = gr.Radio(list(EVAL_DATA), value=eval_data_value(first) or EVAL_DATA[0],
                                    label="Data", scale=2, elem_id="av-eval-data")
        with gr.Row():
            ui.eval_zip = UploadedFile(label="Zip of class folders named after the model's "
                                       "labels (cat/001.jpg, dog/002.jpg, ...)",
                                       file_types=[".zip"], type="filepath", scale=2,
                                       elem_id="av-eval-zip")
            ui.eval_n = gr.Slider(50, 2000, value=200, step=50, label="Images (synthetic)",
                                  scale=2)
            ui.eval_run = gr.Button("Evaluate", variant="primary", scale=1,
                                    elem_id="av-eval-run")
        ui.eval_note = gr.Markdown(elem_id="av-eval-note")
        ui.eval_table = gr.Dataframe(headers=["map", "kind", "grid", "pointing game",
                                              "energy in object"], interactive=False,
                                     label="Localisation per map")
        with gr.Accordion("Full result (JSON)", open=False):
            ui.eval_json = gr.JSON()
    with gr.Accordion("Train a lite model", open=False):
        with gr.Row():
            ui.tr_arch = gr.Dropdown(list_models("lite"), value="lite_cbam",
                                     label="Architecture")
            ui.tr_name = gr.Textbox(label="Name of the new model", placeholder="my_cbam",
                                    max_lines=1)
        with gr.Row():
            ui.tr_data = gr.Radio(["synthetic shapes", "uploaded zip of class folders"],
                                  value="synthetic shapes", label="Data")
            ui.tr_zip = UploadedFile(label="Zip of class folders (cat/001.jpg, dog/002.jpg, "
                                     "...)",
                                     file_types=[".zip"], type="filepath")
        with gr.Row():
            ui.tr_epochs = gr.Slider(1, 20, value=2, step=1, label="Epochs")
            ui.tr_images = gr.Slider(64, 8000, value=1024, step=64, label="Images per epoch "
                                     "(synthetic data)")
            with gr.Column(scale=0, min_width=140):
                ui.tr_run = gr.Button("Train", variant="primary", elem_id="av-train")
                # stops the training at its next step (the job's request is cancelled)
                ui.tr_stop = gr.Button("Stop", variant="stop", visible=False,
                                       elem_id="av-train-stop")
        ui.tr_limits = gr.Markdown(limits_markdown(), elem_id="av-limits")
        # the training's progress bar (epoch, loss, time left) is drawn over this box: it keeps
        # a height while empty
        ui.tr_note = gr.Markdown(elem_id="av-train-note")
        with gr.Row():
            ui.tr_hist = gr.Dataframe(headers=["epoch", "loss", "val_acc"], interactive=False,
                                      label="History per epoch")
            ui.tr_card = gr.JSON(label="Model card")

    ui.abl_run.click(run_ablation, [ui.image, ui.model], [ui.abl_plot, ui.abl_table,
                                                          ui.abl_note],
                     api_name="ablate", concurrency_id="ablate", concurrency_limit=2)
    ui.san_run.click(run_sanity, [ui.image, ui.model, ui.san_method],
                     [ui.san_strip, ui.san_plot, ui.san_table, ui.san_note], api_name="sanity",
                     concurrency_id="jobs", concurrency_limit=1)
    ui.eval_run.click(run_evaluate, [ui.eval_model, ui.eval_n, ui.eval_data, ui.eval_zip],
                      [ui.eval_note, ui.eval_table, ui.eval_json], api_name="evaluate",
                      concurrency_id="jobs", concurrency_limit=1,
                      show_progress_on=[ui.eval_note])  # one progress bar, one error
    ui.eval_model.change(eval_data_for, ui.eval_model, ui.eval_data, queue=False,
                         api_visibility="private", show_progress="hidden")


def wire(ui: SimpleNamespace) -> None:
    """Events that reach into other tabs (built after this one)."""
    def running(on: bool):
        """Train disabled and Stop shown while a training runs."""
        return gr.Button(interactive=not on), gr.Button(visible=on)

    buttons = [ui.tr_run, ui.tr_stop]
    ui.tr_run.click(lambda: running(True), None, buttons, queue=False, api_visibility="private",
                    show_progress="hidden")
    out = Outputs(ui, *TRAIN_OUTPUTS)
    ev = ui.tr_run.click(out.handler(run_train), [ui.tr_arch, ui.tr_data, ui.tr_zip,
                                                  ui.tr_epochs, ui.tr_images, ui.tr_name],
                         out.components,
                         api_name="train", concurrency_id="train", concurrency_limit=1,
                         show_progress_on=[ui.tr_note])  # one progress bar
    ev.then(lambda: running(False), None, buttons, queue=False, api_visibility="private",
            show_progress="hidden")
    ui.tr_stop.click(lambda: (*running(False), "**Stopped**: the training ends at its next "
                              "step and saves nothing."), None, buttons + [ui.tr_note],
                     cancels=[ev], queue=False, api_visibility="private")
