"""Which attention path carries a cued model's answer? Per checkpoint, on fresh seeds of the cued
task: the image's accuracy and the answer read at the cue with each attention module switched
off (its output replaced by its input), one at a time and all together. A model whose answer at
the cue survives its spatial affinity switched off has another path to it (DANet's channel
attention, CAM, mixes every cell's channels with weights computed from the whole image).

Usage: PYTHONPATH=. python scripts/ablate_branches.py models/cue128/lite_danet_last_cue.safetensors
       [--n 300] [--seeds 424242 424243 424244] [--write-card]
The modules switched off are those that compute an attention map (an affinity or a channel
affinity); --write-card stores the figures in the card under "branch_ablation".
"""
import argparse
import json
import os
from pathlib import Path

import torch

from attnviz.data.link_tasks import LINK_TASKS
from attnviz.models.checkpoint import load_checkpoint
from attnviz.models.layers.tap import Tap
from attnviz.scores.links import accuracies
from attnviz.scores.stats import mean_interval


def attention_modules(model) -> list[str]:
    """Names of the modules that own a tap of an affinity (spatial or channel)."""
    out = []
    for name, m in model.named_modules():
        if any(isinstance(t, Tap) and "affinity" in t.kind for t in m.children()):
            out.append(name)
    return out


def accuracy_with_off(model, data, names, batch: int = 100) -> tuple[float, float]:
    mods = dict(model.named_modules())
    hooks = [mods[n].register_forward_hook(lambda _m, i, _o: i[0]) for n in names]
    try:
        return accuracies(model, data, batch, at_query=True)
    finally:
        for h in hooks:
            h.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[424242, 424243, 424244])
    ap.add_argument("--task", default="cued", choices=sorted(LINK_TASKS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-card", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for path in a.checkpoints:
        model = load_checkpoint(path)
        names = attention_modules(model)
        if not names:
            raise SystemExit(f"{path}: no module computes an attention map")
        settings = {"on": []} | {f"{n} off": [n] for n in names}
        if len(names) > 1:
            settings["all off"] = names
        runs = {k: ([], []) for k in settings}
        for seed in a.seeds:
            data = LINK_TASKS[a.task].make(a.n, seed=seed, size=model.info.input_size)
            for k, off in settings.items():
                acc, at_q = accuracy_with_off(model, data, off)
                runs[k][0].append(acc)
                runs[k][1].append(at_q)
        result = {"task": a.task, "seeds": a.seeds, "images_per_seed": a.n,
                  "switched_off": {k: {"accuracy": mean_interval(acc),
                                       "at_query": mean_interval(at_q)}
                                   for k, (acc, at_q) in runs.items()}}
        print(Path(path).stem)
        for k, r in result["switched_off"].items():
            print(f"  {k:>16}: accuracy {r['accuracy']['mean']:.3f}, "
                  f"at the query {r['at_query']['mean']:.3f} (over seeds)")
        if a.write_card:
            card_path = Path(path).with_suffix(".json")
            card = json.loads(card_path.read_text())
            card["branch_ablation"] = result
            tmp = card_path.with_name(card_path.name + ".tmp")
            tmp.write_text(json.dumps(card, indent=2))
            os.replace(tmp, card_path)


if __name__ == "__main__":
    main()
