"""Export: the session's last analysis as a zip (event ``export``):

    overlays/*.png     every spatial map and the attribution over the image, with a colour bar
    figures/*.html     the Plotly figure of each kind (plotly.js beside them: they open offline)
    scores.json        the analysis summary (prediction, maps' metadata, scores, timings)
    maps.npz           raw capture tensors and attributions (float32; affinities as captured)
    image.png          the image (longest side at most 1024 px)
"""
from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np

from .. import kinds as K
from ..capture.maps import has_spatial
from ..render import figures as F
from ..render.overlay import affinity_overlay, fit, overlay, to_png_bytes, with_colorbar
from . import leftovers
from . import views as V
from .errors import bad_request, user_errors
from .leftovers import owned_prefix
from .sessions import use

EXPORT_SIDE = 1024
OVERLAY_MIN_SIDE = 512  # overlays of smaller images are drawn enlarged, so colour-bar labels fit
PLOTLY_JS = "plotly.min.js"


def _drawable(image: np.ndarray) -> np.ndarray:
    """The image to draw overlays on: at least OVERLAY_MIN_SIDE on its longer side (a 128 px
    example enlarged by whole pixels), so each colour bar has room for its label."""
    import cv2
    h, w = image.shape[:2]
    k = int(np.ceil(OVERLAY_MIN_SIDE / max(h, w)))
    if k <= 1:
        return image
    return cv2.resize(image, (w * k, h * k), interpolation=cv2.INTER_NEAREST)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")[:80] or "map"


def _query(sess) -> tuple[float, float]:
    """The session's affinity query in image pixels (default: the image centre)."""
    h, w = sess.analysis.image.shape[:2]
    return tuple(sess.query) if sess.query is not None else ((w - 1) / 2, (h - 1) / 2)


def _figures(sess) -> dict:
    """{file stem: figure} for the kinds present."""
    a = sess.analysis
    out = {}
    recs = a.maps
    h, w = a.image.shape[:2]
    q = _query(sess)
    for spec in K.all_kinds():  # kinds drawn as one figure for every layer
        same = [r for r in recs if r.kind == spec.name]
        if spec.grouped and same:
            out[f"{spec.name}_all_layers"] = spec.figure_builder()(same)
    for i, r in enumerate(recs):
        spec = K.of(r)
        if spec.grouped:
            continue
        kw = {"max_size": 96}
        if spec.queried:
            kw.update(qx=q[0], qy=q[1], image_hw=(h, w))
        out[f"{i:02d}_{_slug(r.tap)}_{r.kind}"] = F.figure_for(r, **kw)
    return out


