"""Statistics tab: the dataset-level attention statistics of :mod:`attnviz.scores.stats` (SENet's
per-class gates per depth, SKNet's kernel weight against object size, SGE's concentration on the
object) over many synthetic images, and the relational task's links: a relational model's
affinity from the query square, with its partner (green) and the distractor (red, dashed)
outlined, and that image's link scores beside the model's card figures.

Events: ``stats`` (model, images) -> summary, three figures; ``links`` (model, example) ->
figure, scores."""
from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

import gradio as gr

from . import jobs, limits
from .errors import user_errors
from .examples import RELATIONAL_COUNT, relational_examples

MAX_IMAGES = 1000


def bad_request(msg: str, title: str = "Cannot do that") -> gr.Error:
    return gr.Error(msg, title=title)


# sub-folders of the models folder with link-task checkpoints: same/different at 128 px, cued
RELATIONAL_DIRS = ("rel128", "cue128")
# the cued non-local body with the block last: its cue's row reads the named shape (README)
DEFAULT_RELATIONAL = "cue128/lite_nonlocal_last_cue"


# the listing of the link-task checkpoints, kept while none of its folders changed (their mtimes);
# a listing taken within RACY_NS of a folder's change is not trusted (a file added in the same
# tick of the folder's clock would not change its mtime)
_LISTING: dict = {}
_LISTING_LOCK = threading.Lock()
RACY_NS = 2_000_000_000


def _folder_stamps(root: Path) -> tuple:
    """What identifies the folders' contents: the models folder and each of its
    :data:`RELATIONAL_DIRS` with its mtime (None where it does not exist)."""
    stamps = []
    for sub in ("", *RELATIONAL_DIRS):
        try:
            stamps.append((root / sub).stat().st_mtime_ns)
        except OSError:
            stamps.append(None)
    return (str(root), *stamps)


def relational_names() -> list[str]:
    """The link-task checkpoints shipped in the models folder, named by their path there without
    ``.safetensors``: each task's suffix (:data:`~attnviz.data.link_tasks.LINK_TASKS`: ``_rel``,
    ``_cue``) at the top (64 px) and in :data:`RELATIONAL_DIRS`. Listed again only when one of
    these folders changed (its mtime): a request stats the folders, it does not glob them."""
    from ..data.link_tasks import LINK_TASKS
    from ..models.weights import MODELS_DIR
    root = Path(MODELS_DIR)
    stamps = _folder_stamps(root)
    with _LISTING_LOCK:
        if _LISTING.get("stamps") == stamps and _LISTING["trusted"]:
            return list(_LISTING["names"])
    listed_at = time.time_ns()
    names = []
    for sub in ("", *RELATIONAL_DIRS):
        for t in LINK_TASKS.values():
            names += sorted(f"{sub}/{p.stem}".lstrip("/")
                            for p in (root / sub).glob(f"*{t.suffix}.safetensors"))
    trusted = all(m is None or m < listed_at - RACY_NS for m in stamps[1:])
    with _LISTING_LOCK:
        _LISTING.update(stamps=stamps, names=names, trusted=trusted)
    return list(names)


def model_task(model) -> str:
    """The link task a checkpoint was trained on (its card's ``training.task``)."""
    from ..data.link_tasks import LINK_TASKS
    task = (model.info.card.get("training") or {}).get("task")
    return task if task in LINK_TASKS else "relational"


@functools.lru_cache(maxsize=8)
def _relational_model(name: str):
    from ..models.checkpoint import load_checkpoint
    from ..models.weights import MODELS_DIR
    return load_checkpoint(Path(MODELS_DIR) / f"{name}.safetensors")


