"""Link scores: does an affinity row, queried on one object, point at the object it must be related
to (its *partner*) rather than at a look-alike that does not matter (the *distractor*)?

For one image, a query point on the query region and an affinity row over a key grid (softmax over
keys, as non-local, SAGAN and DANet's PAM compute it), with the partner, distractor and query
masks at image resolution:

- each key cell belongs to the first region that touches it, in the order own (the query's own
  region), partner, distractor, else background;
- **mass shares**: the row's mass on the cells of each region (``partner``, ``distractor``,
  ``own``, ``background``; they sum to 1);
- **link pointing**: the row's maximum over the cells outside the query's own region falls on a
  partner cell.

The relation is symmetric (two squares of the same colour or not) and which square is the query is
drawn at random, so every image is also scored the other way round: a query at the partner's
centre, whose partner is then the query square (``*_reverse``). Per image, ``pointing_either`` is 1
when at least one of the two queries points at the other square (the two regions are linked in
some direction) and ``pointing_both`` when both do; ``partner_pair`` / ``distractor_pair`` are the
two directions' mass shares averaged. ``pointing`` (one query on the query square) is the issue's
figure; the pair figures tell a one-way link (a model whose red square reads the other square while
a blue one reads itself: the trained SAGAN) from no link. Every definition is applied unchanged to
the model, the random baseline and the oracle.

**Query dependence** (the check of GCNet, Cao et al. 2019, who found non-local maps nearly the same
for every query): the total-variation distance between the query's row and the mean of the rows of
all query positions of the same image; 0 when every position reads the same keys (a ranking of
the keys whatever asks), up to 1. The random reference draws a random row for every query.

Every score is computed the same way for two references on the same masks and grid: a
**random** affinity (softmax of unit Gaussian logits, seeded) and the **oracle** (the partner's
cover, normalised), so a number reads against its floor and its ceiling.
:func:`link_evaluation` runs a model over a :class:`~attnviz.data.relational.RelationalData` in
batches and scores every affinity it computes.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import OptionError
from .stats import mean_interval, region_cover
from ..capture.recorder import capture
from ..data.synthetic import to_tensor
from ..data.link_tasks import LINK_TASKS
from ..models.checkpoint import load_checkpoint
from ..models.readout import logits_at, trained_at_query

REGIONS = ("partner", "distractor", "own", "background")


def query_rows(points_yx: np.ndarray, image_hw: tuple[int, int], query_hw: tuple[int, int]):
    """(N,) row index of the query cell holding each (y, x) pixel point."""
    p = np.asarray(points_yx, float)
    qh, qw = query_hw
    iy = np.clip((p[:, 0] / image_hw[0] * qh).astype(int), 0, qh - 1)
    ix = np.clip((p[:, 1] / image_hw[1] * qw).astype(int), 0, qw - 1)
    return iy * qw + ix


def link_scores(rows: np.ndarray, partner: np.ndarray, distractor: np.ndarray,
                own: np.ndarray) -> dict:
    """Per-image scores of affinity ``rows`` (N, K) against region covers (N, K) from
    :func:`region_cover` (a cell belongs to a region when the cover is above 0). Returns a dict of
    (N,) arrays: the four mass shares and ``pointing``
    (1.0 / 0.0; NaN where every key cell touches the query region)."""
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape != np.shape(partner):
        raise OptionError(f"affinity rows {rows.shape} and region covers {np.shape(partner)} "
                          "must both be (images, key cells)")
    rows = np.clip(rows, 0, None)
    rows = rows / np.clip(rows.sum(1, keepdims=True), 1e-12, None)
    own_c = np.asarray(own) > 0
    partner_c = (np.asarray(partner) > 0) & ~own_c
    distractor_c = (np.asarray(distractor) > 0) & ~own_c & ~partner_c
    out = {"partner": (rows * partner_c).sum(1), "distractor": (rows * distractor_c).sum(1),
           "own": (rows * own_c).sum(1)}
    out["background"] = np.clip(1 - out["partner"] - out["distractor"] - out["own"], 0, 1)
    best = np.where(own_c, -np.inf, rows).argmax(1)
    hit = partner_c[np.arange(len(rows)), best]
    out["pointing"] = np.where((~own_c).any(1), hit.astype(float), np.nan)
    return out


def partner_points(partner_masks: np.ndarray) -> np.ndarray:
    """(N, 2) (y, x) centre of each partner mask (its centroid): the reverse query's point."""
    m = np.asarray(partner_masks, bool)
    area = np.clip(m.sum((1, 2)), 1, None)
    ys, xs = np.arange(m.shape[1]), np.arange(m.shape[2])
    return np.stack([(m.sum(2) * ys).sum(1) / area, (m.sum(1) * xs).sum(1) / area], 1) + 0.5


