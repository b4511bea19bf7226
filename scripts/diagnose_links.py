"""Why does a relational model's link pointing miss? Per checkpoint, on fresh seeds: link pointing
(one query, the reverse query, either way, both ways) split by the query square's palette colour,
and, among the missed queries, the share whose affinity row sits wholly (>= 99% of its mass) on the
query's own square (nothing outside it to point with) rather than on the distractor or background;
and the accuracy with each affinity module switched off (its output replaced by its input, the
residual path alone): does the model need the module at all?

Usage: PYTHONPATH=. python scripts/diagnose_links.py models/rel128/lite_sagan_rel.safetensors [...]
       [--n 300] [--seeds 424242 424243 424244]
"""
import argparse

import numpy as np
import torch

from attnviz.data.relational import PALETTE, make_relational
from attnviz.data.synthetic import to_tensor
from attnviz.models.checkpoint import load_checkpoint
from attnviz.scores.links import LINK_SEEDS, link_evaluation
from attnviz.scores.stats import mean_interval

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(LINK_SEEDS))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for path in a.checkpoints:
        model = load_checkpoint(path)
        per, colours, ablated = {}, [], {}
        for s in a.seeds:
            data = make_relational(a.n, seed=s, size=int(model.info.input_size))
            r = link_evaluation(model, data, seed=s)
            colours.append(data.region_colours)
            for layer in r["layers"]:
                ablated.setdefault(layer, []).append(accuracy_without(model, data, layer))
            for layer, e in r["layers"].items():
                for k, v in e["_per_image"]["model"].items():
                    per.setdefault(layer, {}).setdefault(k, []).append(v)
        colours = np.concatenate(colours)
        print(f"{path}: {len(a.seeds)} seeds x {a.n} images")
        for layer, scores in per.items():
            s = {k: np.concatenate(v) for k, v in scores.items()}
            print(f"  {layer}: accuracy with it switched off {fmt(ablated[layer])} (over seeds)")
            for k in ("pointing", "pointing_reverse", "pointing_either", "pointing_both"):
                print(f"    {k:17s} {fmt(s[k])}")
            for c, name in enumerate(COLOURS):
                q = colours[:, 0] == c
                p = colours[:, 1] == c
                print(f"    query square {name:5s}: pointing {fmt(s['pointing'][q])};"
                      f"  partner {name}: reverse pointing {fmt(s['pointing_reverse'][p])}")
            miss = s["pointing"] == 0
            print(f"    missed queries: {int(miss.sum())}; row >= 99% on its own square: "
                  f"{fmt(s['own'][miss] >= 0.99)}; mean distractor mass "
                  f"{s['distractor'][miss].mean():.4f}")


if __name__ == "__main__":
    main()
