"""Generic Plotly charts: horizontal bars, largest on top (:func:`bars_figure`, e.g. the change
when each module is neutralised) and lines (:func:`line_figure`, e.g. deletion / insertion
curves), in the look of :mod:`.figure_style`.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .scale import as_numpy
from .figure_style import finish

def bars_figure(names, values, title: str, xlabel: str, ylabel: str = "", sort: bool = True,
                errors=None) -> go.Figure:
    """Horizontal bars, largest value on top (e.g. the probability change when each module is
    neutralised). Positive bars red, negative blue; optional ``errors`` as error bars."""
    names = [str(n) for n in names]
    values = as_numpy(values).ravel()
    errs = None if errors is None else as_numpy(errors).ravel()
    order = np.argsort(values, kind="stable") if sort else np.arange(len(values))[::-1]
    colours = ["#c4444a" if values[i] >= 0 else "#3b6fb6" for i in order]
    fig = go.Figure(go.Bar(
        x=values[order], y=[names[i] for i in order], orientation="h", marker_color=colours,
        error_x=None if errs is None else dict(type="data", array=errs[order]),
        hovertemplate="%{y}<br>%{x:.4g}<extra></extra>"))
    finish(fig, title, xlabel, ylabel, height=max(240, 26 * len(names) + 120))
    longest = max((len(n) for n in names), default=0)
    fig.update_layout(showlegend=False, margin=dict(l=min(360, 7 * longest + 30)))
    return fig


def line_figure(curves: dict, title: str, xlabel: str, ylabel: str) -> go.Figure:
    """Lines from {name: y} or {name: (x, y)} (e.g. deletion / insertion curves; put the AUC in
    the name)."""
    fig = go.Figure()
    for name, c in curves.items():
        if isinstance(c, (tuple, list)) and len(c) == 2:
            x, y = as_numpy(c[0]).ravel(), as_numpy(c[1]).ravel()
        else:
            y = as_numpy(c).ravel()
            x = np.linspace(0, 1, y.size, dtype=np.float32)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=str(name),
                                 hovertemplate=f"{name}<br>%{{x:.3g}}: %{{y:.4g}}<extra></extra>"))
    return finish(fig, title, xlabel, ylabel)