def pair_scores(forward: np.ndarray, reverse: np.ndarray, cov: dict) -> dict:
    """:func:`link_scores` of the query's row (``forward``) and of the partner's row (``reverse``,
    roles swapped), with the pair figures: ``pointing_either`` / ``pointing_both`` (at least one /
    both queries point at the other square) and the two directions' masses averaged.
    ``cov``: region covers {"partner", "distractor", "own"} (N, K)."""
    f = link_scores(forward, cov["partner"], cov["distractor"], cov["own"])
    r = link_scores(reverse, cov["own"], cov["distractor"], cov["partner"])
    out = dict(f)
    out["pointing_reverse"] = r["pointing"]
    out["partner_reverse"] = r["partner"]
    out["pointing_either"] = np.fmax(f["pointing"], r["pointing"])
    out["pointing_both"] = np.fmin(f["pointing"], r["pointing"])
    out["partner_pair"] = (f["partner"] + r["partner"]) / 2
    out["distractor_pair"] = (f["distractor"] + r["distractor"]) / 2
    return out


def query_dependence(rows: np.ndarray, mean_rows: np.ndarray) -> np.ndarray:
    """(N,) total-variation distance between each row and its image's mean row over all queries
    (both (N, K), normalised here): 0 = the query reads what every position reads."""
    a = np.clip(np.asarray(rows, np.float64), 0, None)
    b = np.clip(np.asarray(mean_rows, np.float64), 0, None)
    a = a / np.clip(a.sum(1, keepdims=True), 1e-12, None)
    b = b / np.clip(b.sum(1, keepdims=True), 1e-12, None)
    return 0.5 * np.abs(a - b).sum(1)


def colour_preference(diff: np.ndarray, colours) -> list | None:
    """Mean partner-minus-distractor mass of the query's row for each (partner colour, distractor
    colour) pair: ``[[partner, distractor, mean, images], ...]`` (palette indices, from the data's
    ``region_colours``). A row that matches the query's colour is positive in every cell; one that
    ranks the colours, whatever the query, is negative wherever the distractor's colour ranks
    higher."""
    if colours is None:
        return None
    c = np.asarray(colours)
    out = []
    for p in np.unique(c[:, 1]):
        for d in np.unique(c[:, 2]):
            sel = (c[:, 1] == p) & (c[:, 2] == d)
            if sel.any():
                out.append([int(p), int(d), round(float(np.nanmean(diff[sel])), 3),
                            int(sel.sum())])
    return out


def random_query_dependence(n: int, queries: int, k: int, seed: int = 0) -> np.ndarray:
    """:func:`query_dependence` of random rows: ``queries`` random rows per image, the first
    against their mean."""
    out = np.empty(n)
    for i in range(n):
        r = random_rows(queries, k, seed * 100_003 + i)
        out[i] = query_dependence(r[:1], r.mean(0, keepdims=True))[0]
    return out


def random_rows(n: int, k: int, seed: int = 0) -> np.ndarray:
    """The random-affinity baseline: softmax over ``k`` keys of unit Gaussian logits."""
    z = np.random.default_rng(seed).normal(size=(n, k))
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def oracle_rows(partner: np.ndarray) -> np.ndarray:
    """The oracle: all mass on the partner, in proportion to its cover of each key cell."""
    partner = np.asarray(partner, np.float64)
    return partner / np.clip(partner.sum(1, keepdims=True), 1e-12, None)


