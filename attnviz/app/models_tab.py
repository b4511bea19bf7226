"""Models: every model's card (architecture, parameters, weights source, measured figures from
the card JSON), read from disk without loading weights. Events: ``models`` (the overview table
and the list of names), ``model_card`` (one card)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr

from ..models import sources
from ..models.zoo import LITE
from .catalogue import (
    catalogue,
    default_model,
    find_entry,
    model_choices,
    parameter_count,
)
from .errors import user_errors
from .user_models import escape  # cards of models trained here carry users' names

OVERVIEW_HEADERS = ["model", "architecture", "weights", "parameters", "input",
                    "validation accuracy", "test accuracy", "Grad-CAM pointing"]


def read_card(entry) -> dict:
    """The model card JSON beside the entry's checkpoint ({} when there is none)."""
    if entry.card:
        return dict(entry.card)
    if entry.path is not None:
        p = entry.path.with_suffix(".json")
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def _pct(v):
    try:
        return f"{float(v):.1%}"
    except (TypeError, ValueError):
        return "—"


def overview():
    """(table, names): one row per model."""
    import pandas as pd
    rows, names = [], []
    for e in catalogue():
        card = read_card(e)
        classes = card.get("classes")
        n_cls = len(classes) if e.family == "user" and classes else None
        params = card.get("parameters") or parameter_count(e.arch, n_cls)
        inp = card.get("input_size") or (128 if e.arch in LITE else 224)
        rows.append([e.name, e.arch, e.badge, f"{int(params) / 1e6:.2f} M", f"{inp} px",
                     _pct(card.get("val_accuracy")), _pct(card.get("test_accuracy")),
                     _pct(card.get("gradcam_pointing"))])
        names.append(e.name)
    return pd.DataFrame(rows, columns=OVERVIEW_HEADERS), names


def card_markdown(name) -> tuple[str, dict]:
    """A model's card as Markdown, and the raw card."""
    with user_errors("reading the model card"):
        e = find_entry(name)
        card = read_card(e)
        classes = card.get("classes")
        params = card.get("parameters") or parameter_count(
            e.arch, len(classes) if e.family == "user" and classes else None)
        lines = [f"## {e.name}", f"**Architecture:** `{e.arch}`"
                 + (f" — {escape(card['description'])}" if card.get("description") else ""),
                 f"**Parameters:** {int(params):,}", f"**Weights:** {e.badge}"]
        if e.path is not None:
            lines.append(f"**Weights file:** `{e.path.name}`")
        src = sources.get_source(e.arch) if e.family == "imagenet" else None
        if src is not None:
            lines.append(f"**Weights source:** {src.label} — {sources.source_url(src)} (license "
                         f"{src.license})")
            if e.badge != "ImageNet weights":
                lines.append(f"Downloads are off: set `{sources.ALLOW_ENV}=1` (the Docker image "
                             "does; on a Space they are on unless set to 0) or put the file in "
                             "models/.")
        elif e.family == "imagenet":
            why = sources.NO_DIRECT_SOURCE.get(e.arch, "No public weights are known for it.")
            lines.append(f"**Weights source:** none — {why} It runs with random weights.")
        elif e.path is None and e.family != "external":
            lines.append(f"No checkpoint yet: train it with `python -m attnviz.train --model "
                         f"{e.arch} --out models/` (or in the Experiment tab under a new name).")
        if classes:
            lines.append(f"**Classes ({len(classes)}):** {', '.join(map(escape, classes))}")
        if card.get("input_size"):
            lines.append(f"**Input:** {card['input_size']} x {card['input_size']} px"
                         + (f"; {card['preprocessing']}" if card.get("preprocessing") else ""))
        figs = []
        if card.get("val_accuracy") is not None:
            figs.append(f"validation accuracy {_pct(card['val_accuracy'])}")
        if card.get("test_accuracy") is not None:
            figs.append(f"test accuracy {_pct(card['test_accuracy'])}")
        if card.get("gradcam_pointing") is not None:
            figs.append(f"Grad-CAM pointing game {_pct(card['gradcam_pointing'])}")
        ev = card.get("evaluation") or {}
        for kind, v in (ev.get("kinds") or {}).items():
            figs.append(f"{kind} attention pointing (deepest layer) "
                        f"{_pct(v.get('pointing_deepest'))}")
        if ev.get("chance"):
            figs.append(f"chance pointing {_pct(ev['chance'].get('pointing'))}")
        if figs:
            lines.append("**Measured:** " + "; ".join(figs))
        tr = card.get("training") or {}
        if tr:
            lines.append(f"**Training:** {tr.get('epochs')} epochs x "
                         f"{tr.get('images_per_epoch')} images, batch {tr.get('batch_size')}, "
                         f"lr {tr.get('lr')}, seed {tr.get('seed')}, data: {escape(tr.get('data'))}"
                         + (f"; {card.get('train_seconds')} s" if card.get("train_seconds")
                            else ""))
        m = card.get("machine") or {}
        if m:
            lines.append("**Machine:** " + ", ".join(f"{k} {v}" for k, v in m.items()))
        if card.get("command"):
            lines.append(f"**Command:** `{card['command']}`")
        return "\n\n".join(lines), card


def run_models():
    """The overview table and the model names (the API's model list)."""
    with user_errors("listing the models"):
        table, names = overview()
        return table, names


def build(ui: SimpleNamespace) -> None:
    with gr.Row():
        ui.card_model = gr.Dropdown(model_choices(), value=default_model(), label="Model",
                                    allow_custom_value=True, scale=3, elem_id="av-card-model")
        ui.models_refresh = gr.Button("Refresh list", scale=0, min_width=140)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            md, card = card_markdown(default_model())
            ui.card_md = gr.Markdown(md, elem_id="av-card")
        with gr.Column(scale=2):
            ui.card_json = gr.JSON(card, label="Card (JSON)", open=False)
    table, names = overview()
    ui.models_table = gr.Dataframe(table, interactive=False, label="All models", wrap=True,
                                   elem_id="av-models-table")
    ui.models_names = gr.JSON(names, visible=False)
    ui.card_model.change(card_markdown, ui.card_model, [ui.card_md, ui.card_json],
                         api_name="model_card", show_progress="hidden")
    ui.models_refresh.click(run_models, None, [ui.models_table, ui.models_names],
                            api_name="models")
