"""Experiment: does the attention matter, do the maps depend on the weights, how good is a model
over many images, and training a lite model.

Events: ``ablate`` (gate ablation on the Inspect image and model), ``sanity`` (cascading
randomisation strip), ``evaluate`` (N synthetic images, with progress), ``train`` (a lite model on
synthetic shapes or an uploaded zip of class folders, saved to runs/<name>, then offered in the
model lists). Training, evaluation and the sanity check are heavy jobs (:mod:`.jobs`): one at a
time, within the limits of :mod:`.limits`, stopped at their next step when cancelled. Training
has a queue of its own, so a request for an evaluation or a sanity check during a training gets
at once a "busy until ..." answer instead of waiting behind it.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np

from . import jobs, limits
from .. import kinds as K
from ..analysis.labels import group_labels
from . import views as V
from .components import Outputs, gpu
from .errors import bad_request, user_errors
from ..errors import AttnvizError
from .catalogue import catalogue, default_model, find_entry, model_choices
from .model_cache import MODELS
from .inspect_views import tile
from .uploads import UploadedFile

SANITY_METHODS = [("Grad-CAM", "gradcam"), ("Saliency", "saliency"),
                  ("attention maps (all spatial, averaged)", "attention")]
# blocks whose output enters the residual stream through a weight initialised at 0
ZERO_INIT_BLOCKS = ("nonlocal", "danet_pam", "danet_cam", "self_attn")
ABLATION_HEADERS = ["layer", "block", "kind", "p before", "p after", "change", "logit change"]
SANITY_HEADERS = ["step", "randomised", "Spearman", "Pearson", "SSIM", "changed"]


def _image_and_model(image, model_name):
    from ..data.images import load_image
    if image is None:
        raise bad_request("Choose an image in the Inspect tab first.", "No image")
    loaded = MODELS.get(model_name)
    return load_image(image), loaded


# ------------------------------------------------------------------------------ ablation
@gpu
def _ablate(model, pil):
    # forward passes on the shared model: under its lock, or a Captum call running in another
    # thread would see them through its layer hooks
    from ..attribution.explain import model_lock
    from ..scores.metrics import gate_ablation
    with model_lock(model):
        return gate_ablation(model, pil)


def run_ablation(image, model_name):
    """Neutralise each attention module in turn: the change of the predicted class's
    probability, as a sorted bar chart and a table (one row per module)."""
    import pandas as pd
    from ..render.figures import bars_figure
    with user_errors("ablating the attention modules"):
        pil, loaded = _image_and_model(image, model_name)
        rows = _ablate(loaded.model, pil)
        if not rows:
            raise bad_request(f"{loaded.name} has no attention module to ablate (it is a plain "
                              "ResNet); choose a model with attention.", "Nothing to ablate")
        classes = loaded.model.info.classes
        t = rows[0]["target"]
        cname = classes[t] if classes and t < len(classes) else f"class {t}"
        names = ablation_names(rows)
        saturated = max(abs(r["delta"]) for r in rows) < 1e-3
        if saturated:  # a confident model: the probability barely moves, the logit does
            fig = bars_figure(names, [r["delta_logit"] for r in rows],
                              f"{loaded.name}: change of the '{cname}' logit when each module "
                              f"is neutralised (p = {rows[0]['p_before']:.4f} with all modules)",
                              "logit change (after - before)")
        else:
            fig = bars_figure(names, [r["delta"] for r in rows],
                              f"{loaded.name}: change of p('{cname}') when each module is "
                              f"neutralised (p = {rows[0]['p_before']:.3f} with all modules)",
                              "probability change (after - before)")
        fig.update_layout(margin=dict(l=220, r=20, t=60, b=50))
        df = pd.DataFrame([[r["layer"], r["block"], r["kind"], round(r["p_before"], 4),
                            round(r["p_after"], 4), round(r["delta"], 4),
                            round(r["delta_logit"], 3)] for r in rows],
                          columns=ABLATION_HEADERS)
        badge = "" if loaded.trained else " ⚠ random weights: these effects are not learned."
        if max(abs(r["delta"]) for r in rows) < 1e-4:
            badge += " No single module changes the prediction by more than 1e-4"
            zero_init = sorted({K.block_display_name(r["block"]) for r in rows
                                if r["block"] in ZERO_INIT_BLOCKS})
            if zero_init and not loaded.trained:  # only about the blocks this model has
                badge += (f" (untrained {' and '.join(zero_init)} blocks start with their "
                          "residual weight at 0)")
            badge += "."
        what = "Logit change" if saturated else "Probability change"
        md = (f"**{len(rows)} attention taps** neutralised one at a time (gates set to 1, "
              f"affinities uniform); predicted class **{cname}**. Bars: **{what.lower()}** of "
              f"'{cname}' (after - before)"
              + (" — the probability is saturated, so the logit shows the effect."
                 if saturated else ".") + badge)
        return fig, df, md


def ablation_names(rows) -> list[str]:
    """One bar name per ablated tap: the module's distinguishing path (any naming) and what."""
    labels = group_labels([(r["tap"], r["layer"], (r["block"], r["kind"])) for r in rows])
    return [f"{labels[r['tap']]} · {_block(r)}" for r in rows]