def summarize(per_image: dict) -> dict:
    """Means with 95% intervals over images, and the partner / distractor mass ratio."""
    out = {k: mean_interval(v) for k, v in per_image.items()}
    p, d = float(np.nanmean(per_image["partner"])), float(np.nanmean(per_image["distractor"]))
    # from the unrounded means: a distractor mass below 1e-4 still gives a (large) ratio
    out["partner_over_distractor"] = float(f"{p / d:.3g}") if d > 0 else None
    if "partner_pair" in per_image:
        p, d = (float(np.nanmean(per_image[k])) for k in ("partner_pair", "distractor_pair"))
        out["pair_partner_over_distractor"] = float(f"{p / d:.3g}") if d > 0 else None
    return out


def _gather(rec, qidx: np.ndarray) -> np.ndarray:
    """(B, Nk) rows of affinity record ``rec`` at per-image query indices."""
    t = rec.tensor.float()
    idx = torch.as_tensor(qidx, dtype=torch.long, device=t.device)
    if "query_index" in rec.meta:  # rows were capped: the nearest kept query
        kept = rec.meta["query_index"].to(torch.long).to(t.device)
        idx = (kept[None] - idx[:, None]).abs().argmin(1)
    return t[torch.arange(t.shape[0], device=t.device), idx].cpu().numpy()


@torch.no_grad()
def link_evaluation(model, data, batch_size: int = 50, seed: int = 0, progress=None,
                    at_query: bool = False, tolerance_px: int = 0) -> dict:
    """Score every affinity ``model`` computes on ``data`` (a RelationalData).

    at_query: also the accuracy of the answer read at each image's query point
    (:func:`attnviz.models.readout.logits_at`; a model trained to answer there), as
    ``accuracy_at_query``, and per affinity layer that accuracy with the module switched off (its
    output replaced by its input), ``at_query_off``: does the answer at the query need the link?
    tolerance_px: grow the partner and distractor masks by this many pixels (a square
    neighbourhood) before they are laid on the key grid, as the pointing game counts a hit within
    a tolerance: a row on the cells just next to an object counts as on it. 0: strict.

    Returns {"accuracy", "n", "layers": {layer: {"block", "query_hw", "key_hw", "model",
    "random", "oracle"}}} where each of model / random / oracle is :func:`summarize` of the
    per-image scores, and ``per_image`` arrays are kept under ``"_per_image"`` for pooling over
    seeds. progress: called with (images done, total).
    """

    for f in ("partner_masks", "distractor_masks", "query_masks", "query_points"):
        if getattr(data, f, None) is None:
            raise OptionError("link scores need relational data with partner, distractor and "
                              "query masks (attnviz.datasets.make_relational)")
    info = model.info
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    n = len(data.labels)
    hw = data.images.shape[1:3]
    rows, rows_rev, means, correct, correct_q, t0 = {}, {}, {}, 0, 0, time.time()
    partner_yx = partner_points(data.partner_masks)
    meta = {}
    try:
        for i in range(0, n, batch_size):
            sl = slice(i, min(i + batch_size, n))
            x = to_tensor(data.images[sl], info.mean, info.std).to(device)
            with capture(model, kinds=["affinity"], discover=False) as rec:
                if at_query:
                    logits, q_logits = logits_at(model, x, data.query_points[sl])
                    correct_q += int((q_logits.argmax(1).cpu().numpy() == data.labels[sl]).sum())
                else:
                    logits = model(x)
            correct += int((logits.argmax(1).cpu().numpy() == data.labels[sl]).sum())
            for r in rec:
                q = query_rows(data.query_points[sl], hw, r.meta["query_hw"])
                rows.setdefault(r.layer, []).append(_gather(r, q))
                q = query_rows(partner_yx[sl], hw, r.meta["query_hw"])
                rows_rev.setdefault(r.layer, []).append(_gather(r, q))
                means.setdefault(r.layer, []).append(r.tensor.float().mean(1).cpu().numpy())
                meta[r.layer] = (r.block, tuple(r.meta["query_hw"]), tuple(r.meta["key_hw"]))
            if progress is not None:
                progress(sl.stop, n)
    finally:
        model.train(was)
    if not rows:
        raise OptionError(f"{info.name} computes no affinity (non-local, SAGAN or DANet PAM); "
                          "link scores need one")
    layers = {}
    for k, (layer, parts) in enumerate(rows.items()):
        block, qhw, khw = meta[layer]
        a = np.concatenate(parts)
        cov = {name: region_cover(grown(getattr(data, f), tolerance_px if name != "own" else 0),
                                  khw)
               for name, f in (("partner", "partner_masks"), ("distractor", "distractor_masks"),
                               ("own", "query_masks"))}
        b = np.concatenate(rows_rev[layer])
        kk = a.shape[1]
        per = {"model": pair_scores(a, b, cov),
               "random": pair_scores(random_rows(n, kk, seed + k),
                                     random_rows(n, kk, seed + k + 7919), cov),
               "oracle": pair_scores(oracle_rows(cov["partner"]), oracle_rows(cov["own"]), cov)}
        per["model"]["query_dependence"] = query_dependence(a, np.concatenate(means[layer]))
        by_colour = colour_preference(per["model"]["partner"] - per["model"]["distractor"],
                                      getattr(data, "region_colours", None))
        per["random"]["query_dependence"] = random_query_dependence(n, qhw[0] * qhw[1], kk,
                                                                    seed + k)
        layers[layer] = {"block": block, "query_hw": list(qhw), "key_hw": list(khw),
                         **{ref: summarize(v) for ref, v in per.items()}, "_per_image": per,
                         "by_colour": by_colour}
        if at_query:
            layers[layer]["at_query_off"] = _at_query_without(model, data, layer, batch_size)
    out = {"n": n, "accuracy": round(correct / n, 4), "layers": layers}
    if at_query:
        out["accuracy_at_query"] = round(correct_q / n, 4)
    out["seconds"] = round(time.time() - t0, 2)
    return out


