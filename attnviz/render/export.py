"""The one export of an analysis, written as a folder (``attnviz inspect``) or into a zip (the
app's Export) by :func:`write_analysis`, from one list of files (:func:`export_files`):

    image.png           the image (longest side at most 1024 px)
    overlays/*.png      every spatial map and each attribution over the image, with a colour bar
                        (an affinity: the row of the query point, the point marked)
    figures/*.html      the Plotly figure of each kind, plotly.min.js beside them (offline)
    scores.json         the analysis summary (prediction, maps' metadata, scores, timings, query)
    maps.npz            raw capture tensors, each attribution (raw, and its map over image.png)
                        and the class probabilities, float32 (numpy.load)
    README.txt          this list
    manifest.json       every file of the export with its size and what it holds

The same analysis with the same options gives the same files with the same bytes, whoever
writes them: figures carry fixed element ids and maps.npz fixed timestamps; ``summary`` (what a
caller adds to scores.json, e.g. the app's scores table) is the one thing a caller varies.

    write_analysis(analysis, Path("results/star"))          # a folder
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        write_analysis(analysis, z, query=(37, 81))          # into a zip
"""
from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import kinds as K
from ..analysis.headline import grid_map
from ..capture.maps import has_spatial
from . import figures as F
from .captions import attribution_grid, attribution_norm, map_caption, method_name
from .overlay import affinity_overlay, fit, overlay, to_png_bytes, with_colorbar
from .scale import resolve_range

EXPORT_SIDE = 1024  # the exported image's longest side (overlays are drawn on it)
OVERLAY_MIN_SIDE = 512  # overlays of smaller images are drawn enlarged, so colour-bar labels fit
FIGURE_MAX_SIZE = 96  # figures block-average larger maps (kilobytes of JSON, not megabytes)
PLOTLY_JS = "plotly.min.js"
PLOTLY_PATH = f"figures/{PLOTLY_JS}"
MANIFEST = "manifest.json"
FORMAT = "attnviz-export/1"
README = __doc__.split("\n\n", 1)[1].split("\n\n", 1)[0] + "\n"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries of maps.npz: the same bytes on every export


@dataclass(frozen=True)
class ExportFile:
    """One file of an export: its path inside the folder or zip, what it holds, its bytes."""
    path: str
    what: str
    data: bytes


def slug(s: str) -> str:
    """A file-name-safe form of a module path or method name ("layer3.0.cbam", "gradcam++")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s.replace("+", "p")).strip("_")[:80] or "map"


@functools.lru_cache(maxsize=1)
def plotly_js() -> bytes:
    """plotly.js, read once per process (about 4 MB)."""
    import plotly.offline  # deferred: plotly's offline bundle is only read for an export
    return plotly.offline.get_plotlyjs().encode()


def default_query(analysis) -> tuple[float, float]:
    """The affinity query point when none is given: the image's centre (image pixels)."""
    h, w = analysis.image.shape[:2]
    return (w - 1) / 2, (h - 1) / 2


def _drawable(image: np.ndarray) -> np.ndarray:
    """The image to draw overlays on: at least OVERLAY_MIN_SIDE on its longer side (a 128 px
    example enlarged by whole pixels), so each colour bar has room for its label."""
    h, w = image.shape[:2]
    k = int(np.ceil(OVERLAY_MIN_SIDE / max(h, w)))
    if k <= 1:
        return image
    return cv2.resize(image, (w * k, h * k), interpolation=cv2.INTER_NEAREST)


def overlay_files(analysis, image: np.ndarray, query) -> list[ExportFile]:
    """Every spatial map and each attribution over ``image`` (the exported image), with a
    colour bar; an affinity map shows the row of ``query`` (image pixels), the point marked."""
    a = analysis
    image = _drawable(image)
    sx, sy = image.shape[1] / a.image.shape[1], image.shape[0] / a.image.shape[0]
    qx, qy = query
    out = []
    for i, r in enumerate(a.maps):
        if not has_spatial(r):
            continue
        label = map_caption(r, a.maps)
        if K.of(r).queried:  # the row of the query, the query marked
            label = f"{label} · query ({qx:.0f}, {qy:.0f})"
            img = affinity_overlay(image, r, qx * sx, qy * sy, colorbar=True, label=label)
        else:
            img = overlay(image, grid_map(r), norm="minmax", colorbar=True, label=label)
        out.append(ExportFile(f"overlays/{i:02d}_{slug(r.tap)}_{r.kind}.png",
                              f"overlay: {label}", to_png_bytes(img)))
    for k in a.attributions:
        m = attribution_grid(a, k)
        lo, hi = resolve_range(m, attribution_norm(k))
        label = f"{method_name(k)} ({a.target_name})"
        img = with_colorbar(overlay(image, m, norm=(lo, hi)), lo, hi, label=label)
        out.append(ExportFile(f"overlays/attribution_{slug(k)}.png", f"overlay: {label}",
                              to_png_bytes(img)))
    return out


