"""Plotly figures per attention kind, each drawing capture records (or plain arrays) with titles,
axis labels and hover values: spatial heatmaps, channel-gate bars, SK kernel selection, the SGE
group-factor grid, the affinity explorer (one query's row beside the key grid) and the channel
affinity matrix. :mod:`.figures` picks the builder of a record's kind (``attnviz.kinds``).
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import kinds as _kinds
from ..analysis.labels import record_labels
from .overlay import BLOCK_NAMES, DEFAULT_COLORMAP, caption
from .scale import as_numpy, display_values
from ..capture.maps import affinity_row
from .figure_style import (colorscale, finish, heatmap, image_axes, is_record, shrink,
                           value_range)


# -- spatial ----------------------------------------------------------------------------------
def spatial_heatmap(map2d, title: str | None = None, zmin=None, zmax=None, norm="minmax",
                    colormap: str = DEFAULT_COLORMAP, max_size: int = 128, batch: int = 0,
                    value_label: str | None = None, xlabel: str = "x (map cell)",
                    ylabel: str = "y (map cell)") -> go.Figure:
    """Heatmap of a spatial map, a group mean or a calibration mean (records are reduced with
    ``attnviz.maps.to_spatial``), y axis downwards like an image, hover "x, y, value".
    ``zmin``/``zmax`` fix the scale (shared normalisation); otherwise ``norm`` per map."""
    if is_record(map2d):
        rec = map2d
        title = title or caption(rec)
        value_label = value_label or _kinds.of(rec).value_label
        map2d = display_values(rec, batch)
    values = as_numpy(map2d)
    while values.ndim > 2 and values.shape[0] == 1:  # leading unit axes (a map 1 cell wide stays)
        values = values[0]
    if values.ndim != 2:
        raise ValueError(f"spatial_heatmap needs a 2-D map, got shape {values.shape}")
    value_label = value_label or "value"
    lo, hi = value_range(values, zmin, zmax, norm)
    h, w = values.shape
    hover = f"x %{{x}}<br>y %{{y}}<br>{value_label} %{{z:.4g}}"
    fig = go.Figure(heatmap(values, lo, hi, colormap, value_label, hover, max_size))
    image_axes(fig)
    return finish(fig, title or f"Spatial map ({h}x{w})", xlabel, ylabel)


# -- channel gates ----------------------------------------------------------------------------
def _gate_vectors(gates, batch):
    if is_record(gates):
        gates = [gates]
    if isinstance(gates, (list, tuple)) and gates and is_record(gates[0]):
        labels = record_labels(gates)  # each module's distinguishing path, any naming
        return [(f"{labels[r.tap]} ({BLOCK_NAMES.get(r.block, r.block)})",
                 as_numpy(r.tensor[batch]).ravel()) for r in gates]
    if isinstance(gates, dict):
        return [(str(k), as_numpy(v).ravel()) for k, v in gates.items()]
    return [("gate", as_numpy(gates).ravel())]


def channel_gate_bars(gates, title: str | None = None, batch: int = 0,
                      ylabel: str = "gate value (0 = closed, 1 = open)") -> go.Figure:
    """SE / CBAM channel gates as bars sorted from the most to the least open channel.

    ``gates``: a channel record, a list of them (one figure with a layer selector), a
    {name: vector} dict or a single vector. Hover: channel index and gate value."""
    layers = _gate_vectors(gates, batch)
    fig = go.Figure()
    titles = []
    for i, (name, v) in enumerate(layers):
        order = np.argsort(-v, kind="stable")
        fig.add_trace(go.Bar(
            x0=0, dx=1, y=v[order].astype(np.float32),
            customdata=order.astype(np.int16 if v.size < 2**15 else np.int32), name=name,
            visible=i == 0, marker=dict(color="#3b6fb6", line=dict(width=0)),
            hovertemplate="channel %{customdata}<br>gate %{y:.4f}<br>rank %{x}<extra></extra>"))
        titles.append(title or f"Channel gates · {name} · {v.size} channels, "
                               f"mean {v.mean():.3f}")
    if len(layers) > 1:
        buttons = [dict(label=name, method="update",
                        args=[{"visible": [j == i for j in range(len(layers))]},
                              {"title.text": titles[i]}])
                   for i, (name, _) in enumerate(layers)]
        fig.update_layout(updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.12,
                                            yanchor="bottom", showactive=True)])
    fig.update_layout(bargap=0.05, showlegend=False)
    lo = min(0.0, float(min(v.min() for _, v in layers if v.size)))
    fig.update_yaxes(range=[lo, max(1.0, float(max(v.max() for _, v in layers if v.size)))])
    return finish(fig, titles[0], "channels, sorted by gate value (rank)", ylabel)


# -- kernel selection -------------------------------------------------------------------------
_PALETTE = ["#3b6fb6", "#e0823d", "#4a9a5b", "#c4444a", "#8a6bb8", "#8c6d5c"]


def _rank_sample(v: np.ndarray, n: int) -> np.ndarray:
    """Indices of at most ``n`` entries of ``v`` at evenly spaced ranks (minimum and maximum
    included), so a box drawn from them keeps the distribution's shape."""
    if v.size <= n:
        return np.arange(v.size)
    order = np.argsort(v, kind="stable")
    return np.sort(order[np.linspace(0, v.size - 1, n).round().astype(int)])


