"""Plotly figures for capture records, with titles, axis labels and hover values.

Builders take capture records (``attnviz.capture.AttentionMap``) or plain arrays, never an
analysis object, so the app, the CLI and notebooks can call them directly. Every figure stays
well under 1 MB of JSON: big maps are block-averaged (``max_size``) and values are float32.

    fig = figure_for(rec)                       # dispatch on rec.kind
    figs = figures_for(rec_list, shared=True)   # {kind: [figure, ...]}, one scale per kind
    figure_kb(fig)                              # JSON size in KiB

Colour scales are sampled from the same OpenCV colormaps as the overlays, so a figure and an
overlay of one map look alike. Normalisation: ``norm`` ("minmax", "fixed", "percentile") per map,
or an explicit ``zmin``/``zmax`` (e.g. from :func:`shared_range`) shared across maps and models.

The builders live by job: :mod:`.kind_figures` (one per attention kind), :mod:`.charts` (bars,
lines), :mod:`.figure_style` (what every figure shares); this module dispatches on a record's
kind, ranges values for shared scales, and keeps every builder's name reachable from here.
"""
from __future__ import annotations

import inspect as _inspect

import numpy as np
import plotly.graph_objects as go

from .. import kinds as _kinds
from ..errors import OptionError
from .scale import as_numpy, display_values, shared_range
from ..capture.maps import affinity_row
from .figure_style import (MAX_FIGURE_KB, colorscale, figure_kb, is_record,  # noqa: F401
                           shrink)
from .kind_figures import (affinity_explorer, channel_affinity_heatmap,  # noqa: F401
                           channel_gate_bars, channel_order, group_factor_grid,
                           kernel_selection_bars, spatial_heatmap)
from .charts import bars_figure, line_figure  # noqa: F401 - re-exported


# -- dispatch ---------------------------------------------------------------------------------
_QUERY_OPTIONS = ("qx", "qy", "image_hw")


def _named_params(fn) -> set:
    return {n for n, p in _inspect.signature(fn).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _known_options() -> set:
    """Every option some figure builder takes."""
    known = set(_QUERY_OPTIONS) | _named_params(affinity_explorer)
    for spec in _kinds.all_kinds():
        if spec.figure is not None:
            known |= _named_params(spec.figure_builder())
    return known


def _call(fn, *args, **opts):
    """Call ``fn`` with the options it accepts, so one option set serves every kind. An option
    no figure builder of any kind takes is a mistake: OptionError, not silently dropped."""
    params = _inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn(*args, **opts)  # it forwards them and checks itself
    unknown = sorted(k for k in opts if k not in params and k not in _known_options())
    if unknown:
        raise OptionError(f"unknown figure option(s) {unknown}; options are "
                          f"{sorted(_known_options())}")
    return fn(*args, **{k: v for k, v in opts.items() if k in params})


def _query(rec, opts: dict):
    """(qx, qy, (H, W)) of an affinity figure: the options' query in image pixels, default the
    centre of the image (of the query grid read as the image when no ``image_hw`` is given)."""
    h, w = opts.get("image_hw") or rec.meta["query_hw"]
    qx, qy = opts.get("qx"), opts.get("qy")
    return (w / 2 if qx is None else qx), (h / 2 if qy is None else qy), (h, w)


def affinity_figure(rec, qx=None, qy=None, image_hw=None, **opts) -> go.Figure:
    """:func:`affinity_explorer` with the query given as options (``qx``, ``qy`` in pixels of an
    image ``image_hw``; default the centre of the image, or of the query grid)."""
    qx, qy, hw = _query(rec, {"qx": qx, "qy": qy, "image_hw": image_hw})
    return _call(affinity_explorer, rec, qx, qy, hw, **opts)


def displayed_values(rec, batch: int = 0, **query) -> np.ndarray:
    """The values the figure of ``rec`` colours, for shared scales: spatial and calibration
    maps (calibration: mean over channels), every group factor (the grid shows them and their
    mean), the channel-affinity matrix, and for an affinity the row of the query (``qx``,
    ``qy``, ``image_hw`` as for :func:`figure_for`; without them, every row). Arrays as is."""
    if not is_record(rec):
        return as_numpy(rec)
    spec = _kinds.of(rec)
    if spec.shows_tensor:
        return as_numpy(rec.tensor[batch])
    if spec.queried:
        if not any(query.get(k) is not None for k in _QUERY_OPTIONS):
            return as_numpy(rec.tensor[batch])
        qx, qy, (h, w) = _query(rec, query)
        return as_numpy(affinity_row(rec, qy / h, qx / w, query.get("head"))[0][batch])
    return display_values(rec, batch)


def figure_for(rec, **opts) -> go.Figure:
    """The figure for one record, drawn by its kind's builder (``attnviz.kinds``). Options a
    builder does not take are ignored when another kind's builder takes them (OptionError for
    a name no builder takes). Affinity: ``qx``, ``qy`` (image pixels) and ``image_hw``; default
    the centre of the image (of the query grid read as the image when ``image_hw`` is not
    given)."""
    spec = _kinds.of(rec)
    return _call(spec.figure_builder(), [rec] if spec.grouped else rec, **opts)


def figures_for(records, shared: bool = False, norm="minmax", **opts) -> dict[str, list]:
    """Figures for a list of records, grouped by kind: ``{kind: [figure, ...]}`` in forward order.
    All channel gates share one figure with a layer selector; all SK layers share one kernel
    figure. ``shared=True`` puts every map of a kind on one colour scale (``zmin``/``zmax`` over
    the values each figure shows; for affinities, the rows of the query ``qx``, ``qy``);
    otherwise each map gets its own range under ``norm``."""
    records = list(records)
    out: dict[str, list] = {}
    by_kind: dict[str, list] = {}
    for r in records:
        by_kind.setdefault(r.kind, []).append(r)
    batch = int(opts.get("batch", 0))
    for kind, recs in by_kind.items():
        spec = _kinds.get(kind)
        if spec.grouped:  # one figure for every layer of the kind
            out[kind] = [_call(spec.figure_builder(), recs, **opts)]
            continue
        kw = dict(opts, norm=norm)
        if shared:
            vals = [_shown(r, batch, opts) for r in recs]
            kw["zmin"], kw["zmax"] = shared_range(vals, norm)
        out[kind] = [figure_for(r, **kw) for r in recs]
    return out


def _shown(rec, batch, opts):
    """What ``figure_for(rec, **opts)`` colours (an affinity: the row of its query)."""
    if _kinds.of(rec).queried:
        qx, qy, hw = _query(rec, opts)
        return displayed_values(rec, batch, qx=qx, qy=qy, image_hw=hw)
    return displayed_values(rec, batch)


def shared_zrange(records, norm="minmax", batch: int = 0, **query) -> tuple[float, float]:
    """One (zmin, zmax) for several records or arrays (of one model or several, of one kind or
    several); pass it as ``zmin``/``zmax`` to the builders to compare values across maps and
    models. Ranges are taken over what each figure shows (:func:`displayed_values`); give the
    affinity query (``qx``, ``qy``, ``image_hw``) to range over its rows only."""
    return shared_range([displayed_values(r, batch, **query) for r in records], norm)


# the built-in kinds name their figure builders; they are these
_kinds.register_figures({f.__name__: f for f in (
    spatial_heatmap, channel_gate_bars, kernel_selection_bars, group_factor_grid, affinity_figure,
    channel_affinity_heatmap)})