def grown(masks: np.ndarray, px: int) -> np.ndarray:
    """``masks`` (N, H, W) grown by ``px`` pixels (a (2 px + 1)-square neighbourhood)."""
    if px <= 0:
        return masks
    t = torch.as_tensor(np.asarray(masks), dtype=torch.float32)[:, None]
    return (torch.nn.functional.max_pool2d(t, 2 * px + 1, 1, px)[:, 0] > 0).numpy()


@torch.no_grad()
def accuracies(model, data, batch_size: int = 100, at_query: bool = False):
    """(image accuracy, accuracy of the answer read at each image's query point or None) of
    ``model`` on ``data``, in one pass (eval mode, restored after)."""
    info = model.info
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    hits = hits_q = 0
    try:
        for i in range(0, len(data.labels), batch_size):
            sl = slice(i, i + batch_size)
            x = to_tensor(data.images[sl], info.mean, info.std).to(device)
            if at_query:
                logits, q = logits_at(model, x, data.query_points[sl])
                hits_q += int((q.argmax(1).cpu().numpy() == data.labels[sl]).sum())
            else:
                logits = model(x)
            hits += int((logits.argmax(1).cpu().numpy() == data.labels[sl]).sum())
    finally:
        model.train(was)
    n = len(data.labels)
    return hits / n, (hits_q / n if at_query else None)


def _at_query_without(model, data, layer: str, batch_size: int) -> float:
    """Accuracy at the query with module ``layer``'s output replaced by its input."""
    h = dict(model.named_modules())[layer].register_forward_hook(lambda _m, i, _o: i[0])
    try:
        return round(accuracies(model, data, batch_size, at_query=True)[1], 4)
    finally:
        h.remove()


