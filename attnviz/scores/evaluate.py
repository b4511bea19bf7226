"""Score a model against the synthetic shapes' ground truth: top-1 accuracy, and for Grad-CAM and
every attention map with a spatial layout, the pointing game and the energy-based pointing game
against the target object's mask; and deletion / insertion AUC with ROAD removal for Grad-CAM,
each attention kind, the oracle (the object's mask) and a random map, with 95% bootstrap
intervals over the images (:mod:`attnviz.faithfulness_eval`; ``--faithfulness 0`` skips them).

    python -m attnviz.evaluate --model lite_cbam                  # 500 fresh images, TEST_SEED
    python -m attnviz.evaluate --model lite_cbam --json out.json --write-card
    python -m attnviz.evaluate --model lite_cbam --random         # untrained weights, for contrast
    python -m attnviz.evaluate --model all --write-card --markdown  # every shipped checkpoint
    torchrun --nproc_per_node 4 -m attnviz.evaluate --model lite_cbam --images 2000  # 4 processes

    from attnviz.evaluate import evaluate
    result = evaluate(model, n=500)                               # a JSON-ready dict

One pass per batch: Captum's Grad-CAM (target = the true label, on ``model.info.cam_layer``)
makes the forward pass that also gives the logits and, through :func:`attnviz.capture`, every
attention record. Maps are reduced with :func:`attnviz.maps.to_spatial` (spatial gates as they
are, group and calibration maps averaged over groups / channels, affinities as the attention each
key position receives, averaged over queries), ReLU'd for Grad-CAM, and bilinearly upsampled to
the image. A pointing-game hit is the map's maximum within ``tolerance`` px of the mask
(:func:`attnviz.metrics.pointing_game`); the energy figure is the share of the map's positive
mass inside the mask (:func:`attnviz.metrics.energy_pointing_game`). ``chance`` gives both figures
for a map that carries no information (a uniformly random point; a constant map).

Across processes (:mod:`attnviz.shard`): under ``torchrun`` each process scores its share of the
batches into one row per image; the rows are gathered in image order and reduced exactly as one
process reduces its own, so N processes give what one gives (``processes`` records N).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..capture.recorder import capture
from ..data.synthetic import ShapesData, make_shapes
from ..errors import AttnvizError
from . import faithfulness_eval as FE
from ..attribution.explain import get_explainer, model_lock, reduce_attribution
from ..capture.maps import SPATIAL_KINDS, to_spatial, upsample
from .metrics import energy_pointing_game, pointing_game
from ..data.shard import Shard, current as current_shard, finish as finish_shard
from ..data.synthetic import TEST_SEED, to_tensor
from ..models.info import info_of
from .links import run_relational
from ..data.link_tasks import LINK_TASKS
from ..models.registry import create_model
from .metrics import eval_mode
from ..models.weights import MODELS_DIR
from ..models.weights import load_weights
from ..models.registry import list_models
from .sanity import format_sanity, sanity_check
from .evaluate_report import format_table, summary_markdown  # noqa: F401 - format_table: public here too

KIND_ORDER = SPATIAL_KINDS  # attnviz.kinds' spatial kinds, in registry order


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _near_mask_fraction(mask: np.ndarray, tolerance: float) -> float:
    """Share of the pixels within ``tolerance`` px of the mask: the hit rate of a random point."""
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return float((dist <= tolerance + 1e-6).mean())


def evaluate(model, n: int = 500, seed: int = TEST_SEED, batch_size: int = 50,
             tolerance: float = 3, progress=None, data: ShapesData | None = None,
             shard: Shard | None = None, faithfulness: bool | int = False,
             steps: int = FE.STEPS) -> dict:
    """Accuracy and localisation figures of ``model`` (a model, or a model name for its
    pretrained weights) on ``n`` fresh synthetic images drawn with ``seed`` (default
    :data:`attnviz.data.synthetic.TEST_SEED`, never used in training), or on ``data`` (a ShapesData
    with
    masks at the model's input size, e.g. from ``datasets.load_image_folder``).

    progress: called after every batch with {"stage", "done", "total", "accuracy",
        "gradcam_pointing"} (running figures).
    faithfulness: also score deletion / insertion (ROAD, ``steps`` steps) of Grad-CAM, each
        attention kind, the oracle (mask) and a random map, with 95% bootstrap intervals over
        the images (:mod:`attnviz.faithfulness_eval`): True for every image, a number for the
        first that many (about a second per image on a CPU core).
    Returns a JSON-ready dict: accuracy; gradcam {layer, grid, pointing, energy}; attention
    {layer: {kind, block, grid, pointing, energy}} per record with a spatial reduction; kinds
    {kind: {layers, pointing_mean, energy_mean, deepest_layer, pointing_deepest, energy_deepest}};
    chance {pointing, energy}; faithfulness (None unless asked); and the settings used.
    """
    if isinstance(model, str):
        model = create_model(model, pretrained=True)
    info = info_of(model)  # any model: its ModelInfo, or the one describe() gave it
    size = int(info.input_size)
    if batch_size < 1:
        raise AttnvizError("batch_size must be at least 1")
    if tolerance < 0:
        raise AttnvizError("tolerance must be >= 0 pixels")
    if data is not None:
        if data.images.shape[1:3] != (size, size):
            raise AttnvizError(f"the images are {data.images.shape[2]} x {data.images.shape[1]} "
                               f"but {info.name} takes {size} x {size}; load them with "
                               f"size={size}")
        n = len(data)
    if n < 1:
        raise AttnvizError("n must be at least 1")
    device = _model_device(model)
    shard = shard or current_shard()
    t0 = time.time()
    batches = [np.arange(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    faith_n = n if faithfulness is True else max(0, int(faithfulness or 0))
    rows, meta = _image_rows(model, shard.take(batches), n, seed, size, data, tolerance,
                             progress, faith_n, steps)
    # one row per image, gathered in image order: the sums below run in the same order, on the
    # same per-image values, however many processes computed them
    rows = shard.gather(rows)
    merged = {"gradcam": None, "attention": {}}
    for m in shard.gather([meta]):  # rank order: the first process's maps come first
        merged["gradcam"] = merged["gradcam"] or m["gradcam"]
        for k, v in m["attention"].items():
            merged["attention"].setdefault(k, v)
    meta = merged
    out = _reduce(rows, meta, info, n, seed, size, tolerance, batch_size, data, device, t0)
    out["faithfulness"] = FE.reduce_scores([r.get("faithfulness") for r in rows], steps) \
        if faith_n else None
    return out


def _image_rows(model, batches, n, seed, size, data, tolerance, progress=None, faith_n=0,
                steps=FE.STEPS):
    """Per-image rows for the images in ``batches`` (index arrays), and the maps' descriptions.

    A row: index, correct (0/1), masked (the mask marks an object), chance (random-point hit
    rate, flat-map energy), gradcam (pointing hit, energy) and attention {key: (hit, energy)}
    for a masked image; faithfulness {map: [deletion, insertion]} for the first ``faith_n``
    masked images."""
    info = info_of(model)
    device = _model_device(model)
    exp = get_explainer(model, "gradcam")
    modes = eval_mode(model)
    modes.__enter__()  # every module's own flag comes back in the finally below
    rows = []
    meta = {"gradcam": None, "attention": {}}
    total = sum(len(i) for i in batches)
    correct = hits = scored = 0
    try:
        for idx in batches:
            d = data.subset(idx) if data is not None else \
                make_shapes(n, seed=seed, size=size, indices=idx)
            masks = d.masks
            valid = masks.reshape(len(idx), -1).any(1) if masks is not None else \
                np.zeros(len(idx), bool)
            x = to_tensor(d.images, info.mean, info.std).to(device)
            y = torch.from_numpy(d.labels).long()
            with model_lock(model):
                with capture(model, kinds=SPATIAL_KINDS, example=x) as rec:
                    raw, _, logits = exp.attribute_with_logits(x, target=y.to(device))
            if logits.shape[1] != len(d.classes):
                raise AttnvizError(f"{info.name} has {logits.shape[1]} outputs but the data has "
                                   f"{len(d.classes)} classes; evaluate a model trained on it")
            ok = (logits.argmax(1).cpu() == y).tolist()
            batch_rows = [{"index": int(i), "correct": int(c), "masked": bool(v),
                           "chance": None, "gradcam": None, "attention": {}}
                          for i, c, v in zip(idx, ok, valid)]
            if masks is not None:
                for row, mask in zip(batch_rows, masks):
                    if row["masked"]:
                        row["chance"] = (_near_mask_fraction(mask, tolerance),
                                         float(mask.mean()))
                cam = reduce_attribution(raw, "gradcam")  # ReLU'd Grad-CAM, (B, h, w)
                meta["gradcam"] = meta["gradcam"] or {"layer": exp.layer_name,
                                                      "grid": list(cam.shape[-2:])}
                _score_into(batch_rows, "gradcam", None, upsample(cam, (size, size)), masks,
                            tolerance)
                keys = {}
                for r in rec.maps:
                    m = to_spatial(r)
                    if m is None:
                        continue
                    key = r.layer if r.layer not in keys or keys[r.layer] == r.tap else r.tap
                    keys.setdefault(key, r.tap)
                    meta["attention"].setdefault(key, {"kind": r.kind, "block": r.block,
                                                       "grid": list(m.shape[-2:]),
                                                       "tap": r.tap})
                    _score_into(batch_rows, "attention", key, upsample(m, (size, size)), masks,
                                tolerance)
                if idx[0] < faith_n:  # deletion / insertion (ROAD) of every map of an image
                    want = [m if (r["masked"] and i < faith_n) else None
                            for r, m, i in zip(batch_rows, masks, idx)]
                    scores = FE.image_scores(model, x, d.labels, want, cam, rec.maps, idx, size,
                                             steps, seed)
                    for row, s in zip(batch_rows, scores):
                        row["faithfulness"] = s
            rows += batch_rows
            if progress is not None:
                correct += sum(r["correct"] for r in batch_rows)
                got = [r["gradcam"][0] for r in batch_rows if r["gradcam"] is not None]
                hits, scored = hits + sum(got), scored + len(got)
                progress({"stage": "evaluate", "done": len(rows), "total": total,
                          "accuracy": correct / len(rows),
                          "gradcam_pointing": hits / scored if scored else None})
    finally:
        modes.__exit__(None, None, None)
    return rows, meta


def _score_into(rows, field, key, maps, masks, tolerance):
    """Pointing hit and energy of each masked image's map into its row."""
    for row, m, mask in zip(rows, maps, masks):
        if not row["masked"]:
            continue
        score = (int(pointing_game(m, mask, tolerance)), float(energy_pointing_game(m, mask)))
        if key is None:
            row[field] = score
        else:
            row[field][key] = score


def _mean_of(scores: list):
    """(pointing, energy) means of (hit, energy) pairs in order, rounded; None for none."""
    if not scores:
        return None, None
    hits = energy = 0.0
    for h, e in scores:
        hits += h
        energy += e
    return round(hits / len(scores), 4), round(energy / len(scores), 4)


def _reduce(rows, meta, info, n, seed, size, tolerance, batch_size, data, device, t0) -> dict:
    """The result dict from per-image rows (in image order)."""
    rows = sorted(rows, key=lambda r: r["index"])
    masked = [r for r in rows if r["masked"]]
    gradcam = None
    if meta["gradcam"] is not None:
        p, e = _mean_of([r["gradcam"] for r in masked])
        gradcam = dict(meta["gradcam"], pointing=p, energy=e)
    layers = {}
    for key, desc in meta["attention"].items():
        p, e = _mean_of([r["attention"][key] for r in masked if key in r["attention"]])
        layers[key] = {k: v for k, v in desc.items() if k != "tap"}
        layers[key].update(pointing=p, energy=e)
    chance = None
    if masked:
        cp = ce = 0.0
        for r in masked:
            cp += r["chance"][0]
            ce += r["chance"][1]
        chance = {"pointing": round(cp / len(masked), 4), "energy": round(ce / len(masked), 4)}
    return {
        "model": info.name, "trained": bool(info.trained), "weights": str(info.weights_source),
        "data": "synthetic shapes (make_shapes)" if data is None else
        str(data.meta.get("source", "user data")),
        "n": int(n), "seed": int(seed) if data is None else None, "image_size": size,
        "tolerance": tolerance, "batch_size": batch_size,
        "accuracy": round(sum(r["correct"] for r in rows) / n, 4),
        "gradcam": None if gradcam is None else dict(gradcam, target="true label"),
        "attention": layers,
        "kinds": _per_kind(layers),
        "chance": chance,
        "masked_images": len(masked),
        "seconds": round(time.time() - t0, 2), "device": str(device),
    }


def _per_kind(layers: dict) -> dict:
    """Per kind: the mean over its layers and the deepest (last in forward order) layer."""
    out = {}
    kinds = sorted({v["kind"] for v in layers.values()},
                   key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else 99)
    for kind in kinds:
        names = [k for k, v in layers.items() if v["kind"] == kind and v["pointing"] is not None]
        if not names:
            continue
        deep = names[-1]
        out[kind] = {
            "layers": names,
            "pointing_mean": round(float(np.mean([layers[k]["pointing"] for k in names])), 4),
            "energy_mean": round(float(np.mean([layers[k]["energy"] for k in names])), 4),
            "deepest_layer": deep,
            "pointing_deepest": layers[deep]["pointing"],
            "energy_deepest": layers[deep]["energy"],
        }
    return out


# ------------------------------------------------------------------------------ card and table
def write_card(name: str, result: dict, models_dir=None) -> Path:
    """Merge ``result`` into ``<models_dir>/<name>.json`` as {"evaluation": result,
    "test_accuracy": ..., "gradcam_pointing": ...}, keeping every other key."""
    path = Path(models_dir or MODELS_DIR) / f"{name}.json"
    if not path.is_file():
        raise AttnvizError(f"no model card at {path}; train the model first (python -m "
                           f"attnviz.train --model {name} --out {path.parent})")
    card = json.loads(path.read_text())
    card["evaluation"] = result
    card["test_accuracy"] = result["accuracy"]
    card["gradcam_pointing"] = None if result["gradcam"] is None else \
        result["gradcam"]["pointing"]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2))
    os.replace(tmp, path)
    return path