def run_stats(model_name, n, progress=gr.Progress()):  # noqa: B008 - Gradio injects it
    """Dataset statistics of ``model_name`` over ``n`` fresh synthetic shapes (seed 424242)."""
    from ..attribution.explain import model_lock
    from ..render.stats_figures import stats_figures
    from ..scores.stats import dataset_stats
    from ..tools.stats_report import load_source, summary
    from .model_cache import MODELS
    with user_errors("computing dataset statistics"):
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise bad_request(f"The number of images must be a whole number, not "
                              f"{limits.echo(n)}.") from None
        if not 20 <= n <= MAX_IMAGES:
            raise bad_request(f"Compute the statistics over 20 to {MAX_IMAGES} images.")
        loaded = MODELS.get(model_name)
        if list(getattr(loaded.model.info, "classes", None) or [])[:1] != ["circle"]:
            raise bad_request(f"{loaded.name} does not predict the synthetic shapes; the "
                              "statistics here run on them (use `attnviz stats FOLDER --model "
                              "M` for your own images).", "Needs its own data")
        progress(0, desc=f"{loaded.name}: drawing {n} images")
        with jobs.heavy_job(f"dataset statistics of {loaded.name}", kind="a statistics run") \
                as job:
            data = load_source("synthetic", n, 424_242, int(loaded.model.info.input_size))

            def cb(done, total):
                job.check()
                progress((done, total), desc=f"{loaded.name}: batched passes", unit="images")
            with model_lock(loaded.model):  # capture's hooks: one request at a time per model
                r = dataset_stats(loaded.model, data, batch_size=50, progress=cb)
        r["source"] = "synthetic"
        figs = stats_figures(r)
        md = "```\n" + summary(r) + "\n```\n" + (
            "Class-specificity: the share of the gates' variance the class explains (0 = shared, "
            "1 = fixed by the class). Kernel slope: change of the weight on the larger kernel "
            "per 10 px of object size, 95% interval. Concentration: factor mass on the object / "
            "object area (1 = no preference). CSV and PNG: `attnviz stats synthetic --model "
            f"{loaded.name}`.")
        return (md, figs.get("channel_gates"), figs.get("kernel_vs_scale"),
                figs.get("group_concentration"))


def run_links(model_name, example):
    """One relational test image: the affinity row of the query square with the partner and the
    distractor outlined, that image's link scores, and the model's card figures."""
    import pandas as pd
    import torch

    from ..capture.recorder import capture
    from ..attribution.explain import model_lock
    from ..models.readout import logits_at, trained_at_query
    from ..render.figures import affinity_explorer
    from ..render.stats_figures import LINK_REGIONS, outline_regions
    from ..scores.links import link_scores, query_rows, region_cover
    from ..training.train import to_tensor
    with user_errors("showing the links"):
        names = relational_names()
        if model_name not in names:
            raise bad_request(f"Unknown relational model {limits.echo(model_name)}; choose one "
                              f"of {', '.join(names) or '(none shipped)'}.", "Unknown model")
        try:
            i = int(example)
        except (TypeError, ValueError):
            raise bad_request("The example must be a whole number.") from None
        if not 0 <= i < RELATIONAL_COUNT:
            raise bad_request(f"Choose an example from 0 to {RELATIONAL_COUNT - 1}.")
        model = _relational_model(model_name)
        size = int(model.info.input_size)
        # the set Inspect recognises too (same/different), or the cued task's
        d = relational_examples(size, indices=[i], task=model_task(model))
        x = to_tensor(d.images, model.info.mean, model.info.std)
        at_query = trained_at_query(model)
        with model_lock(model), torch.no_grad(), \
                capture(model, kinds=["affinity"], discover=False) as rec:
            if at_query:  # trained to answer at the query too: read it there as well
                logits, q_logits = logits_at(model, x, d.query_points)
                pq = torch.softmax(q_logits, 1)[0]
            else:
                logits = model(x)
            p = torch.softmax(logits, 1)[0]
        card = model.info.card.get("relational_evaluation", {})
        acc = card.get("accuracy", {}).get("mean")
        head = (f"**{model_name}**: true **{d.classes[int(d.labels[0])]}**, predicted "
                f"**{d.classes[int(p.argmax())]}** ({float(p.max()):.0%})" +
                (f", read at the cue **{d.classes[int(pq.argmax())]}** ({float(pq.max()):.0%})"
                 if at_query else "") +
                f"; card accuracy on fresh seeds {acc if acc is not None else '—'}.")
        recs = list(rec)
        if not recs:
            return head + " A plain CNN: no affinity to show (the control).", None, None
        r = recs[-1]
        qy, qx = d.query_points[0]
        fig = affinity_explorer(r, float(qx), float(qy), (size, size))
        outline_regions(fig, {name: (m[0], c, dash) for (name, (c, dash)), m in zip(
            LINK_REGIONS.items(), (d.partner_masks, d.distractor_masks, d.query_masks))},
            (size, size), r.meta["key_hw"])
        khw = r.meta["key_hw"]
        row = r.tensor[0, int(query_rows(d.query_points, (size, size), r.meta["query_hw"])[0])]
        s = link_scores(row.float().numpy()[None],
                        *(region_cover(m, khw) for m in (d.partner_masks, d.distractor_masks,
                                                         d.query_masks)))
        rows = [["this image", *(round(float(s[k][0]), 3) for k in
                                 ("pointing", "partner", "distractor", "own", "background"))]]
        for ref in ("model", "random", "oracle"):
            e = card.get("links", {}).get("layers", {}).get(r.layer, {}).get(ref)
            if e:
                label = f"{ref} (card, {card['images_per_seed'] * len(card['seeds'])} images)"
                rows.append([label, *(e[k]["mean"] for k in ("pointing", "partner", "distractor",
                                                             "own", "background"))])
        df = pd.DataFrame(rows, columns=["", "link pointing", "partner mass", "distractor mass",
                                         "own mass", "background mass"])
        return head, fig, df