def kernel_selection_bars(records, title: str = "SK kernel selection", batch: int = 0,
                          branch_names=None, max_points: int = 256) -> go.Figure:
    """SK kernel-selection weights (softmax over the M branches, per channel).

    Top: per layer, a stacked bar of each branch's share of the weight (mean over channels, so
    the shares of a layer sum to 1; hover adds the standard deviation over channels). Bottom: the
    per-channel spread as a box per layer with every channel's weight as a point (hover: channel
    index) -- of branch 0 when there are two branches (the other is 1 minus it), of every branch
    side by side otherwise. Layers with more than ``max_points`` channels show that many channels
    at evenly spaced ranks."""
    records = [records] if is_record(records) else list(records)
    if not records:
        raise ValueError("kernel_selection_bars needs at least one kernel record")
    weights = [as_numpy(r.tensor[batch]) for r in records]  # (M, C) each
    m = max(w.shape[0] for w in weights)
    names = list(branch_names or [f"branch {i}" for i in range(m)])
    names += [f"branch {i}" for i in range(len(names), m)]
    labels = record_labels(records)  # each module's distinguishing path, any naming
    layers = [labels[r.tap] for r in records]
    shown = [0] if m == 2 else list(range(m))
    sampled = any(w.shape[1] > max_points for w in weights)
    lower = (f"per-channel weight of {names[0]} (the other branch: 1 minus it)" if m == 2
             else "per-channel weight of each branch")
    if sampled:
        lower += f", {max_points} channels per layer at evenly spaced ranks"
    # two x axes with the same categories, not shared: shared axes would offset the bars by
    # the boxes' offset groups
    fig = make_subplots(rows=2, cols=1, row_heights=[0.6, 0.4], vertical_spacing=0.1,
                        subplot_titles=("share of each branch (mean over channels)", lower))
    for i in range(m):
        share = [float(w[i].mean()) if i < w.shape[0] else 0.0 for w in weights]
        spread = [float(w[i].std()) if i < w.shape[0] else 0.0 for w in weights]
        fig.add_trace(go.Bar(x=layers, y=np.float32(share), name=names[i],
                             customdata=np.float32(spread), legendgroup=names[i], width=0.6,
                             marker_color=_PALETTE[i % len(_PALETTE)],
                             hovertemplate=f"%{{x}}<br>{names[i]}: mean share %{{y:.3f}}"
                                           f" (sd over channels %{{customdata:.3f}})"
                                           "<extra></extra>"), row=1, col=1)
    for layer, w in zip(layers, weights):
        for i in shown:
            if i >= w.shape[0]:
                continue
            keep = _rank_sample(w[i], max_points)
            fig.add_trace(go.Box(
                x0=layer, y=w[i][keep].astype(np.float32), customdata=keep.astype(np.int32),
                name=names[i], legendgroup=names[i], offsetgroup=str(i), showlegend=False,
                boxpoints="all", jitter=0.4, pointpos=0,
                marker=dict(size=3, color=_PALETTE[i % len(_PALETTE)]),
                line=dict(color="#333333", width=1), fillcolor="rgba(0,0,0,0)",
                hovertemplate=f"{layer}<br>{names[i]}, channel %{{customdata}}"
                              "<br>weight %{y:.3f}<extra></extra>"), row=2, col=1)
    fig.update_layout(barmode="stack", boxmode="group",
                      legend=dict(orientation="h", y=-0.16, yanchor="top", x=0.5,
                                  xanchor="center", title=dict(text="branch ")))
    fig.update_yaxes(title_text="share of weight", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="weight" if m > 2 else f"{names[0]} weight", range=[0, 1],
                     row=2, col=1)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=layers)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(title_text="layer", row=2, col=1)
    finish(fig, title, height=560)
    fig.update_layout(margin=dict(b=100))
    return fig


# -- group factors ----------------------------------------------------------------------------
def _unit(a: float, b: float) -> list:
    """An axis domain [a, b] rounded into [0, 1]."""
    return [min(1.0, max(0.0, round(a, 6))), min(1.0, max(0.0, round(b, 6)))]


