"""Compare: two to four models on the same image, one row per model with the same columns
(prediction, an attention map of a chosen kind, an attribution), on a shared colour scale by
default, and a small score table. Event: ``compare``."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np

from . import views as V
from .catalogue import catalogue, model_choices
from .components import InputImage, Outputs, gpu
from .errors import bad_request, user_errors
from .examples import known_mask
from .framing import badge_pill, prediction_note
from .model_cache import MODELS, autocast

MAX_MODELS = 4
# Compare's outputs by name: per row i a header, an attention overlay and an attribution overlay
OUTPUTS = (*(f"cmp_{part}_{i}" for i in range(MAX_MODELS) for part in ("head", "att", "attr")),
           "cmp_table", "cmp_legend")


def _kind_choices() -> list[tuple[str, str]]:
    """(label, kind) for the kinds with a spatial map, from the kind and block specs."""
    from .. import kinds as K
    out = [("strongest, deepest stage", "strongest")]
    for k in K.spatial_kinds():
        owners = ", ".join(b.display_name for b in K.all_blocks() if k in b.kinds)
        out.append((f"{K.get(k).display_name} ({owners})" if owners else k, k))
    return out


KINDS = _kind_choices()
TABLE_HEADERS = ["model", "weights", "prediction", "attention map", "ρ with attribution",
                 "pointing attention", "pointing attribution"]
# the columns' share of the table (each wide enough for its longest word, four models fit)
TABLE_WIDTHS = ["11%", "13%", "12%", "25%", "13%", "13%", "13%"]


def default_pair() -> list[str]:
    """Two trained lite models with different attention, else the first two lite models."""
    cat = catalogue()
    trained = [e.name for e in cat if e.family == "lite" and e.trained]
    for a, b in (("lite_cbam", "lite_danet"), ("lite_cbam", "lite_nonlocal"),
                 ("lite_cbam", "lite_sge")):
        if a in trained and b in trained:
            return [a, b]
    if len(trained) >= 2:
        return trained[:2]
    return ["lite_cbam", "lite_danet"]


def _models_list(models) -> list[str]:
    if isinstance(models, str):
        models = [m for m in models.replace(";", ",").split(",")]
    if not isinstance(models, (list, tuple)):
        raise bad_request("Give the models to compare as a list of names, e.g. "
                          "['lite_cbam', 'lite_danet'].")
    names = list(dict.fromkeys(str(m).split(" · ")[0].strip() for m in models if str(m).strip()))
    if not 2 <= len(names) <= MAX_MODELS:
        raise bad_request(f"Choose two to four different models to compare (got {len(names)}).",
                          "Choose 2-4 models")
    return names


@gpu
def _analyse(model, pil, method, amp: bool = False, target=None, layer=None):
    from ..analysis.inspect import inspect
    from .analysis import layer_opts
    with autocast(amp):
        a = inspect(model, pil, attributions=[method], target=target,
                    explain_opts=layer_opts([method], layer))
    for r in a.maps:  # float32 for drawing and scoring (autocast records bfloat16)
        r.tensor = r.tensor.detach().float().cpu()
    for att in a.attributions.values():
        att.raw = att.raw.detach().float().cpu()
    return a


def run_compare(image, models, kind, method, scale, target=None, layer=None):
    """One row per model: header (name, badge, prediction), attention overlay, attribution
    overlay; then the score table and the colour legend. Returns ``{output name: value}``
    (names in :data:`OUTPUTS`). Optional ``target`` (a class index or name, for every model;
    blank: each one's prediction) and ``layer`` (a module path every model has; blank: each
    one's default)."""
    from ..attribution.choice import resolve_cam_layer, resolve_target
    from ..analysis.inspect import score_analysis
    from ..data.images import load_image
    with user_errors("comparing the models"):
        if image is None:
            raise bad_request("Upload an image (here or in the Inspect tab) first.", "No image")
        names = _models_list(models)
        method = V.check_method(method)
        if method not in V.FAST_METHODS:
            raise bad_request(f"{V.method_name(method)} is too slow to run on several models at "
                              f"once here; choose {', '.join(map(V.method_name, V.FAST_METHODS))} "
                              "(or run it on one model in Inspect).")
        kind = (kind or "strongest").strip()
        if kind not in [k for _, k in KINDS]:
            raise bad_request(f"Unknown kind {kind!r}; choose from "
                              f"{', '.join(k for _, k in KINDS)}.")
        pil = load_image(image)
        img = np.asarray(pil)
        display = V.display_image(img)
        example, mask = known_mask(img)
        loaded = [MODELS.get(n) for n in names]  # unknown names fail before any work
        rows = []
        asked = [(resolve_target(ld.model, target), resolve_cam_layer(ld.model, layer))
                 for ld in loaded]  # every model's choice checked before any work
        for ld, (t, lay) in zip(loaded, asked):
            a = _analyse(ld.model, pil, method, ld.amp, t, lay)
            rec = V.kind_record(a.maps, kind)
            rows.append((ld, a, rec, None if rec is None else V.grid_map(rec),
                         V.attribution_grid(a, method)))
        shared = scale != "per map"
        from ..render.scale import shared_range
        # one scale per kind of map: a CBAM gate and a DANet affinity do not share units
        kinds = {r[2].kind for r in rows if r[2] is not None}
        kind_norm = {k: shared_range([r[3] for r in rows if r[2] is not None and r[2].kind == k])
                     for k in kinds} if shared else {}
        # attributions stay on each model's own scale: their raw size follows each model's
        # logits (a shared range left lite_danet's Grad-CAM almost empty beside lite_cbam's)
        attr_norm = V.attribution_norm(method)
        out, table = [], []
        for (ld, a, rec, m, attr), (_, lay) in zip(rows, asked):
            note = prediction_note(ld, example)
            header = (f"### {ld.name}\n{badge_pill(ld)}\n\n{V.prediction_text(a)}"
                      + (f"\n\n{note}" if note else ""))
            if rec is None:
                att_img = gr.Image(value=None, visible=True,
                                   label=f"no {kind} map in {ld.name}")
            else:
                im, rng = V.draw(display, m, kind_norm.get(rec.kind, "minmax"))
                att_img = gr.Image(value=im, visible=True,
                                   label=f"{V.map_caption(rec, a.maps)} · "
                                         f"{V.range_text(m, rng, rec.kind in kind_norm)}")
            im, rng = V.draw(display, attr, attr_norm)
            attr_img = gr.Image(value=im, visible=True,
                                label=f"{V.method_name(method)} → {a.target_name}"
                                      + (f" at {lay}" if lay else "")
                                      + f" · {V.fmt_range(*rng)} (own scale)")
            i = len(out) // 3
            out += [(f"cmp_head_{i}", gr.Markdown(value=header, visible=True)),
                    (f"cmp_att_{i}", att_img), (f"cmp_attr_{i}", attr_img)]
            # the scores by the library's one call, as Inspect, the export and the CLI
            s = score_analysis(ld.model, a, mask, faithfulness=False, attributions=[method],
                               reference=method)
            rho = None if rec is None else V.finite(s["rank_correlation"].get(rec.label))
            pa = pb = "—"
            if "pointing" in s:
                if rec is not None:
                    pa = {True: "hit", False: "miss"}.get(s["pointing"].get(rec.label), "—")
                pb = "hit" if s["pointing"][method] else "miss"
            table.append([ld.name, ld.badge, f"{a.top_k[0][0]} ({a.top_k[0][1]:.0%})",
                          "—" if rec is None else V.map_caption(rec, a.maps),
                          "n/a" if rho is None else round(rho, 3), pa, pb])
        for i in range(len(rows), MAX_MODELS):
            out += [(f"cmp_head_{i}", gr.Markdown(value="", visible=False)),
                    (f"cmp_att_{i}", gr.Image(value=None, visible=False)),
                    (f"cmp_attr_{i}", gr.Image(value=None, visible=False))]
        import pandas as pd
        if shared and len(kind_norm) == 1:
            (k, rng), = kind_norm.items()
            from ..render.overlay import colorbar
            legend = colorbar(rng[0], rng[1], label=f"shared scale: every {k} map", width=360)
        elif shared and kind_norm:
            from ..render.overlay import colorbar
            legend = colorbar(0, 1, label="shared within each kind (ranges in the labels)",
                              width=360)
        else:
            legend = V.legend("per map")
        return {**dict(out), "cmp_table": pd.DataFrame(table, columns=TABLE_HEADERS),
                "cmp_legend": legend}


def build(ui: SimpleNamespace) -> None:
    gr.Markdown("Two to four models on the same image. Each row: the prediction, the chosen "
                "attention map (the deepest layer of that kind) and the attribution. Models with "
                "random weights carry a ⚠ badge. Attention maps of one kind share a colour "
                "scale; each attribution keeps its own, since its raw size follows the model's "
                "logits and would leave one model's map almost empty beside another's.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260):
            ui.cmp_image = InputImage(value=ui.first_example, label="Image", type="filepath",
                                      sources=["upload", "clipboard"], height=220,
                                      elem_id="av-cmp-image")
            ui.cmp_models = gr.Dropdown(model_choices(), value=default_pair(), multiselect=True,
                                        max_choices=MAX_MODELS, label="Models (2-4)",
                                        allow_custom_value=True, elem_id="av-cmp-models")
            ui.cmp_kind = gr.Dropdown(KINDS, value="strongest", label="Attention map",
                                      elem_id="av-cmp-kind")
            ui.cmp_method = gr.Dropdown(V.FAST_METHOD_CHOICES, value="gradcam",
                                        label="Attribution", allow_custom_value=True)
            ui.cmp_target = gr.Textbox(label="Explain class (blank: each model's prediction)",
                                       placeholder="e.g. star, or 3", elem_id="av-cmp-target")
            ui.cmp_layer = gr.Textbox(label="Layer (blank: each model's default)",
                                      placeholder="e.g. layer3", elem_id="av-cmp-layer")
            ui.cmp_scale = gr.Radio(["shared", "per map"], value="shared", label="Colour scale")
            ui.cmp_run = gr.Button("Compare", variant="primary", elem_id="av-cmp-run")
            ui.cmp_legend = gr.Image(show_label=False, interactive=False, format="png",
                                     height=40, container=False, buttons=[])
        with gr.Column(scale=3, elem_id="av-cmp-grid"):
            for i in range(MAX_MODELS):
                with gr.Row(equal_height=False, elem_classes=["av-compare-row"]):
                    head = gr.Markdown(visible=False, elem_id=f"av-cmp-head-{i}")
                    att = gr.Image(visible=False, interactive=False, format="jpeg", height=220,
                                   elem_id=f"av-cmp-att-{i}", buttons=["fullscreen"],
                                   elem_classes=["av-fill"])
                    attr = gr.Image(visible=False, interactive=False, format="jpeg", height=220,
                                    elem_id=f"av-cmp-attr-{i}", buttons=["fullscreen"],
                                    elem_classes=["av-fill"])
                setattr(ui, f"cmp_head_{i}", head)
                setattr(ui, f"cmp_att_{i}", att)
                setattr(ui, f"cmp_attr_{i}", attr)
            ui.cmp_table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True,
                                        column_widths=TABLE_WIDTHS, label="Scores",
                                        elem_id="av-cmp-table", max_height=2000)
    out = Outputs(ui, *OUTPUTS)
    ui.cmp_run.click(out.handler(run_compare), [ui.cmp_image, ui.cmp_models, ui.cmp_kind,
                                                ui.cmp_method, ui.cmp_scale, ui.cmp_target,
                                                ui.cmp_layer],
                     out.components, api_name="compare",
                     concurrency_id="compare", concurrency_limit=2)
    # the Compare image follows the Inspect image
    ui.image.change(lambda p: p, ui.image, ui.cmp_image, api_name="sync_compare_image",
                    api_visibility="private", show_progress="hidden")