def pooled_over_seeds(results: list[dict]) -> dict:
    """Pool :func:`link_evaluation` results of several seeds: per layer and reference, the mean
    over all images with its interval, and the spread of the per-seed means."""
    out = {"seeds": len(results), "n": sum(r["n"] for r in results),
           "accuracy": mean_interval([r["accuracy"] for r in results]), "layers": {}}
    if "accuracy_at_query" in results[0]:
        out["accuracy_at_query"] = mean_interval([r["accuracy_at_query"] for r in results])
    for layer, first in results[0]["layers"].items():
        entry = {"block": first["block"], "key_hw": first["key_hw"],
                 "by_colour": _pool_colours([r["layers"][layer].get("by_colour")
                                             for r in results])}
        for ref in ("model", "random", "oracle"):
            per = {k: np.concatenate([r["layers"][layer]["_per_image"][ref][k] for r in results])
                   for k in first["_per_image"][ref]}
            s = summarize(per)
            s["per_seed"] = {k: mean_interval([r["layers"][layer][ref][k]["mean"]
                                               for r in results])
                             for k in ("pointing", "partner", "distractor", "pointing_either",
                                       "pointing_both", "partner_pair", "query_dependence")
                             if k in per}
            entry[ref] = s
        if "at_query_off" in first:
            entry["at_query_off"] = mean_interval([r["layers"][layer]["at_query_off"]
                                                   for r in results])
        out["layers"][layer] = entry
    return out


def _pool_colours(tables: list) -> list | None:
    """:func:`colour_preference` tables of several seeds pooled (means weighted by images)."""
    if any(t is None for t in tables):
        return None
    acc = {}
    for t in tables:
        for p, d, mean, n in t:
            s, k = acc.get((p, d), (0.0, 0))
            acc[(p, d)] = (s + mean * n, k + n)
    return [[p, d, round(s / k, 3), k] for (p, d), (s, k) in sorted(acc.items())]


def public(result: dict) -> dict:
    """``result`` without the per-image arrays (for a JSON card)."""
    if isinstance(result, dict):
        return {k: public(v) for k, v in result.items() if k != "_per_image"}
    return result


# ------------------------------------------------------------------------------ trained models
LINK_SEEDS = (424_242, 424_243, 424_244)  # fresh test seeds, never used by training (1e6+) or
# validation (5e5 + seed)


@torch.no_grad()
def evaluate_links(model, n: int = 400, seeds=LINK_SEEDS, batch_size: int = 50,
                   progress=None, task: str = "relational", tolerance_px: int = 0) -> dict:
    """Accuracy and link scores of ``model`` on ``n`` fresh images per seed of the relational
    ``task`` (a key of :data:`~attnviz.data.link_tasks.LINK_TASKS`), pooled over the seeds
    (intervals over all images, and over the per-seed means). A model without an affinity (the
    plain-CNN control) gets its accuracy only."""
    if task not in LINK_TASKS:
        raise OptionError(f"unknown relational task {task!r}; choose one of {sorted(LINK_TASKS)}")
    make = LINK_TASKS[task].make
    if int(tolerance_px) < 0:
        raise OptionError(f"the link tolerance must be 0 or more pixels, not {tolerance_px}")
    # a model trained to answer at the query (its card's query loss): read that answer too
    at_query = trained_at_query(model)

    size = int(model.info.input_size)
    per_seed, accs, accs_q = [], [], []
    for k, s in enumerate(seeds):
        data = make(n, seed=s, size=size)
        step = (lambda done, total, k=k: progress(k * n + done, len(seeds) * n)) \
            if progress else None
        try:
            r = link_evaluation(model, data, batch_size=batch_size, seed=s, progress=step,
                                at_query=at_query, tolerance_px=tolerance_px)
            per_seed.append(r)
            accs.append(r["accuracy"])
            accs_q.append(r.get("accuracy_at_query"))
        except OptionError:  # no affinity: accuracy only
            acc, acc_q = accuracies(model, data, batch_size, at_query)
            accs.append(round(acc, 4))
            accs_q.append(None if acc_q is None else round(acc_q, 4))
    out = {"model": model.info.name, "task": task, "seeds": list(seeds),
           "images_per_seed": n, "image_size": size, "link_tolerance_px": int(tolerance_px),
           "accuracy": mean_interval(accs), "accuracy_per_seed": accs}
    if at_query:
        out["accuracy_at_query"] = mean_interval(accs_q)
        out["accuracy_at_query_per_seed"] = accs_q
    if per_seed:
        out["links"] = public(pooled_over_seeds(per_seed))
    return out


