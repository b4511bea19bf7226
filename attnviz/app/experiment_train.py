"""The Experiment tab's training: a lite model on synthetic shapes or an uploaded zip of class
folders, saved to runs/<name>, then offered in the model lists. A heavy job with a queue of its
own (:mod:`.jobs`), so that an evaluation or a sanity check asked for meanwhile gets a "busy
until ..." answer at once; a cancelled or stopped training writes nothing. Laid out by
:mod:`~attnviz.app.experiment_tab`.
"""
from __future__ import annotations

import gradio as gr

from . import jobs, limits
from .components import gpu
from .errors import bad_request, user_errors
from .catalogue import model_choices
from .experiment_evaluate import evaluate_choices, read_class_zip

@gpu(duration=600)
def _train(arch, out, epochs, images, data, name, cb):
    from ..training.train import train
    return train(arch, out, epochs=epochs, images_per_epoch=images, batch_size=64, lr=3e-3,
                 seed=0, data=data, val_n=256, progress=cb, save_name=name, overwrite=False)


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
                data = read_class_zip(zip_file, job, progress)
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