def build_zip(sess) -> Path:
    """Write the export zip for a session; returns its path (in a fresh temp folder)."""
    from .analysis import shown_method, summary
    a = sess.analysis
    image = fit(a.image, EXPORT_SIDE)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("image.png", to_png_bytes(image))
        image = _drawable(image)
        sx, sy = image.shape[1] / a.image.shape[1], image.shape[0] / a.image.shape[0]
        qx, qy = _query(sess)
        for i, r in enumerate(a.maps):
            if not has_spatial(r):
                continue
            if K.of(r).queried:  # the row of the session's query, the query marked
                img = affinity_overlay(image, r, qx * sx, qy * sy, colorbar=True,
                                       label=f"{V.map_caption(r, a.maps)} · query "
                                             f"({qx:.0f}, {qy:.0f})")
            else:
                img = overlay(image, V.grid_map(r), norm="minmax", colorbar=True,
                              label=V.map_caption(r, a.maps))
            z.writestr(f"overlays/{i:02d}_{_slug(r.tap)}_{r.kind}.png", to_png_bytes(img))
        for k in a.attributions:
            m = V.attribution_grid(a, k)
            from ..render.scale import resolve_range
            lo, hi = resolve_range(m, V.attribution_norm(k))
            img = with_colorbar(overlay(image, m, norm=(lo, hi)), lo, hi,
                                label=f"{V.method_name(k)} ({a.target_name})")
            z.writestr(f"overlays/attribution_{k}.png", to_png_bytes(img))
        figures = _figures(sess)
        if figures:
            import plotly.offline
            z.writestr(f"figures/{PLOTLY_JS}", plotly.offline.get_plotlyjs())
        for stem, fig in figures.items():
            z.writestr(f"figures/{stem}.html", fig.to_html(include_plotlyjs=PLOTLY_JS,
                                                           full_html=True))
        summ = summary(sess)
        summ["scores_table"] = sess.scores.get("rows", [])
        # deletion / insertion with their random reference, removal and seed, as numbers
        summ["faithfulness"] = sess.scores.get("faithfulness_scores", {})
        summ["attribution_shown"] = shown_method(sess)
        summ["query"] = sess.query
        summ["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
        z.writestr("scores.json", json.dumps(summ, indent=2))
        arrays = {}
        for i, r in enumerate(a.maps):
            arrays[f"{i:02d}__{r.tap}__{r.kind}"] = r.tensor.detach().float().cpu().numpy()
        for k, att in a.attributions.items():
            arrays[f"attribution__{k}__raw"] = att.raw.detach().float().cpu().numpy()
        arrays["probs"] = np.asarray(a.probs, dtype=np.float32)
        npz = io.BytesIO()
        np.savez_compressed(npz, **arrays)
        z.writestr("maps.npz", npz.getvalue())
        z.writestr("README.txt", __doc__.split("\n\n", 1)[1])
    from .limits import EXPORT_KEEP_SECONDS
    from .sessions import request_session
    owner = request_session() or f"object-{id(sess)}"
    sweep(EXPORT_KEEP_SECONDS, owner)  # expired ones, and this session's previous one
    out = Path(tempfile.mkdtemp(prefix=owned_prefix(PREFIX), dir=export_folder()))
    with _MADE_LOCK:
        _MADE.append((time.time(), out, owner))
    path = out / f"attnviz_{_slug(sess.model_name)}_{_slug(Path(sess.image_name).stem)}.zip"
    path.write_bytes(buf.getvalue())
    return path


# Each zip is written to a fresh folder inside Gradio's cache, which serves it as it is (no
# copy). A session's previous export is removed at its next one, any export once it is
# EXPORT_KEEP_SECONDS old (at the next export), every one of this process at exit or SIGTERM,
# and those of a server that is gone at the next start.
PREFIX = "attnviz_export_"
_MADE: list[tuple[float, Path, str]] = []
_MADE_LOCK = threading.Lock()


def export_folder() -> Path:
    """Where export zips are written: Gradio's cache for this server."""
    from .uploads import upload_folder
    folder = upload_folder()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sweep(keep_seconds: float = 0, superseded_by: str | None = None) -> int:
    """Remove this process's export folders older than ``keep_seconds`` and those of the
    session ``superseded_by``; how many went."""
    now = time.time()
    with _MADE_LOCK:
        old = [item for item in _MADE if now - item[0] >= keep_seconds or
               (superseded_by is not None and item[2] == superseded_by)]
        for item in old:
            _MADE.remove(item)
    for _, d, _ in old:
        shutil.rmtree(d, ignore_errors=True)
    return len(old)


def remove_orphans() -> int:
    """At start: export folders left by servers that are gone (here and in the temp folder,
    where earlier versions wrote them)."""
    return (leftovers.remove_orphans(export_folder(), PREFIX)
            + leftovers.remove_orphans(tempfile.gettempdir(), PREFIX))


leftovers.on_exit(sweep)


def run_export(sess):
    use(sess)  # this session's analysis was just used (sessions' LRU)
    with user_errors("exporting the analysis"):
        if sess is None:
            raise bad_request("Run an analysis first (Inspect tab: Analyse, or /inspect); the "
                              "export packs the last one.", "Nothing to export")
        path = build_zip(sess)
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        n_figures = sum(n.startswith("figures/") and n.endswith(".html") for n in names)
        md = (f"**{path.name}** — {len(names)} files ({path.stat().st_size / 1024:.0f} KiB): "
              f"{sum(n.startswith('overlays/') for n in names)} overlays, "
              f"{n_figures} figure{'s' if n_figures != 1 else ''} (HTML, with "
              f"{PLOTLY_JS} beside them), scores.json, maps.npz.")
        return str(path), md


def build(ui: SimpleNamespace) -> None:
    gr.Markdown("Download the **last analysis of this session** (Inspect tab) as a zip: PNG "
                "overlays with colour bars, interactive Plotly figures (HTML), the scores and "
                "summary (JSON) and the raw maps (NPZ, readable with `numpy.load`).")
    with gr.Row():
        ui.export_run = gr.Button("Export the current analysis", variant="primary", scale=0,
                                  min_width=260, elem_id="av-export")
        ui.export_note = gr.Markdown()
    ui.export_file = gr.File(label="attnviz export (.zip)", interactive=False,
                             elem_id="av-export-file")
    ui.export_run.click(run_export, ui.state, [ui.export_file, ui.export_note],
                        api_name="export")