def _block(row) -> str:
    from ..render.overlay import BLOCK_NAMES, KIND_NAMES
    block = BLOCK_NAMES.get(row["block"], row["block"])
    return f"{block} {KIND_NAMES.get(row['kind'], row['kind'])}"


# ------------------------------------------------------------------------------ sanity
@gpu(duration=120)
def _sanity(model, pil, method, check=lambda: None):
    """Cascading randomisation on a copy of ``model`` (the library's randomisation_check, with
    the maps it compared): [(unit, map, spearman, pearson, ssim)] per step."""
    from .. import scores as metrics
    from ..capture.recorder import list_taps
    if method == metrics.ALL_ATTENTION:
        from ..kinds import is_spatial
        if not any(is_spatial(k) for _, _, k in list_taps(model)):
            raise bad_request("This model has no spatial attention map to randomise; use "
                              "Grad-CAM or Saliency.")
    rows, maps = metrics.randomisation_check(model, pil, method, return_maps=True,
                                             on_step=lambda step, unit: check())
    frames = [("original weights" if r["step"] == 0 else r["layer"], m, r["spearman"],
               r["pearson"], r["ssim"]) for r, m in zip(rows, maps)]
    return frames


def run_sanity(image, model_name, method, progress=gr.Progress()):
    """Re-initialise the layers from the output down and recompute the map after each step: a
    map that stays the same while the weights are destroyed does not explain the model."""
    import pandas as pd
    from ..render.figures import line_figure
    with user_errors("running the sanity check"):
        pil, loaded = _image_and_model(image, model_name)
        method = method or "gradcam"
        if method != "attention":
            method = V.check_method(method)
        progress(0.1, desc=f"randomising {loaded.name} layer by layer")
        with jobs.heavy_job(f"the sanity check of {loaded.name}",
                            kind="a sanity check") as job:
            frames = _sanity(loaded.model, pil, method, job.check)
        display = V.display_image(np.asarray(pil))
        keep = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), 8)).round().astype(int))
        strip = []
        for i in keep:
            unit, m, sp, pe, ss = frames[i]
            img, rng = V.draw(display, m, "minmax")
            label = "original weights" if i == 0 else f"step {i}: {unit} randomised"
            # each thumbnail with its own colour bar, the caption beneath (CSS: av-tiles)
            strip.append((tile(img, rng), f"{label} · Spearman {sp:.2f} · SSIM {ss:.2f} · "
                                          f"range {V.fmt_range(*rng)}"))
        rows = [[i, u, round(float(sp), 3), round(float(pe), 3), round(float(ss), 3)]
                for i, (u, _, sp, pe, ss) in enumerate(frames)]
        steps = list(range(len(frames)))
        fig = line_figure({"Spearman": (steps, [r[2] for r in rows]),
                           "SSIM": (steps, [r[4] for r in rows])},
                          f"{loaded.name}: similarity to the original map as layers are "
                          "randomised (output first)", "layers randomised", "similarity")
        fig.update_layout(height=300)
        name = "attention maps" if method == "attention" else V.method_name(method)
        from ..scores.sanity import sanity_verdict  # the library's verdict (Adebayo et al. 2018)
        v = sanity_verdict([{"step": r[0], "layer": r[1], "spearman": r[2]} for r in rows])
        for r, lv in zip(rows, v.layers):
            r.append("yes" if lv.changed else "no")
        last = rows[-1][2]
        where = f" It first changes when {v.first_changed} is randomised." \
            if v.first_changed else ""
        md = (f"**{name}** of {loaded.name}, {len(frames) - 1} layers randomised from the "
              f"output down (per-map colour scale). Final Spearman {last:.2f}: "
              f"**{v.verdict}** (changed = |Spearman| < {v.threshold}).{where}")
        return strip, fig, pd.DataFrame(rows, columns=SANITY_HEADERS), md