def group_factor_grid(rec, max_groups: int = 16, cols: int | None = None, with_mean: bool = True,
                      zmin=None, zmax=None, norm="minmax", colormap: str = DEFAULT_COLORMAP,
                      batch: int = 0, max_size: int = 48, title: str | None = None) -> go.Figure:
    """SGE group factors as a grid of small heatmaps with one shared colour scale; the first panel
    is their mean. With more than ``max_groups`` groups, evenly spaced groups are shown.
    ``cols``: panels per row (default: a near-square grid of at most 6 columns)."""
    t = as_numpy(rec.tensor[batch]) if is_record(rec) else as_numpy(rec)
    if t.ndim != 3:
        raise ValueError(f"group factors must be (G, H, W), got {t.shape}")
    g = t.shape[0]
    idx = np.unique(np.linspace(0, g - 1, min(g, max_groups)).round().astype(int))
    panels = ([(f"mean of {g} groups", t.mean(0))] if with_mean else [])
    panels += [(f"group {i}", t[i]) for i in idx]
    lo, hi = value_range(np.stack([p for _, p in panels]), zmin, zmax, norm)
    cols = min(cols or min(6, math.ceil(math.sqrt(len(panels)))), len(panels))
    rows = math.ceil(len(panels) / cols)
    # The grid's layout is written in one piece (axis domains, titles as annotations) rather than
    # with make_subplots and per-panel update calls, which cost ~100x more for the same figure.
    hs, vs = 0.03, min(0.08, 0.5 / rows)
    cw, rh = (1 - hs * (cols - 1)) / cols, (1 - vs * (rows - 1)) / rows
    layout, notes, traces = {}, [], []
    for k, (name, p) in enumerate(panels):
        r, c = k // cols, k % cols
        sx = "" if k == 0 else str(k + 1)
        x0, y1 = c * (cw + hs), 1 - r * (rh + vs)
        bottom = k + cols >= len(panels)  # no panel below this one
        z, xs, ys = shrink(p, max_size)
        # the shared coloraxis carries the scale: no colorscale or colorbar per panel
        traces.append(dict(type="heatmap", z=z.astype(np.float32), x=xs, y=ys,
                           coloraxis="coloraxis", xaxis=f"x{sx}", yaxis=f"y{sx}",
                           hovertemplate=f"{name}<br>x %{{x}}, y %{{y}}<br>factor %{{z:.4g}}"
                                         "<extra></extra>"))
        layout[f"xaxis{sx}"] = dict(domain=_unit(x0, x0 + cw), anchor=f"y{sx}",
                                    constrain="domain",
                                    showticklabels=False,
                                    title=dict(text="x (cell)" if bottom else None))
        layout[f"yaxis{sx}"] = dict(domain=_unit(y1 - rh, y1), anchor=f"x{sx}",
                                    autorange="reversed",
                                    scaleanchor=f"x{sx}", constrain="domain",
                                    showticklabels=False,
                                    title=dict(text="y (cell)" if c == 0 else None))
        notes.append(dict(text=name, x=x0 + cw / 2, y=y1, xref="paper", yref="paper",
                          xanchor="center", yanchor="bottom", showarrow=False,
                          font=dict(size=14)))
    # built from plain dicts of known-good properties: plotly's per-property validation would
    # be most of the cost
    fig = go.Figure(data=traces, layout=dict(
        layout, annotations=notes,
        coloraxis=dict(colorscale=colorscale(colormap), cmin=lo, cmax=hi,
                       colorbar=dict(title=dict(text="group factor"), thickness=12))),
        _validate=False)
    h, w = t.shape[1:]
    title = title or (f"{caption(rec)} · {len(idx)} of {g} groups" if is_record(rec)
                      else f"Group factors ({g} groups, {h}x{w})")
    return finish(fig, title, height=150 * rows + 110)


