"""An evaluation's result as text: the per-model table (``python -m attnviz.evaluate`` prints it)
and the Markdown summary over models the README quotes."""
from __future__ import annotations

from . import faithfulness_eval as FE


def _f(v) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def format_table(r: dict) -> str:
    lines = [f"{r['model']} ({'trained' if r['trained'] else 'random weights'}: {r['weights']})",
             f"{r['n']} images ({r['data']}" + (f", seed {r['seed']}" if r["seed"] is not None
                                               else "") + f"), {r['seconds']} s on {r['device']}",
             f"top-1 accuracy {r['accuracy']:.4f}", ""]
    w = max([len("Grad-CAM " + str((r["gradcam"] or {}).get("layer")))] +
            [len(k) for k in r["attention"]] + [28])
    lines.append(f"{'map':<{w}}  {'kind':<11} {'grid':>7}  {'pointing':>8}  {'energy':>6}")
    g = r["gradcam"]
    if g is not None:
        lines.append(f"{'Grad-CAM ' + str(g['layer']):<{w}}  {'gradcam':<11} "
                     f"{'x'.join(map(str, g['grid'])):>7}  {_f(g['pointing']):>8}  "
                     f"{_f(g['energy'])}")
    for k, v in r["attention"].items():
        lines.append(f"{k:<{w}}  {v['kind']:<11} {'x'.join(map(str, v['grid'])):>7}  "
                     f"{_f(v['pointing']):>8}  {_f(v['energy'])}")
    if r["kinds"]:
        lines += ["", f"{'per kind':<{w}}  {'mean over layers':>20}   deepest layer"]
        for kind, v in r["kinds"].items():
            lines.append(f"{kind:<{w}}  {_f(v['pointing_mean'])}  {_f(v['energy_mean'])}     "
                         f"{_f(v['pointing_deepest'])}  {_f(v['energy_deepest'])}  "
                         f"({v['deepest_layer']})")
    if r["chance"]:
        lines += ["", f"{'chance (random point / flat map)':<{w}}  {'':<11} {'':>7}  "
                      f"{_f(r['chance']['pointing']):>8}  {_f(r['chance']['energy'])}"]
    lines.append(f"pointing: map maximum within {r['tolerance']} px of the object; energy: share "
                 "of the map's positive mass on the object")
    if r.get("faithfulness"):
        lines += ["", FE.format_scores(r["faithfulness"])]
    return "\n".join(lines)


def summary_markdown(results: list[dict]) -> str:
    """A Markdown table (one row per model) of the headline figures, e.g. for the README."""
    lines = ["| model | top-1 | Grad-CAM pointing | Grad-CAM energy | attention maps: pointing "
             "(mean over layers / deepest layer) |",
             "|---|---|---|---|---|"]
    for r in results:
        g = r["gradcam"] or {}
        kinds = "; ".join(f"{k} {v['pointing_mean']:.2f} / {v['pointing_deepest']:.2f}"
                          for k, v in r["kinds"].items()) or "no spatial map"
        lines.append(f"| {r['model']} | {r['accuracy']:.3f} | {_f(g.get('pointing')).strip()} | "
                     f"{_f(g.get('energy')).strip()} | {kinds} |")
    if results and results[0].get("chance"):
        c = results[0]["chance"]
        lines.append(f"\n{results[0]['n']} held-out images (seed {results[0]['seed']}); pointing "
                     f"hit = map maximum within {results[0]['tolerance']} px of the object "
                     f"(chance {c['pointing']:.2f}); energy = share of the positive map on the "
                     f"object (chance {c['energy']:.2f}).")
    faith = [r for r in results if r.get("faithfulness")]
    if faith:
        lines += ["", "| model | Grad-CAM | attention kinds | oracle (mask) | random |",
                  "|---|---|---|---|---|"]
        for r in faith:
            f = r["faithfulness"]
            kinds = "; ".join(f"{k} {FE.markdown_cell(f, k)}" for k in f["maps"]
                              if k not in (FE.GRADCAM, FE.ORACLE, FE.RANDOM)) or "-"
            lines.append(f"| {r['model']} | {FE.markdown_cell(f, FE.GRADCAM)} | {kinds} | "
                         f"{FE.markdown_cell(f, FE.ORACLE)} | {FE.markdown_cell(f, FE.RANDOM)} |")
        f = faith[0]["faithfulness"]
        lines.append(f"\nDeletion / insertion AUC with ROAD removal ({f['steps']} steps) on "
                     f"{f['images']} images, mean [95% bootstrap interval]; deletion: lower is "
                     "better, insertion: higher. Random: a seeded uniform map on Grad-CAM's "
                     "grid.")
    return "\n".join(lines)