# ------------------------------------------------------------------------------ evaluate
@gpu(duration=300)
def _evaluate(model, n, seed, cb, data=None):
    from ..scores.evaluate import evaluate
    return evaluate(model, n=n, seed=seed, progress=cb, data=data)


EVAL_DATA = ("synthetic shapes", "zip of class folders")


def evaluable(entry) -> bool:
    """Models Evaluate offers: lite, trained here, and your own (``--model``); the ImageNet
    architectures have no labelled data here."""
    return entry.is_lite or entry.family == "external"


def evaluate_choices() -> list[tuple[str, str]]:
    return [(e.label, e.name) for e in catalogue() if evaluable(e)]


def knows_shapes(loaded) -> bool:
    """Whether the model's classes are the six synthetic shapes (its outputs are theirs)."""
    from ..data.synthetic import SHAPE_CLASSES
    classes = list(getattr(loaded.model.info, "classes", None) or [])
    return loaded.entry.family == "lite" or classes == list(SHAPE_CLASSES)


def eval_data_value(model_name) -> str | None:
    """The Data choice that fits a model: one with its own labels (your model, or one trained
    here on your images) is evaluated on a zip of its class folders."""
    try:
        entry = find_entry(model_name)
    except AttnvizError:
        return None
    own = entry.family == "external" or (entry.family == "user" and
                                         "your images" in entry.badge)
    return EVAL_DATA[1] if own else EVAL_DATA[0]


def eval_data_for(model_name):
    """The Data radio following the model just selected."""
    value = eval_data_value(model_name)
    return gr.skip() if value is None else gr.Radio(value=value)