# -- affinity ---------------------------------------------------------------------------------
def affinity_explorer(rec, qx: float, qy: float, image_hw, batch: int = 0, zmin=None, zmax=None,
                      norm="minmax", colormap: str = DEFAULT_COLORMAP, max_size: int = 128,
                      title: str | None = None, head: int | None = None) -> go.Figure:
    """The affinity row of the query at image pixel (qx, qy) over the key grid, with the query's
    position marked. ``image_hw`` = (H, W) of the image the pixel refers to; multi-head maps:
    one ``head`` or (None) the mean over heads."""
    h, w = image_hw
    row, q = affinity_row(rec, qy / h, qx / w, head)
    values = as_numpy(row[batch])
    kh, kw = values.shape
    qh, qw = rec.meta["query_hw"]
    lo, hi = value_range(values, zmin, zmax, norm)
    hover = "key x %{x}<br>key y %{y}<br>attention %{z:.4g}"
    fig = go.Figure(heatmap(values, lo, hi, colormap, "attention weight", hover, max_size))
    fig.add_trace(go.Scatter(
        x=[qx / w * kw - 0.5], y=[qy / h * kh - 0.5], mode="markers", name="query",
        marker=dict(symbol="x-thin", size=16, color="white", line=dict(width=3, color="white")),
        hovertemplate=f"query at image pixel ({qx:.0f}, {qy:.0f})<br>query cell "
                      f"({q % qw}, {q // qw}) of {qw}x{qh}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[qx / w * kw - 0.5], y=[qy / h * kh - 0.5], mode="markers", hoverinfo="skip",
        marker=dict(symbol="circle-open", size=20, color="black", line=dict(width=2)),
        showlegend=False))
    image_axes(fig)
    fig.update_layout(showlegend=False)
    # the query's cell is on the query grid, the axes on the key grid (smaller when the keys
    # are pooled): say which grid each number is on
    heads = _kinds.of(rec).heads(rec.meta, rec.tensor)
    which = "" if heads == 1 else (f", head {head} of {heads}" if head is not None
                                    else f", mean of {heads} heads")
    title = title or (f"{caption(rec)} · attention from query ({qx:.0f}, {qy:.0f}) px, query "
                      f"cell ({q % qw}, {q // qw}) of {qw}x{qh}; keys on {kw}x{kh}{which}")
    return finish(fig, title, f"key x (cell of {kw})", f"key y (cell of {kh})")


def channel_order(m: np.ndarray, order: str | None = "pca", iters: int = 30) -> np.ndarray:
    """A cheap ordering of channels that puts channels with similar affinity rows together.

    "pca": by the rows' leading principal component (power iteration, O(iters * C^2));
    "argmax": by each row's most attended channel, then its strength; None: as is."""
    c = m.shape[0]
    if order in (None, "none"):
        return np.arange(c)
    if order == "argmax":
        return np.lexsort((-m.max(1), m.argmax(1)))
    if order != "pca":
        raise ValueError(f"order must be 'pca', 'argmax' or None, not {order!r}")
    x = (m - m.mean(0, keepdims=True)).astype(np.float64)
    v = x.std(0) + 1e-3 * np.linspace(1, 2, c)
    for _ in range(iters):
        v = x.T @ (x @ v)
        n = np.linalg.norm(v)
        if n < 1e-20:
            return np.arange(c)
        v /= n
    return np.argsort(x @ v, kind="stable")


def _block_mean(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Average a CxC matrix over n x n near-equal blocks; returns (matrix, block starts)."""
    starts = np.array([s[0] for s in np.array_split(np.arange(a.shape[0]), n)])
    counts = np.diff(np.append(starts, a.shape[0]))
    a = np.add.reduceat(a, starts, axis=0) / counts[:, None]
    a = np.add.reduceat(a, starts, axis=1) / counts[None, :]
    return a, starts


def channel_affinity_heatmap(rec, max_size: int = 128, order: str | None = "pca", batch: int = 0,
                             zmin=None, zmax=None, norm="minmax",
                             colormap: str = DEFAULT_COLORMAP, title: str | None = None
                             ) -> go.Figure:
    """DANet channel affinity (C x C, row = query channel, softmax over key channels), channels
    reordered (see :func:`channel_order`) and block-averaged to at most ``max_size`` when large."""
    m = as_numpy(rec.tensor[batch]) if is_record(rec) else as_numpy(rec)
    c = m.shape[0]
    perm = channel_order(m, order)
    m = m[perm][:, perm]
    if c > max_size:
        m, starts = _block_mean(m, max_size)
        ends = np.append(starts[1:], c) - 1
        labels = [f"ranks {s}-{e}" for s, e in zip(starts, ends)]
        note = f", {c}->{len(starts)} block means"
        hover = ("query channels at %{y}<br>key channels at %{x}<br>mean affinity %{z:.4g}"
                 "<extra>block of the ordering</extra>")
    else:
        labels = [f"ch {i}" for i in perm]
        note = ""
        hover = "query %{y}<br>key %{x}<br>affinity %{z:.4g}<extra></extra>"
    lo, hi = value_range(m, zmin, zmax, norm)
    fig = go.Figure(go.Heatmap(
        z=m.astype(np.float32), x=labels, y=labels, zmin=lo, zmax=hi,
        colorscale=colorscale(colormap),
        colorbar=dict(title=dict(text="affinity"), thickness=12), hovertemplate=hover))
    show = len(labels) <= 32
    fig.update_xaxes(showticklabels=show, type="category")
    fig.update_yaxes(showticklabels=show, type="category")
    image_axes(fig)
    how = {"pca": "ordered by leading principal component", "argmax": "ordered by row argmax"}
    head = caption(rec) if is_record(rec) else f"Channel affinity ({c}x{c})"
    title = title or f"{head} · {how.get(order, 'original order')}{note}"
    tag = " (reordered)" if order not in (None, "none") else ""
    return finish(fig, title, "key channel" + tag, "query channel" + tag)
