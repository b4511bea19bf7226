"""``attnviz stats SOURCE --model M``: the dataset-level attention statistics of
:mod:`attnviz.scores.stats` over a synthetic set or a user's image folder, written as
``stats.json``, one CSV per table and one figure per analysis (``.html`` and ``.png``).

SOURCE: ``synthetic`` (the six-shapes task, whose object masks and sizes are known),
``relational`` (the same/different task) or a folder / zip of class sub-folders
(:func:`attnviz.datasets.load_image_folder`; masks optional). M: a model name (its shipped or
cached weights) or a checkpoint path written by ``attnviz train`` (its card names the
architecture).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import AttnvizError, OptionError
from ..models.checkpoint import load_checkpoint
from ..models.registry import create_model
from ..data.link_tasks import LINK_TASKS
from ..data.folders import load_image_folder
from ..data.synthetic import make_shapes
from ..render.static import figure_png
from ..render.stats_figures import stats_figures
from ..scores.stats import csv_tables
from ..scores.stats import dataset_stats
from ..scores.stats import mean_interval, slope_interval

SYNTHETIC = ("synthetic", *LINK_TASKS)  # six shapes, or a relational task's images
MAX_IMAGES = 20000


def load_model(spec: str, random: bool = False):
    """A model by registry name (pretrained unless ``random``) or from a checkpoint path."""
    path = Path(spec)
    if path.suffix == ".safetensors":
        return load_checkpoint(path)
    return create_model(spec, pretrained=not random)


def load_source(source: str, n: int, seed: int, size: int):
    """The images to run over: a synthetic set of ``n`` or a user's folder / zip."""
    if not 3 <= n <= MAX_IMAGES:
        raise OptionError(f"--n must be between 3 and {MAX_IMAGES} images, not {n}")
    if source == "synthetic":
        return make_shapes(n, seed=seed, size=size)
    if source in LINK_TASKS:
        return LINK_TASKS[source].make(n, seed=seed, size=max(size, 64))
    return load_image_folder(source, size=size, max_files=MAX_IMAGES)


def write_report(result: dict, out: Path) -> list[Path]:
    """stats.json, the CSV tables and the figures into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    p = out / "stats.json"
    p.write_text(json.dumps(result, indent=1))
    written.append(p)
    for name, rows in csv_tables(result).items():
        p = out / name
        with open(p, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        written.append(p)
    for name, fig in stats_figures(result).items():
        p = out / f"{name}.html"
        fig.write_html(p, include_plotlyjs="directory")  # plotly.min.js beside it: no network
        figure_png(fig, out / f"{name}.png")
        written += [p, out / f"{name}.png"]
    return written


def run(source: str, model: str, out, n: int = 500, seed: int = 424_242, batch_size: int = 50,
        random: bool = False, quiet: bool = False) -> dict:
    """Load, run the statistics with a progress bar, write the report; returns the result."""
    m = load_model(model, random)
    data = load_source(source, n, seed, int(m.info.input_size))
    bar = None
    if not quiet:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(data.labels), desc=f"stats {m.info.name}", unit="img")

    def progress(done, total):
        if bar is not None:
            bar.n = done
            bar.refresh()
    try:
        result = dataset_stats(m, data, batch_size=batch_size, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    result["source"] = source if source in SYNTHETIC else Path(source).name
    result["seed"] = seed if source in SYNTHETIC else None
    write_report(result, Path(out))
    return result


def summary(result: dict) -> str:
    """A few lines for the terminal."""
    lines = [f"{result['model']}: {result['n']} images from {result['source']}"]
    for layer, e in result["channel"].items():
        lines.append(f"  channel {layer}: class-specificity {e['specificity']:.3f} "
                     f"(chance {e['chance']:.3f})")
    for layer, e in result["kernel"].items():
        p = e["per_10px"]
        if p["slope"] is not None:
            lines.append(f"  kernel {layer}: large-kernel weight {p['slope']:+.4f} per 10 px "
                         f"[{p['lo']:+.4f}, {p['hi']:+.4f}]")
    for layer, e in result["group"].items():
        c = e["concentration"]
        lines.append(f"  group {layer}: concentration on the object {c['mean']:.3f} "
                     f"[{c['lo']:.3f}, {c['hi']:.3f}]")
    if len(lines) == 1:
        lines.append("  (no channel gates, SK kernels or SGE groups with what they need)")
    return "\n".join(lines)


def cmd_stats(args) -> int:
    """The CLI's ``stats`` command."""
    import sys
    try:
        r = run(args.source, args.model, args.out, n=args.n, seed=args.seed,
                batch_size=args.batch_size, random=args.random, quiet=args.quiet)
    except AttnvizError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(r))
    print(f"wrote {args.out}/stats.json, CSV tables and figures")
    return 0


FINDING_SEEDS = (424_242, 424_243, 424_244)


def findings(model: str, n: int = 500, seeds=FINDING_SEEDS, batch_size: int = 50) -> dict:
    """The statistics of a shipped model on ``n`` fresh synthetic images per seed, reduced to
    the papers' headline numbers with intervals over seeds (and over images within each):
    class-specificity per layer, large-kernel slope per 10 px per layer, concentration per layer.
    """
    import numpy as np

    m = load_model(model)
    runs = [dataset_stats(m, load_source("synthetic", n, s, int(m.info.input_size)),
                          batch_size=batch_size) for s in seeds]
    out = {"model": m.info.name, "seeds": list(seeds), "images_per_seed": n}
    if runs[0]["channel"]:
        out["class_specificity"] = {layer: {
            "over_seeds": mean_interval([r["channel"][layer]["specificity"] for r in runs]),
            "chance": runs[0]["channel"][layer]["chance"]} for layer in runs[0]["channel"]}
    if runs[0]["kernel"]:
        ks = {}
        for layer in runs[0]["kernel"]:
            x = np.concatenate([r["kernel"][layer]["scale"] for r in runs])
            y = np.concatenate([r["kernel"][layer]["large_weight"] for r in runs])
            f = slope_interval(x, y)
            ks[layer] = {"pooled_per_10px": {k: None if f[k] is None else round(10 * f[k], 5)
                                             for k in ("slope", "lo", "hi")},
                         "r": f["r"], "n": f["n"],
                         "per_seed_per_10px": mean_interval(
                             [r["kernel"][layer]["per_10px"]["slope"] for r in runs]),
                         "mean_weight": mean_interval(y)}
        out["kernel_slope"] = ks
    if runs[0]["group"]:
        out["group_concentration"] = {layer: {
            "pooled": mean_interval(np.concatenate([[r["group"][layer]["concentration"]["mean"]]
                                                    for r in runs])),
            "per_seed": [r["group"][layer]["concentration"] for r in runs]}
            for layer in runs[0]["group"]}
    return out