def run_evaluate(model_name, n, data_kind=EVAL_DATA[0], zip_file=None,
                 progress=gr.Progress()):
    """Accuracy and localisation (pointing game, energy) on ``n`` synthetic images (lite
    models), or on an uploaded zip of class folders named after the model's labels (a model
    trained here or your own)."""
    import pandas as pd
    from ..data.synthetic import with_classes
    with user_errors("evaluating the model"):
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise bad_request(f"The number of images must be a whole number, not "
                              f"{limits.echo(n)}.") from None
        if not 10 <= n <= 5000:
            raise bad_request("Evaluate on 10 to 5000 images.")
        upload = bool(data_kind and str(data_kind).startswith("zip"))
        entry = find_entry(model_name)
        if not evaluable(entry):
            raise bad_request(f"{entry.name} is an ImageNet architecture; Evaluate needs a model "
                              "with labelled data here: a lite model (synthetic shapes), a "
                              "model trained here or your own (--model) on a zip of class "
                              "folders.", "Not evaluable here")
        if upload and not zip_file:
            raise bad_request("Upload a .zip of class folders named after the model's labels "
                              "(cat/001.jpg, dog/002.jpg, ...), or choose synthetic shapes.",
                              "No zip")
        loaded = MODELS.get(model_name)
        classes = list(getattr(loaded.model.info, "classes", None) or [])
        if not upload and not knows_shapes(loaded):
            shown = ", ".join(map(str, classes[:8])) + (", ..." if len(classes) > 8 else "")
            raise bad_request(f"{loaded.name} predicts its own {len(classes) or 'unnamed'} "
                              f"classes{f' ({shown})' if classes else ''}, not the six "
                              "synthetic shapes: evaluate it on a zip of class folders named "
                              "after its labels.", "Needs its own data")
        what = "the uploaded images" if upload else f"{n} synthetic images"
        progress(0, desc=f"evaluating {loaded.name} on {what}")
        with jobs.heavy_job(f"an evaluation of {loaded.name} on {what}",
                            kind="an evaluation") as job:
            data = None
            if upload:
                data = with_classes(_read_zip(zip_file, job, progress,
                                              size=int(loaded.model.info.input_size)), classes)
                n = len(data)

            def cb(d):
                job.check()  # a cancelled request stops at the next batch
                done, total = d.get("done", 0), d.get("total", n) or n
                acc = d.get("accuracy")
                progress((int(done), int(total)), desc=f"{loaded.name}: accuracy so far "
                         f"{acc:.1%}" if acc is not None else None, unit="images")
            r = _evaluate(loaded.model, n, 424_242, cb, data)
        rows = []
        if r.get("gradcam"):
            g = r["gradcam"]
            rows.append(["Grad-CAM " + str(g.get("layer")), "gradcam",
                         "x".join(map(str, g.get("grid", []))), g.get("pointing"),
                         g.get("energy")])
        for layer, v in (r.get("attention") or {}).items():
            rows.append([layer, v.get("kind"), "x".join(map(str, v.get("grid", []))),
                         v.get("pointing"), v.get("energy")])
        if r.get("chance"):
            rows.append(["chance (random point / flat map)", "", "", r["chance"]["pointing"],
                         r["chance"]["energy"]])
        df = pd.DataFrame(rows, columns=["map", "kind", "grid", "pointing game", "energy in "
                                         "object"])
        warn = "" if loaded.trained else " ⚠ random weights."
        on = (f"{r['n']} uploaded images in {len(set(data.labels.tolist()))} class folders"
              if upload else f"{r['n']} fresh synthetic images")
        loc = (" Pointing game: the map's peak within 3 px of the object; energy: the map's "
               "share on the object." if rows else " No object masks in the data: accuracy "
               "only (add <name>_mask.png files for the localisation figures).")
        md = (f"**{loaded.name}**: top-1 accuracy **{r['accuracy']:.1%}** on {on} "
              f"({r['seconds']} s on {r['device']}).{warn}{loc}")
        return md, df, r


# ------------------------------------------------------------------------------ train
@gpu(duration=600)
def _train(arch, out, epochs, images, data, name, cb):
    from ..training.train import train
    return train(arch, out, epochs=epochs, images_per_epoch=images, batch_size=64, lr=3e-3,
                 seed=0, data=data, val_n=256, progress=cb, save_name=name, overwrite=False)


def _read_zip(zip_file, job, progress, size: int = 128):
    """An uploaded set of class folders, within the zip and pixel limits, at ``size`` px;
    stops when the job must."""
    from ..data.folders import load_image_folder

    def cb(d):
        job.check()
        progress((int(d["done"]), int(d["total"])), unit="files",
                 desc={"unzip": "unpacking the zip", "check": "checking image sizes",
                       "read": "reading the images"}.get(d.get("stage"), "reading the zip"))
    return load_image_folder(zip_file, size=size, max_files=limits.UPLOAD_MAX_FILES,
                             max_bytes=limits.UPLOAD_MAX_MB * 2**20,
                             max_image_pixels=limits.TRAIN_IMAGE_MAX_PIXELS,
                             max_total_pixels=limits.TRAIN_TOTAL_MAX_PIXELS, progress=cb)


# Train's outputs by name: the note, card and history, and every model list (refreshed)
TRAIN_OUTPUTS = ("tr_note", "tr_card", "tr_hist", "model", "cmp_models", "eval_model",
                 "card_model")


