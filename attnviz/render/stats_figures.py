"""Plotly figures of the dataset-level statistics (:mod:`attnviz.scores.stats`), drawn as the
papers draw them: SENet's per-class mean gates per depth, SKNet's large-kernel weight against
object size, SGE's concentration on the object through depth."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _short(layer: str) -> str:
    return layer.split(".")[0] if layer.startswith("layer") else layer


def channel_gates_figure(result: dict) -> go.Figure | None:
    """One heatmap per channel-gate layer: classes x channels, the mean gate of each channel over
    each class's images; the title of each carries its class-specificity."""
    layers = result.get("channel") or {}
    if not layers:
        return None
    names = list(layers)
    fig = make_subplots(rows=len(names), cols=1, vertical_spacing=0.08, subplot_titles=[
        f"{layer}: class-specificity {e['specificity']:.3f} (chance {e['chance']:.3f})"
        for layer, e in layers.items()])
    for i, layer in enumerate(names, 1):
        m = np.asarray(layers[layer]["class_means"], float)
        fig.add_trace(go.Heatmap(z=m, y=result["classes"], colorscale="Viridis", zmin=0, zmax=1,
                                 showscale=i == 1, colorbar={"title": "mean gate"},
                                 hovertemplate="class %{y}<br>channel %{x}<br>gate %{z:.3f}"
                                               "<extra></extra>"), row=i, col=1)
        fig.update_xaxes(title_text="channel" if i == len(names) else None, row=i, col=1)
    fig.update_layout(title="Mean channel gate per class, by depth (SENet fig. 6)",
                      height=170 * len(names) + 80, margin={"l": 70, "r": 20, "t": 70, "b": 40})
    return fig


def kernel_scale_figure(result: dict) -> go.Figure | None:
    """Large-kernel weight against object size, one panel per SK layer, with the fitted line."""
    layers = result.get("kernel") or {}
    if not layers:
        return None
    names = list(layers)
    titles = []
    for layer in names:
        p = layers[layer]["per_10px"]
        titles.append(f"{_short(layer)}: slope {p['slope']:+.4f} / 10 px [{p['lo']:+.4f}, "
                      f"{p['hi']:+.4f}]" if p["slope"] is not None else layer)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=titles, horizontal_spacing=0.06)
    for i, layer in enumerate(names, 1):
        e = layers[layer]
        x = np.asarray(e["scale"], float)
        y = np.asarray(e["large_weight"], float)
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", marker={"size": 4, "opacity": 0.5},
                                 name=layer, showlegend=False), row=1, col=i)
        f = e["fit"]
        if f["slope"] is not None:
            xs = np.array([np.nanmin(x), np.nanmax(x)])
            fig.add_trace(go.Scatter(x=xs, y=f["intercept"] + f["slope"] * xs, mode="lines",
                                     line={"color": "#d62728"}, showlegend=False), row=1, col=i)
        fig.update_xaxes(title_text="object size (px)", row=1, col=i)
    fig.update_yaxes(title_text="weight on the larger kernel", row=1, col=1)
    fig.update_layout(title="SK kernel selection against object size (SKNet fig. 3)", height=360,
                      margin={"l": 60, "r": 20, "t": 80, "b": 50})
    return fig


def group_concentration_figure(result: dict) -> go.Figure | None:
    """Concentration of SGE group factors on the object (1 = no preference) against depth."""
    layers = result.get("group") or {}
    if not layers:
        return None
    names = list(layers)
    c = [layers[k]["concentration"] for k in names]
    mean = [v["mean"] for v in c]
    fig = go.Figure(go.Scatter(
        x=names, y=mean, mode="lines+markers",
        error_y={"type": "data", "symmetric": False,
                 "array": [v["hi"] - v["mean"] for v in c],
                 "arrayminus": [v["mean"] - v["lo"] for v in c]}, name="model"))
    fig.add_trace(go.Scatter(x=names, y=[1.0] * len(names), mode="lines", name="no preference",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(title="SGE group factors on the object, through depth (SGE fig. 4)",
                      xaxis_title="layer", yaxis_title="mass on object / object area",
                      height=360, margin={"l": 60, "r": 20, "t": 60, "b": 50})
    return fig


FIGURES = {"channel_gates": channel_gates_figure, "kernel_vs_scale": kernel_scale_figure,
           "group_concentration": group_concentration_figure}


def stats_figures(result: dict) -> dict[str, go.Figure]:
    """{name: figure} for the analyses ``result`` holds."""
    out = {}
    for name, fn in FIGURES.items():
        fig = fn(result)
        if fig is not None:
            out[name] = fig
    return out


def _outline(mask: np.ndarray, image_hw, grid_hw) -> tuple[list, list]:
    """The mask's outer contours in grid coordinates (cell centres at integers), None-separated."""
    import cv2
    h, w = image_hw
    gh, gw = grid_hw
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    xs, ys = [], []
    for c in contours:
        p = c[:, 0, :].astype(float)
        p = np.vstack([p, p[:1]])
        xs += list((p[:, 0] + 0.5) / w * gw - 0.5) + [None]
        ys += list((p[:, 1] + 0.5) / h * gh - 0.5) + [None]
    return xs, ys


def outline_regions(fig: go.Figure, regions: dict, image_hw, grid_hw) -> go.Figure:
    """Draw each region's outline on a figure whose axes are a ``grid_hw`` grid over an image of
    ``image_hw`` (e.g. :func:`attnviz.render.figures.affinity_explorer`'s key grid). regions:
    {name: (mask (H, W) bool, colour, dash)}; the affinity explorer on the relational task draws
    the partner solid green and the distractor dashed red."""
    for name, (mask, colour, dash) in regions.items():
        xs, ys = _outline(mask, image_hw, grid_hw)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="name",
                                 line={"color": colour, "width": 3, "dash": dash}))
    fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.12})
    return fig


LINK_REGIONS = {"partner": ("#22c55e", "solid"), "distractor": ("#ef4444", "dash"),
                "query's own region": ("#ffffff", "dot")}
