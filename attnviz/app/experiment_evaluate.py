"""The Experiment tab's evaluation: accuracy and localisation (pointing game, energy) of a model
over many images, synthetic shapes (lite models) or an uploaded zip of class folders named after
the model's labels (a model trained here or your own). A heavy job (:mod:`.jobs`): one at a time,
stopped at its next batch when cancelled. Laid out by :mod:`~attnviz.app.experiment_tab`.
"""
from __future__ import annotations

import gradio as gr

from . import jobs, limits
from .components import gpu
from .errors import bad_request, user_errors
from ..errors import AttnvizError
from .catalogue import catalogue, find_entry
from .model_cache import MODELS

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
                data = with_classes(read_class_zip(zip_file, job, progress,
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


def read_class_zip(zip_file, job, progress, size: int = 128):
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