def run_train(arch, data_kind, zip_file, epochs, images, name, progress=gr.Progress()):
    """Train a lite model (synthetic shapes, or an uploaded zip of class folders) into
    runs/<name>; afterwards it is offered in the model lists of this session (of every session
    with ATTNVIZ_SHARE_TRAINED=1). One heavy job at a time, within the job limits; a cancelled
    or stopped training writes nothing."""
    import pandas as pd
    from ..models.zoo import LITE
    from . import user_models
    with user_errors("training the model"):
        if arch not in LITE:
            raise bad_request(f"Only lite models can be trained here; choose one of "
                              f"{', '.join(LITE)}.")
        name = user_models.check_name(name)
        user_models.check_room()
        try:
            epochs, images = int(epochs), int(images)
        except (TypeError, ValueError):
            raise bad_request("Epochs and images per epoch must be whole numbers.") from None
        if not 1 <= epochs <= 30 or not 64 <= images <= 20000:
            raise bad_request("Use 1-30 epochs and 64-20000 images per epoch.")
        upload = bool(data_kind and str(data_kind).startswith("upload"))
        if upload and not zip_file:
            raise bad_request("Upload a .zip of class folders (cat/001.jpg, dog/002.jpg, "
                              "...) or choose synthetic shapes.", "No zip")
        if not upload and epochs * images > limits.TRAIN_MAX_IMAGES:
            raise bad_request(f"{epochs} epochs x {images} images is {epochs * images:,} images; "
                              f"a training here may see at most {limits.TRAIN_MAX_IMAGES:,}. "
                              "Use fewer epochs or images per epoch.", "Too large")
        with jobs.heavy_job(f"training {name} ({arch})", kind="a training") as job:
            data = None
            if upload:
                progress(0, desc="reading the zip")
                data = _read_zip(zip_file, job, progress)
                user_models.check_classes(data.classes)
                if epochs * len(data) > limits.TRAIN_MAX_IMAGES:
                    raise bad_request(f"{epochs} epochs x {len(data)} images is more than the "
                                      f"{limits.TRAIN_MAX_IMAGES:,} images a training here may "
                                      "see; use fewer epochs or images.", "Too large")
            progress(0, desc=f"training {name} ({arch}): starting")
            clock = {}

            def cb(d):
                job.check()  # a cancelled request stops at the next step, saving nothing
                if "step" in d and "steps" in d:
                    step, steps = int(d["step"]), int(d["steps"])
                    extra = (f" · val acc {d['val_acc']:.1%}" if d.get("val_acc") is not None
                             else f" · loss {d.get('loss', float('nan')):.3f}")
                    progress((step, steps), unit="steps",
                             desc=f"epoch {d.get('epoch')}/{d.get('epochs')}{extra} · "
                                  f"{time_left(clock, step, steps)}")
            with user_models.staging() as tmp:
                card = _train(arch, tmp, epochs, images, data, name, cb)
                job.check()
                user_models.publish(tmp, name)
        hist = pd.DataFrame(card.get("history", []))
        where = "every model list" if limits.SHARE_TRAINED else "this session's model lists"
        md = (f"**{name}** ({arch}) trained in {card.get('train_seconds')} s: validation "
              f"accuracy **{(card.get('val_accuracy') or 0):.1%}**, {card.get('parameters'):,} "
              f"parameters. Saved to runs/{name}.safetensors; it now appears in {where} "
              "(labelled 'trained here').")
        full = model_choices()
        return {"tr_note": md, "tr_card": card, "tr_hist": hist,
                "model": gr.Dropdown(choices=full), "cmp_models": gr.Dropdown(choices=full),
                "eval_model": gr.Dropdown(choices=evaluate_choices(), value=name),
                "card_model": gr.Dropdown(choices=full, value=name)}


def time_left(clock: dict, done: int, total: int) -> str:
    """"about 40 s left": the time per step so far times the steps left (``clock`` keeps the
    first step's time and count between calls)."""
    import time
    now = time.monotonic()
    if "t0" not in clock:
        clock.update(t0=now, n0=done)
        return "estimating the time left"
    steps = done - clock["n0"]
    if steps <= 0:
        return "estimating the time left"
    left = (now - clock["t0"]) / steps * max(total - done, 0)
    if left < 60:
        return f"about {max(1, round(left))} s left"
    return f"about {left / 60:.0f} min left" if left < 5400 else f"about {left / 3600:.1f} h left"


# ------------------------------------------------------------------------------ layout
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