def figures(analysis, query) -> dict[str, tuple[str, object]]:
    """{file stem: (what, Plotly figure)} for the kinds present: one figure per map, one for
    every layer of a grouped kind; an affinity's at ``query`` (image pixels)."""
    a = analysis
    recs = a.maps
    h, w = a.image.shape[:2]
    out = {}
    for spec in K.all_kinds():  # kinds drawn as one figure for every layer
        same = [r for r in recs if r.kind == spec.name]
        if spec.grouped and same:
            out[f"{spec.name}_all_layers"] = (f"figure: {spec.title}, every layer",
                                              spec.figure_builder()(same))
    for i, r in enumerate(recs):
        spec = K.of(r)
        if spec.grouped:
            continue
        kw = {"max_size": FIGURE_MAX_SIZE}
        if spec.queried:
            kw.update(qx=query[0], qy=query[1], image_hw=(h, w))
        out[f"{i:02d}_{slug(r.tap)}_{r.kind}"] = (f"figure: {map_caption(r, recs)}",
                                                  F.figure_for(r, **kw))
    return out


def figure_files(analysis, query) -> list[ExportFile]:
    """The figures as HTML pages that load plotly.js from beside them (and plotly.js)."""
    out = [ExportFile(f"figures/{stem}.html", what,
                      fig.to_html(include_plotlyjs=PLOTLY_JS, full_html=True,
                                  div_id=f"av-{stem}").encode())
           for stem, (what, fig) in figures(analysis, query).items()]
    if out:
        out.append(ExportFile(PLOTLY_PATH, "plotly.js, so the figures open offline",
                              plotly_js()))
    return out


def map_arrays(analysis, image_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """maps.npz's arrays: ``NN__tap__kind`` (each capture tensor), ``attribution__M__raw`` (what
    the method returned), ``attribution__M__map`` (its map over the exported image, ``image_hw``
    = (H, W): the image's own resolution up to EXPORT_SIDE), and ``probs``; float32."""
    a = analysis
    arrays = {f"{i:02d}__{r.tap}__{r.kind}": r.tensor.detach().float().cpu().numpy()
              for i, r in enumerate(a.maps)}
    for k, att in a.attributions.items():
        arrays[f"attribution__{k}__raw"] = att.raw.detach().float().cpu().numpy()
        m = np.clip(a.preprocess.to_image(attribution_grid(a, k)), 0, None)
        if m.shape != tuple(image_hw):  # a large image: the map at the exported image's size
            m = cv2.resize(m, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_AREA)
        arrays[f"attribution__{k}__map"] = m.astype(np.float32)
    arrays["probs"] = np.asarray(a.probs, dtype=np.float32)
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``numpy.savez_compressed`` with fixed entry timestamps: the same arrays, the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for key, val in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(val), allow_pickle=False)
    return buf.getvalue()


def export_files(analysis, query=None, summary: dict | None = None) -> list[ExportFile]:
    """Every file of the export, the manifest last. ``query``: the affinity query point in image
    pixels (default: the centre); ``summary``: fields the caller adds to scores.json."""
    a = analysis
    query = default_query(a) if query is None else (float(query[0]), float(query[1]))
    image = fit(a.image, EXPORT_SIDE)
    scores = {**a.to_dict(), "query": list(query), **(summary or {})}
    files = [ExportFile("image.png", f"the image ({image.shape[1]} x {image.shape[0]} px)",
                        to_png_bytes(image)),
             *overlay_files(a, image, query),
             *figure_files(a, query),
             ExportFile("scores.json", "prediction, maps' metadata, scores, timings, query",
                        json.dumps(scores, indent=2).encode()),
             ExportFile("maps.npz", "raw capture tensors, attributions, probabilities (float32)",
                        npz_bytes(map_arrays(a, image.shape[:2]))),
             ExportFile("README.txt", "what each file holds", README.encode())]
    listed = [{"path": f.path, "what": f.what, "bytes": len(f.data)} for f in files]
    listed.append({"path": MANIFEST, "what": "this list", "bytes": None})
    manifest = {"format": FORMAT, "model": a.model_name, "files": listed}
    files.append(ExportFile(MANIFEST, "this list", json.dumps(manifest, indent=2).encode()))
    return files


def write_analysis(analysis, dest, query=None, summary: dict | None = None,
                   plotly_file: Path | None = None) -> dict:
    """Write the export of ``analysis`` into ``dest``: a folder (made if missing) or an open
    ``zipfile.ZipFile``. ``plotly_file``: a copy of plotly.js already on disk that a folder's
    figures/plotly.min.js is hard-linked to (many folders, one copy on disk; copied where a link
    cannot be made). A folder an earlier export wrote loses that export's files first (those its
    manifest lists), so it holds exactly what the new manifest lists. Returns the manifest."""
    files = export_files(analysis, query, summary)
    if isinstance(dest, zipfile.ZipFile):
        for f in files:
            dest.writestr(f.path, f.data)
    else:
        folder = Path(dest)
        _remove_previous(folder)
        for f in files:
            path = folder / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            if f.path == PLOTLY_PATH and plotly_file is not None:
                _link(Path(plotly_file), path)
            else:
                path.write_bytes(f.data)
    return json.loads(files[-1].data)


def _remove_previous(folder: Path) -> None:
    """The files an earlier export listed in ``folder``'s manifest (and only those, inside the
    folder), so that a folder written again holds exactly what its new manifest lists."""
    try:
        listed = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no earlier export here (or not one of ours): nothing is removed
    root = folder.resolve()
    for entry in listed:
        path = (folder / str(entry.get("path", "") if isinstance(entry, dict) else "")).resolve()
        if path != root and path.is_relative_to(root) and path.is_file():
            path.unlink()


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy
        shutil.copyfile(src, dst)
