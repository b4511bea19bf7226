"""Export: the session's last analysis as a zip (event ``export``), written by the library's one
export writer (:func:`attnviz.render.export.write_analysis`, the layout ``attnviz inspect`` writes
for each image): image, overlays, figures with plotly.js, scores.json, maps.npz, README.txt and
manifest.json. The app adds its session's view to scores.json (:func:`session_fields`: the
scores table, deletion / insertion with their random reference, the attribution shown, ...).

Each zip is built in memory (its content bounded: the image at most 1024 px, figures
block-averaged), then written once into a fresh folder of Gradio's cache; see :func:`sweep`.
"""
from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ..render.export import PLOTLY_JS, default_query, slug, write_analysis
from . import leftovers
from .errors import bad_request, user_errors
from .leftovers import owned_prefix
from .sessions import use


def _query(sess) -> tuple[float, float]:
    """The session's affinity query in image pixels (default: the image centre)."""
    return tuple(sess.query) if sess.query is not None else default_query(sess.analysis)


def session_fields(sess) -> dict:
    """What the app adds to the analysis's scores.json: the /inspect summary's fields that the
    analysis itself does not hold (weights, mask, headline, agreement, ...), the scores table,
    deletion / insertion with their random reference, removal and seed (numbers), the
    attribution shown, the query asked for and when the export was made."""
    from .analysis import shown_method, summary
    own = set(sess.analysis.to_dict())
    out = {k: v for k, v in summary(sess).items() if k not in own}
    out.update(scores_table=sess.scores.get("rows", []),
               faithfulness=sess.scores.get("faithfulness_scores", {}),
               attribution_shown=shown_method(sess), query_asked=sess.query,
               exported=time.strftime("%Y-%m-%d %H:%M:%S"))
    return out


def build_zip(sess) -> Path:
    """Write the export zip for a session; returns its path (in a fresh temp folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        write_analysis(sess.analysis, z, query=_query(sess), summary=session_fields(sess))
    from .limits import EXPORT_KEEP_SECONDS
    from .sessions import request_session
    owner = request_session() or f"object-{id(sess)}"
    sweep(EXPORT_KEEP_SECONDS, owner)  # expired ones, and this session's previous one
    out = Path(tempfile.mkdtemp(prefix=owned_prefix(PREFIX), dir=export_folder()))
    with _MADE_LOCK:
        _MADE.append((time.time(), out, owner))
    path = out / f"attnviz_{slug(sess.model_name)}_{slug(Path(sess.image_name).stem)}.zip"
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