def _load(name: str, models_dir, random: bool):
    if random:
        return create_model(name)
    if models_dir is None:
        return create_model(name, pretrained=True)
    ckpt = Path(models_dir) / f"{name}.safetensors"
    if not ckpt.is_file():
        raise AttnvizError(f"no checkpoint {ckpt}")
    model = load_weights(create_model(name), ckpt)
    card = ckpt.with_suffix(".json")
    if card.is_file():
        model.info.card.update(json.loads(card.read_text()))
    return model


def add_data_arguments(p: argparse.ArgumentParser, images: str) -> None:
    """The options ``python -m attnviz.evaluate`` and ``attnviz stats`` share: how many fresh
    images (``images`` says what they are), their seed (TEST_SEED: never used in training), the
    batch size and random weights."""
    p.add_argument("--n", "--images", dest="n", type=int, default=500,
                   help=f"{images} (default 500)")
    p.add_argument("--seed", type=int, default=TEST_SEED,
                   help=f"data seed (default {TEST_SEED}, never used in training)")
    p.add_argument("--batch-size", type=int, default=50, help="images per forward pass")
    p.add_argument("--random", action="store_true", help="random weights instead of the "
                                                         "pretrained ones")


def main(argv=None):
    lite, link = list_models("lite"), list_models("link")
    p = argparse.ArgumentParser(prog="python -m attnviz.evaluate",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=lite + link + ["all"],
                   help="a lite model (or, with --task relational / cued, a link-task body such "
                        "as lite_nonlocal_last), or 'all' for every one with a checkpoint")
    add_data_arguments(p, "number of fresh images; under torchrun write --images")
    p.add_argument("--tolerance", type=float, default=3, help="pointing-game tolerance in px")
    p.add_argument("--link-tolerance", type=int, default=0,
                   help="--task relational / cued: grow the partner and distractor masks by this "
                        "many px before scoring the links (default 0: strict)")
    p.add_argument("--faithfulness", type=int, default=None, metavar="N",
                   help="deletion / insertion (ROAD) with bootstrap intervals on the first N "
                        "images (default: all; 0: skip; about a second per image per core)")
    p.add_argument("--sanity", type=int, default=4, metavar="N",
                   help="randomisation sanity check (per-layer Spearman and a verdict for "
                        "Grad-CAM and each attention kind) on the first N images (default 4; "
                        "0: skip)")
    p.add_argument("--steps", type=int, default=FE.STEPS,
                   help=f"deletion / insertion curve steps (default {FE.STEPS})")
    p.add_argument("--json", help="write the result as JSON to this file ('-': stdout); with "
                                  "--model all, {name: result}")
    p.add_argument("--write-card", action="store_true",
                   help="merge the result into models/<name>.json (evaluation, test_accuracy, "
                        "gradcam_pointing)")
    p.add_argument("--models-dir", type=Path, help="read checkpoints (and write cards) here "
                                                   "instead of attnviz's models folder")
    p.add_argument("--markdown", action="store_true", help="also print a Markdown summary table")
    p.add_argument("--task", default="shapes", choices=["shapes", *LINK_TASKS],
                   help="relational / cued: score the <model>_rel / <model>_cue checkpoints on "
                        "fresh images of that task (accuracy, link scores against a random "
                        "affinity and the oracle, over 3 seeds; --images per seed)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.random and a.write_card:
        p.error("--write-card records the pretrained model's figures; drop --random")
    folder = Path(a.models_dir or MODELS_DIR)
    if a.task in LINK_TASKS:  # the relational checkpoints: <model>_rel / _cue.safetensors
        names = lite + link if a.model == "all" else [a.model]
        found = run_relational(names, folder, a.n, a.write_card, a.batch_size, task=a.task,
                               tolerance_px=a.link_tolerance)
        if not found:
            suffix = LINK_TASKS[a.task].suffix
            print(f"error: no {a.task} checkpoint ({names[0]}{suffix}.safetensors, ...) in "
                  f"{folder}; train one with scripts/train_relational.sh", file=sys.stderr)
            return 2
        if a.json:
            text = json.dumps(found, indent=2)
            print(text) if a.json == "-" else Path(a.json).write_text(text)
        return 0
    if a.model == "all":
        names = lite if a.random else [m for m in lite if (folder / f"{m}.safetensors").is_file()]
        if not names:
            print(f"error: no lite checkpoint in {folder}", file=sys.stderr)
            return 2
    else:
        names = [a.model]
    shard = current_shard()  # under torchrun: this process's share of the images
    try:
        return _run(a, names, folder, shard)
    finally:
        finish_shard()


def _run(a, names, folder, shard) -> int:
    if a.device:
        device = torch.device(a.device)
    elif shard.world > 1:
        device = shard.device()
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = sys.stderr if a.json == "-" else sys.stdout
    results = {}
    for name in names:
        try:
            model = _load(name, a.models_dir, a.random)
        except AttnvizError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        model.to(device)
        r = evaluate(model, n=a.n, seed=a.seed, batch_size=a.batch_size, tolerance=a.tolerance,
                     shard=shard, steps=a.steps,
                     faithfulness=True if a.faithfulness is None else a.faithfulness)
        if shard.world > 1:
            r["processes"] = shard.world
        results[name] = r
        if not shard.leader:
            continue
        if a.sanity > 0:
            d = make_shapes(a.sanity, seed=a.seed, size=int(model.info.input_size))
            r["sanity"] = sanity_check(model, list(d.images), targets=[int(t) for t in d.labels])
            r["sanity_images"] = {"n": a.sanity, "seed": a.seed}
        print(format_table(r) + "\n", file=out, flush=True)
        if r.get("sanity"):
            print(format_sanity(r["sanity"]) + "\n", file=out, flush=True)
        if a.write_card:
            print(f"wrote {write_card(name, r, folder)}", file=sys.stderr)
    if not shard.leader:
        return 0
    if a.markdown or len(results) > 1:
        print(summary_markdown(list(results.values())), file=out)
    payload = results[names[0]] if a.model != "all" else results
    if a.json == "-":
        print(json.dumps(payload, indent=2))
    elif a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
