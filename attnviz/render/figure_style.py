"""What every Plotly figure of attnviz shares: the size check (:func:`figure_kb`, under
:data:`MAX_FIGURE_KB`), colour scales sampled from the overlays' OpenCV colormaps
(:func:`colorscale`), titles and margins (:func:`finish`), big maps block-averaged for the browser
(:func:`shrink`), value ranges (:func:`value_range`), heatmap traces (:func:`heatmap`) and image
axes (:func:`image_axes`). Used by :mod:`.kind_figures` and :mod:`.charts`.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import plotly.graph_objects as go

from .overlay import DEFAULT_COLORMAP, colorize
from .scale import as_numpy, resolve_range, widen

MAX_FIGURE_KB = 1024
MARGIN = dict(l=60, r=20, t=60, b=50)


def figure_kb(fig: go.Figure) -> float:
    """Size of the figure's JSON in KiB (what the browser receives)."""
    return len(fig.to_json().encode()) / 1024


@lru_cache(maxsize=32)
def colorscale(name: str = DEFAULT_COLORMAP, stops: int = 17) -> tuple:
    """A Plotly colour scale sampled from the OpenCV colormap ``name``."""
    rgb = colorize(np.linspace(0, 1, stops)[None], name)[0]
    return tuple((round(i / (stops - 1), 4), f"rgb({r},{g},{b})")
                 for i, (r, g, b) in enumerate(rgb.tolist()))


def is_record(obj) -> bool:
    return hasattr(obj, "kind") and hasattr(obj, "tensor")


def finish(fig, title, xlabel=None, ylabel=None, height=None):
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), margin=MARGIN,
                      template="plotly_white", height=height)
    if xlabel is not None:
        fig.layout.xaxis.title.text = xlabel
    if ylabel is not None:
        fig.layout.yaxis.title.text = ylabel
    return fig


def shrink(a: np.ndarray, max_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-average a 2-D map so neither side exceeds ``max_size``. Returns (map, x, y) where
    x and y are the cell-centre coordinates in the original map's cells."""
    a = as_numpy(a)
    h, w = a.shape
    s = max(h, w)
    if s > max_size:
        nh, nw = max(1, round(h * max_size / s)), max(1, round(w * max_size / s))
        a = cv2.resize(a, (nw, nh), interpolation=cv2.INTER_AREA)
        x = np.round((np.arange(nw) + 0.5) * w / nw - 0.5, 2)
        y = np.round((np.arange(nh) + 0.5) * h / nh - 0.5, 2)
        return a, x, y
    return a, np.arange(w), np.arange(h)


def value_range(values, zmin, zmax, norm):
    """(zmin, zmax): given ones win, the rest from ``norm``; a constant map gets a small range
    around its value (shown in the scale's middle colour)."""
    lo, hi = resolve_range(values, norm or "minmax")
    lo = lo if zmin is None else float(zmin)
    hi = hi if zmax is None else float(zmax)
    return widen(lo, hi)


def heatmap(values, zmin, zmax, colormap, value_label, hover, max_size, **kw):
    z, x, y = shrink(values, max_size)
    return go.Heatmap(z=z.astype(np.float32), x=x, y=y, zmin=zmin, zmax=zmax,
                      colorscale=colorscale(colormap),
                      colorbar=dict(title=dict(text=value_label, side="right"), thickness=12),
                      hovertemplate=hover + "<extra></extra>", **kw)


def image_axes(fig, row=None, col=None):
    """Image orientation: y grows downwards, square cells."""
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", row=row, col=col)
    fig.update_xaxes(constrain="domain", row=row, col=col)