def build(ui) -> None:
    """The tab's components and events (inside ``gr.Tab``)."""
    from .catalogue import model_choices
    gr.Markdown("Dataset-level statistics, as the papers draw them, over many fresh synthetic "
                "images in batched passes; and the relational task's links.")
    with gr.Row():
        ui.stats_model = gr.Dropdown(model_choices("lite"), value="lite_se", label="model")
        ui.stats_n = gr.Number(300, label=f"images (20-{MAX_IMAGES})", precision=0)
        ui.stats_run = gr.Button("Compute statistics", variant="primary")
    ui.stats_md = gr.Markdown()
    ui.stats_gates = gr.Plot(label="per-class mean channel gates by depth (SENet)")
    ui.stats_kernel = gr.Plot(label="large-kernel weight against object size (SKNet)")
    ui.stats_group = gr.Plot(label="group factors on the object through depth (SGE)")
    ui.stats_run.click(run_stats, [ui.stats_model, ui.stats_n],
                       [ui.stats_md, ui.stats_gates, ui.stats_kernel, ui.stats_group],
                       api_name="stats")
    gr.Markdown("### Links on the relational tasks\n`…_rel`: two squares far apart, same colour "
                "or not? The affinity of the query square (×), its partner outlined green, the "
                "ring (a distractor that often copies a square's colour) dashed red. `…_cue`: a "
                "small cue's colour names which of two far-apart shapes to classify; the cue is "
                "the query, the named shape its partner, the other shape the distractor.")
    names = relational_names()
    with gr.Row():
        ui.links_model = gr.Dropdown(names, value=DEFAULT_RELATIONAL if DEFAULT_RELATIONAL in
                                     names else (names[0] if names else None),
                                     label="relational model")
        ui.links_example = gr.Slider(0, RELATIONAL_COUNT - 1, value=0, step=1, label="test image")
        ui.links_run = gr.Button("Show links", elem_id="av-links-run")
    ui.links_md = gr.Markdown()
    ui.links_fig = gr.Plot(label="affinity from the query (×: a square or the cue)",
                             elem_id="av-links-fig")
    ui.links_table = gr.Dataframe(label="link scores")
    ui.links_run.click(run_links, [ui.links_model, ui.links_example],
                       [ui.links_md, ui.links_fig, ui.links_table], api_name="links")
