"""Why does a relational model's link pointing miss? Per checkpoint, on fresh seeds: link pointing
(one query, the reverse query, either way, both ways) split by the query square's palette colour,
and, among the missed queries, the share whose affinity row sits wholly (>= 99% of its mass) on the
query's own square (nothing outside it to point with) rather than on the distractor or background;
and the accuracy with each affinity module switched off (its output replaced by its input, the
residual path alone): does the model need the module at all? And whether the single row at the
query square's centre is noisy: link pointing of the rows of the whole query region averaged
(query cells at least half covered by the square).

Usage: PYTHONPATH=. python scripts/diagnose_links.py models/rel128/lite_sagan_rel.safetensors [...]
       [--n 300] [--seeds 424242 424243 424244] [--write-card]
--write-card stores the figures in the checkpoint's card under "link_diagnosis".
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from attnviz.data.relational import PALETTE, make_relational
from attnviz.data.synthetic import to_tensor
from attnviz.errors import OptionError
from attnviz.models.checkpoint import load_checkpoint
from attnviz.capture.recorder import capture
from attnviz.scores.links import LINK_SEEDS, link_evaluation, link_scores
from attnviz.scores.stats import mean_interval, region_cover

COLOURS = ("red", "green", "blue")
assert len(COLOURS) == len(PALETTE)


def fmt(v) -> str:
    r = mean_interval(v)
    return f"{r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] (n={r['n']})"


@torch.no_grad()
def accuracy_without(model, data, layer: str, batch: int = 100) -> float:
    """Accuracy with module ``layer``'s output replaced by its input (hook removed after)."""
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: i[0])
    try:
        x = to_tensor(data.images, model.info.mean, model.info.std)
        pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    finally:
        h.remove()
    return float((pred.numpy() == data.labels).mean())


@torch.no_grad()
def region_pointing(model, data, batch: int = 50) -> dict:
    """{layer: (N,) link pointing of the query region's rows averaged}."""
    out = {}
    for i in range(0, len(data.labels), batch):
        sl = slice(i, i + batch)
        x = to_tensor(data.images[sl], model.info.mean, model.info.std)
        with capture(model, kinds=["affinity"], discover=False) as rec:
            model(x)
        for r in rec:
            c = region_cover(data.query_masks[sl], r.meta["query_hw"])
            w = (c >= np.minimum(0.5, c.max(1, keepdims=True))).astype(np.float32)
            rows = np.einsum("nq,nqk->nk", w, r.tensor.float().numpy()) / w.sum(1, keepdims=True)
            cov = [region_cover(m[sl], r.meta["key_hw"]) for m in
                   (data.partner_masks, data.distractor_masks, data.query_masks)]
            out.setdefault(r.layer, []).append(link_scores(rows, *cov)["pointing"])
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(LINK_SEEDS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-card", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for path in a.checkpoints:
        model = load_checkpoint(path)
        per, colours, ablated = {}, [], {}
        for s in a.seeds:
            data = make_relational(a.n, seed=s, size=int(model.info.input_size))
            try:
                r = link_evaluation(model, data, seed=s)
            except OptionError as e:  # the plain-CNN control: nothing to diagnose
                print(f"{path}: {e}")
                break
            colours.append(data.region_colours)
            for layer in r["layers"]:
                ablated.setdefault(layer, []).append(accuracy_without(model, data, layer))
            for layer, e in r["layers"].items():
                for k, v in e["_per_image"]["model"].items():
                    per.setdefault(layer, {}).setdefault(k, []).append(v)
            for layer, v in region_pointing(model, data).items():
                per[layer].setdefault("pointing_region_rows", []).append(v)
        if not per:
            continue
        colours = np.concatenate(colours)
        print(f"{path}: {len(a.seeds)} seeds x {a.n} images")
        card = {"seeds": list(a.seeds), "images_per_seed": a.n, "layers": {}}
        for layer, scores in per.items():
            s = {k: np.concatenate(v) for k, v in scores.items()}
            miss = s["pointing"] == 0
            card["layers"][layer] = {
                "accuracy_switched_off": mean_interval(ablated[layer]),
                **{k: mean_interval(s[k]) for k in ("pointing", "pointing_region_rows",
                                                    "pointing_reverse", "pointing_either",
                                                    "pointing_both")},
                "pointing_by_query_colour": {n: mean_interval(s["pointing"][colours[:, 0] == c])
                                             for c, n in enumerate(COLOURS)},
                "reverse_pointing_by_partner_colour": {
                    n: mean_interval(s["pointing_reverse"][colours[:, 1] == c])
                    for c, n in enumerate(COLOURS)},
                "missed": int(miss.sum()),
                "missed_with_row_on_own_square": mean_interval(s["own"][miss] >= 0.99),
                "missed_distractor_mass": round(float(s["distractor"][miss].mean()), 4)}
            print(f"  {layer}: accuracy with it switched off {fmt(ablated[layer])} (over seeds)")
            for k in ("pointing", "pointing_region_rows", "pointing_reverse", "pointing_either",
                      "pointing_both"):
                print(f"    {k:20s} {fmt(s[k])}")
            for c, name in enumerate(COLOURS):
                q = colours[:, 0] == c
                p = colours[:, 1] == c
                print(f"    query square {name:5s}: pointing {fmt(s['pointing'][q])};"
                      f"  partner {name}: reverse pointing {fmt(s['pointing_reverse'][p])}")
            print(f"    missed queries: {int(miss.sum())}; row >= 99% on its own square: "
                  f"{fmt(s['own'][miss] >= 0.99)}; mean distractor mass "
                  f"{s['distractor'][miss].mean():.4f}")
        if a.write_card:
            card_path = Path(path).with_suffix(".json")
            full = json.loads(card_path.read_text())
            full["link_diagnosis"] = card
            tmp = card_path.with_name(card_path.name + ".tmp")
            tmp.write_text(json.dumps(full, indent=2))
            os.replace(tmp, card_path)


if __name__ == "__main__":
    main()