def format_links(r: dict) -> str:
    """A short text table of :func:`evaluate_links`' result."""
    a = r["accuracy"]
    head = (f"{r['model']}: {r.get('task', 'relational')} accuracy {a['mean']:.3f} "
            f"[{a['lo']:.3f}, {a['hi']:.3f}] "
            f"over seeds {r['seeds']} ({r['images_per_seed']} images each)")
    if r.get("link_tolerance_px"):
        head += f"; partner and distractor grown by {r['link_tolerance_px']} px"
    if "accuracy_at_query" in r:
        q = r["accuracy_at_query"]
        head += f"; read at the query {q['mean']:.3f} [{q['lo']:.3f}, {q['hi']:.3f}]"
    lines = [head]
    for layer, e in r.get("links", {}).get("layers", {}).items():
        lines.append(f"  {layer} ({e['block']}, keys {e['key_hw'][0]}x{e['key_hw'][1]})" +
                     (f"; at the query with it switched off {e['at_query_off']['mean']:.3f}"
                      if "at_query_off" in e else ""))
        if e.get("by_colour"):
            lines.append("    partner - distractor mass by (partner, distractor) colour: " +
                         ", ".join(f"{p}/{d} {v:+.2f}" for p, d, v, _ in e["by_colour"]))
        for ref in ("model", "random", "oracle"):
            s = e[ref]
            p = s["pointing"]
            lines.append(f"    {ref:7s} link pointing {p['mean']:.3f} [{p['lo']:.3f}, "
                         f"{p['hi']:.3f}]  mass partner {s['partner']['mean']:.3f} distractor "
                         f"{s['distractor']['mean']:.3f} own {s['own']['mean']:.3f} background "
                         f"{s['background']['mean']:.3f}  partner/distractor "
                         f"{s['partner_over_distractor']}")
            if "query_dependence" in s:
                lines.append(f"    {'':7s} query dependence "
                             f"{s['query_dependence']['mean']:.3f} (0: every query reads the "
                             "same keys)")
            if "pointing_either" in s:
                e2, b2 = s["pointing_either"], s["pointing_both"]
                lines.append(f"    {'':7s} pair: reverse pointing "
                             f"{s['pointing_reverse']['mean']:.3f}  either {e2['mean']:.3f} "
                             f"[{e2['lo']:.3f}, {e2['hi']:.3f}]  both "
                             f"{b2['mean']:.3f} [{b2['lo']:.3f}, {b2['hi']:.3f}]  mass partner "
                             f"{s['partner_pair']['mean']:.3f} distractor "
                             f"{s['distractor_pair']['mean']:.3f}  partner/distractor "
                             f"{s['pair_partner_over_distractor']}")
    return "\n".join(lines)


def run_relational(names, models_dir, n: int, write_card: bool, batch_size: int = 50,
                   out=None, task: str = "relational", tolerance_px: int = 0) -> dict:
    """``python -m attnviz.evaluate --task relational`` (or ``cued``): every ``<name><suffix>``
    checkpoint in ``models_dir`` (``lite_sagan_rel``, ``lite_sagan_cue``: the task's suffix),
    scored by :func:`evaluate_links`; with ``write_card`` the result goes into its card under
    ``"relational_evaluation"`` (``"relational_evaluation_within_<N>px"`` with a tolerance)."""
    import json
    import os
    import sys
    from pathlib import Path

    out = out or sys.stdout
    results = {}
    for name in names:
        path = Path(models_dir) / f"{name}{LINK_TASKS[task].suffix}.safetensors"
        if not path.is_file():
            continue
        model = load_checkpoint(path)
        r = evaluate_links(model, n=n, batch_size=batch_size, task=task,
                           tolerance_px=tolerance_px)
        results[path.stem] = r
        print(format_links(r) + "\n", file=out, flush=True)
        if write_card:
            card_path = path.with_suffix(".json")
            card = json.loads(card_path.read_text())
            key = "relational_evaluation" + (f"_within_{tolerance_px}px" if tolerance_px else "")
            card[key] = r
            tmp = card_path.with_name(card_path.name + ".tmp")
            tmp.write_text(json.dumps(card, indent=2))
            os.replace(tmp, card_path)
    return results
