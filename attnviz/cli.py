"""The ``attnviz`` command (installed with the package; also ``python -m attnviz.cli``):

    attnviz serve [--host 127.0.0.1] [--port 7860]       the web app
    attnviz inspect IMAGE_OR_FOLDER --model lite_cbam --out results/
                                                          overlays, figures, scores and maps of
                                                          every image, with a progress bar
    attnviz stats synthetic --model lite_se --out stats/  dataset-level attention statistics
                                                          (per-class gates, kernel vs scale,
                                                          group factors on the object): CSV,
                                                          figures, stats.json
    attnviz train --model lite_cbam ...                   = python -m attnviz.train
    attnviz evaluate --model lite_cbam ...                = python -m attnviz.evaluate
    attnviz bench ...                                     = python -m attnviz.bench

``inspect`` writes, for each image, a folder ``OUT/<image name>/`` in the layout of the app's
Export zip (one writer: :mod:`attnviz.render.export`): ``image.png``, ``overlays/*.png`` (every
map with a spatial layout and each attribution over the image, with a colour bar),
``figures/*.html`` (the Plotly figure of each kind, ``figures/plotly.min.js`` beside them, a
hard link to ``OUT/plotly.min.js``, so they open without a network), ``scores.json``
(prediction, maps' metadata, scores, timings), ``maps.npz`` (the raw capture tensors and
attributions), ``README.txt`` and ``manifest.json`` (every file). Images that cannot be read are
reported and skipped; the exit status is 1 if any was.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .scores.evaluate import add_data_arguments, main as evaluate_main
from .tools.bench import main as bench_main
from .training.train import main as train_main



def _write_analysis(a, folder: Path, plotly_file: Path) -> None:
    """One image's export under ``folder``: the layout the app's Export zips
    (:func:`attnviz.render.export.write_analysis`); figures/plotly.min.js is a hard link to
    ``plotly_file`` (one copy on disk for every image)."""
    from .render.export import write_analysis
    write_analysis(a, folder, plotly_file=plotly_file)


def cmd_inspect(args) -> int:
    """Analyse every image in batched passes (:func:`attnviz.analysis.paths.inspect_paths`;
    shared out over processes under torchrun) and write each one's files as it is done."""
    from tqdm import tqdm

    import attnviz

    from .data.batch import image_paths as folder_images
    from .render.export import PLOTLY_JS, plotly_js
    from .analysis.paths import inspect_paths
    target = Path(args.target)
    if not target.exists():
        raise SystemExit(f"attnviz inspect: {target} does not exist")
    paths = folder_images(target) if target.is_dir() else [target]
    if not paths:
        print(f"attnviz inspect: no images in {target}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plotly_file = out / PLOTLY_JS  # each image's figures/plotly.min.js links to this copy
    plotly_file.write_bytes(plotly_js())
    model = attnviz.create_model(args.model, pretrained=not args.random)
    if not model.info.trained:
        print(f"attnviz inspect: {args.model} has random weights (no checkpoint found): its "
              "maps and labels mean nothing", file=sys.stderr)
    folders = _folders(paths)
    bar = tqdm(total=len(paths), unit="image", desc=args.model, disable=args.quiet)

    def write(path, analysis):
        _write_analysis(analysis, out / folders[str(path)], plotly_file)
        bar.update(1)

    from .attribution.choice import resolve_cam_layer, resolve_target
    from .errors import AttnvizError
    from .attribution.explain import LAYER_METHODS, canonical_method
    try:
        methods = [canonical_method(m) for m in args.attribution.split(",") if m.strip()]
        tgt = resolve_target(model, args.explain_class)
        layer = resolve_cam_layer(model, args.layer)
    except AttnvizError as e:
        raise SystemExit(f"attnviz inspect: {e}") from None
    masks = _masks(paths, Path(args.masks)) if args.masks else None
    rows = inspect_paths(model, paths, batch_size=args.batch_size, on_result=write,
                         attributions=methods, target=tgt, masks=masks,
                         explain_opts={m: {"layer": layer} for m in methods
                                       if layer and m in LAYER_METHODS},
                         scores=False if args.no_scores else {"steps": args.steps})
    failed = [r for r in rows if "error" in r]
    bar.update(len(failed))
    bar.close()
    done = [{"image": r["path"], "folder": folders[r["path"]], "prediction": r["target_name"],
             "probability": round(float(r["top_k"][0][1]), 4)} for r in rows if "error" not in r]
    (out / "index.json").write_text(json.dumps(
        {"model": args.model, "images": done,
         "failed": [{"image": r["path"], "error": r["error"]} for r in failed]}, indent=2))
    for r in failed:
        print(f"attnviz inspect: skipped {r['path']}: {r['error']}", file=sys.stderr)
    print(f"{len(done)} image(s) analysed with {args.model} -> {out}/"
          + (f"; {len(failed)} skipped" if failed else ""))
    return 1 if failed else 0


def _masks(paths, folder: Path) -> dict:
    """{image path: mask file}: the file of the same name in ``folder`` (else the same stem as a
    PNG); images without one are analysed without a mask."""
    if not folder.is_dir():
        raise SystemExit(f"attnviz inspect: --masks {folder} is not a folder")
    out = {}
    for p in paths:
        for name in (Path(p).name, Path(p).stem + ".png"):
            if (folder / name).is_file():
                out[str(p)] = str(folder / name)
                break
    return out


def _folders(paths) -> dict:
    """{path: output folder name}: the file's stem, made unique (a.png and a.jpg)."""
    from .render.export import slug
    out, used = {}, set()
    for p in paths:
        stem = slug(Path(p).stem)
        while stem in used:
            stem += "_"
        used.add(stem)
        out[str(p)] = stem
    return out


def cmd_serve(args) -> int:
    import os
    if args.host:
        os.environ["GRADIO_SERVER_NAME"] = args.host
    if args.port:
        os.environ["GRADIO_SERVER_PORT"] = str(args.port)
    os.environ.setdefault("GRADIO_SERVER_NAME", "127.0.0.1")
    os.environ.setdefault("GRADIO_SERVER_PORT", "7860")
    from .app import build_demo, launch_kwargs
    print(f"attnviz: starting the app on http://{os.environ['GRADIO_SERVER_NAME']}:"
          f"{os.environ['GRADIO_SERVER_PORT']} (Ctrl+C stops it)", flush=True)
    build_demo().launch(**launch_kwargs())
    return 0


DELEGATED = {"train": train_main, "evaluate": evaluate_main, "bench": bench_main}


def _cmd_stats(args) -> int:
    from .tools.stats_report import cmd_stats  # deferred: loads torch, plotly
    return cmd_stats(args)


def _delegate(module: str, argv) -> int:
    DELEGATED[module](list(argv))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attnviz", description="Look inside CNNs with attention "
                                "modules: the web app, batch analysis, training, evaluation.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", help="start the web app")
    s.add_argument("--host", help="address to listen on (default $GRADIO_SERVER_NAME or "
                                  "127.0.0.1; 0.0.0.0: every interface)")
    s.add_argument("--port", type=int, help="default $GRADIO_SERVER_PORT or 7860")
    s.set_defaults(run=cmd_serve)
    s = sub.add_parser("inspect", help="analyse an image or every image of a folder",
                       description="Write overlays, figures, scores and maps for each image "
                                   "(see `attnviz inspect --help`).")
    s.add_argument("target", metavar="IMAGE_OR_FOLDER")
    s.add_argument("--model", required=True, help="a model name, e.g. lite_cbam or resnet50 "
                                                  "(python -c 'import attnviz; "
                                                  "print(attnviz.list_models())')")
    s.add_argument("--out", required=True, help="output folder (created)")
    s.add_argument("--attribution", default="gradcam",
                   help="attribution method(s), comma-separated: gradcam, guided_gradcam, "
                        "integrated_gradients, smoothgrad, saliency, occlusion, gradient_shap, "
                        "gradcam++, xgradcam, layercam, hirescam, scorecam, ablationcam, eigencam "
                        "(default gradcam)")
    s.add_argument("--target", dest="explain_class", help="the class to explain, an index or a "
                                                          "name (default: each image's prediction)")
    s.add_argument("--layer", help="the CAM methods' layer, a module path such as layer3 "
                                   "(default: the model's Grad-CAM layer)")
    s.add_argument("--masks", metavar="DIR", help="ground-truth masks (white = object), one per "
                   "image under the same file name and at the image's size: every localisation "
                   "score (pointing, energy) uses them")
    s.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    s.add_argument("--steps", type=int, default=16, help="deletion / insertion curve steps")
    s.add_argument("--no-scores", action="store_true", help="skip the scores (faster)")
    s.add_argument("--random", action="store_true", help="random weights instead of the "
                                                         "pretrained ones")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=cmd_inspect)
    s = sub.add_parser("stats", help="dataset-level attention statistics (CSV and figures)",
                       description="Per-class channel gates per depth, SK kernel weight against "
                                   "object size, SGE group factors on the object through depth, "
                                   "over many images in batches.")
    s.add_argument("source", metavar="FOLDER_OR_SYNTHETIC",
                   help="'synthetic' (six shapes), 'relational', 'cued' (the relational "
                        "tasks), or a folder / zip of class sub-folders")
    s.add_argument("--model", required=True, help="a model name or a .safetensors checkpoint "
                                                  "written by attnviz train")
    s.add_argument("--out", default="stats", help="output folder (default stats/)")
    add_data_arguments(s, "synthetic images")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_cmd_stats)
    for name, module, what in (("train", "train", "train a lite model"),
                               ("evaluate", "evaluate", "accuracy and localisation on fresh "
                                                        "synthetic images"),
                               ("bench", "bench", "time the analyses")):
        s = sub.add_parser(name, help=f"{what} (python -m attnviz.{module}; its options "
                                      "follow)", add_help=False)
        s.add_argument("options", nargs="*", help=f"see python -m attnviz.{module} --help")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:  # every option goes to that module's own parser
        return _delegate(argv[0], argv[1:])
    args = parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
