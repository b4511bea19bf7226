"""Static PNG pictures of the Plotly figures in :mod:`.figures`, drawn with matplotlib.

Plotly's own image export needs kaleido; this redraws the traces our builders use (Heatmap, Bar,
Box, Scatter; subplots by axis domains; shared colour axes; stacked bars; reversed image axes)
so a README, a report or the CLI can carry pictures. Interactive parts (hover, dropdowns) are
dropped; of traces toggled by a dropdown, the visible ones are drawn.

    png = figure_png(fig)            # bytes
    figure_png(fig, "kernel.png")    # and write it
"""
from __future__ import annotations

import io
import re

import numpy as np

_RGB = re.compile(r"rgba?\(([^)]*)\)")


def _text(s) -> str:
    if not s:
        return ""
    s = re.sub(r"<br\s*/?>", "\n", str(s))
    return re.sub(r"<[^>]+>", "", s)


def _colour(c, default="#3b6fb6"):
    if c is None:
        return default
    if isinstance(c, str):
        m = _RGB.match(c.strip())
        if m:
            parts = [float(p) for p in m.group(1).split(",")]
            rgb = [p / 255 for p in parts[:3]]
            return tuple(rgb + ([parts[3]] if len(parts) > 3 else []))
        return c
    return default


def _cmap(colorscale):
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap
    if isinstance(colorscale, str):
        return colormaps.get(colorscale.lower(), colormaps["viridis"])
    if not colorscale:
        return colormaps["viridis"]
    stops = [(float(p), _colour(c)[:3] if isinstance(_colour(c), tuple) else _colour(c))
             for p, c in colorscale]
    return LinearSegmentedColormap.from_list("plotly", stops)


def _axis_key(ref: str, letter: str) -> str:
    """'x2' -> 'xaxis2', 'x' or None -> 'xaxis'."""
    suffix = (ref or letter)[1:]
    return f"{letter}axis{suffix}"


def _visible(t) -> bool:
    return t.visible in (None, True)


def figure_png(fig, path=None, width: int | None = None, height: int | None = None,
               dpi: int = 100) -> bytes:
    """Draw a Plotly figure with matplotlib; returns PNG bytes (and writes ``path`` if given)."""
    from matplotlib.figure import Figure

    lay = fig.layout
    w = width or lay.width or 820
    h = height or lay.height or 460
    has_scale = any(t.type == "heatmap" and _visible(t) for t in fig.data)
    mg = lay.margin
    ml, mr = (mg.l or 60) + 10, (mg.r or 20) + (90 if has_scale else 10)
    mt, mb = max(mg.t or 60, 60), (mg.b or 50) + 20
    pl, pb = ml / w, mb / h
    pw, ph = 1 - (ml + mr) / w, 1 - (mt + mb) / h
    out = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    axes = {}

    def get_ax(xref, yref):
        key = (_axis_key(xref, "x"), _axis_key(yref, "y"))
        if key not in axes:
            xd = lay[key[0]].domain or (0, 1)
            yd = lay[key[1]].domain or (0, 1)
            axes[key] = out.add_axes([pl + xd[0] * pw, pb + yd[0] * ph,
                                      (xd[1] - xd[0]) * pw, (yd[1] - yd[0]) * ph])
        return axes[key]

    cats: dict = {}  # axis key -> {category: position}

    def positions(axkey, values):
        vals = list(values)
        if vals and isinstance(vals[0], str):
            table = cats.setdefault(axkey, {})
            for v in vals:
                table.setdefault(v, len(table))
            return np.array([table[v] for v in vals], float)
        return np.asarray(vals, float)

    stack: dict = {}
    box_slots: dict = {}  # axes -> offset groups of grouped boxes
    scales: dict = {}  # colour scale -> [image, axes using it, title]
    legend_axes = None
    for t in fig.data:
        if not _visible(t):
            continue
        ax = get_ax(t.xaxis, t.yaxis)
        xk, yk = _axis_key(t.xaxis, "x"), _axis_key(t.yaxis, "y")
        if t.type == "heatmap":
            z = np.asarray(t.z, float)
            ca = lay[t.coloraxis] if t.coloraxis else None
            cs = ca.colorscale if ca else t.colorscale
            vmin = ca.cmin if ca else t.zmin
            vmax = ca.cmax if ca else t.zmax
            x = positions(xk, t.x if t.x is not None else range(z.shape[1]))
            y = positions(yk, t.y if t.y is not None else range(z.shape[0]))
            dx = (x[-1] - x[0]) / max(len(x) - 1, 1) if len(x) > 1 else 1
            dy = (y[-1] - y[0]) / max(len(y) - 1, 1) if len(y) > 1 else 1
            rev = lay[yk].autorange == "reversed"
            top, bottom = y[0] - dy / 2, y[-1] + dy / 2
            if not rev:
                top, bottom = bottom, top
            im = ax.imshow(z if rev else z[::-1], cmap=_cmap(cs), vmin=vmin, vmax=vmax,
                           extent=(x[0] - dx / 2, x[-1] + dx / 2, bottom, top),
                           interpolation="nearest",
                           aspect="equal" if lay[yk].scaleanchor else "auto")
            scale_key = t.coloraxis or id(t)
            entry = scales.setdefault(scale_key, [im, [], ca.colorbar.title.text if ca
                                                  else t.colorbar.title.text])
            entry[1].append(ax)
        elif t.type == "bar":
            horiz = t.orientation == "h"
            val = np.asarray(t.x if horiz else t.y, float)
            where = t.y if horiz else t.x
            if where is None:  # x0 + dx * i (y0, dy when horizontal)
                start, step = (t.y0, t.dy) if horiz else (t.x0, t.dx)
                where = float(start or 0) + float(1 if step is None else step) * np.arange(val.size)
            cat = positions(yk if horiz else xk, where)
            colour = t.marker.color
            colour = ([_colour(c) for c in colour] if isinstance(colour, (list, tuple))
                      else _colour(colour))
            base = stack.setdefault((xk, yk), np.zeros(0))
            if lay.barmode == "stack":
                if base.size < int(cat.max()) + 1:
                    base = np.pad(base, (0, int(cat.max()) + 1 - base.size))
                bottom = base[cat.astype(int)]
                stack[(xk, yk)] = base
                base[cat.astype(int)] += val
            else:
                bottom = 0
            err = t.error_x if horiz else t.error_y
            err = None if err is None or err.array is None else np.asarray(err.array, float)
            width = 0.8 if len(cat) < 200 else 1.0
            if horiz:
                ax.barh(cat, val, left=bottom, color=colour, height=width, xerr=err,
                        label=_text(t.name))
            else:
                ax.bar(cat, val, bottom=bottom, color=colour, width=width, yerr=err,
                       label=_text(t.name), linewidth=0)
            if t.name and t.showlegend is not False and lay.barmode == "stack":
                legend_axes = ax
        elif t.type == "box":
            y = np.asarray(t.y, float)
            where = t.x if t.x is not None else [t.x0 if t.x0 is not None else t.name] * y.size
            x = positions(xk, where)
            slots = box_slots.setdefault((xk, yk), sorted(
                {str(b.offsetgroup) for b in fig.data if b.type == "box" and _visible(b)
                 and _axis_key(b.xaxis, "x") == xk} if lay.boxmode == "group" else {"None"}))
            n = len(slots)
            shift = (slots.index(str(t.offsetgroup)) - (n - 1) / 2) * 0.8 / n if n > 1 else 0.0
            groups = sorted(set(x.tolist()))
            data = [y[x == g] for g in groups]
            ax.boxplot(data, positions=[g + shift for g in groups], widths=0.5 / n,
                       showfliers=t.boxpoints != "all", medianprops=dict(color="#c4444a"),
                       manage_ticks=False)
            if t.boxpoints == "all":
                rng = np.random.default_rng(0)
                ax.scatter(x + shift + rng.uniform(-0.2, 0.2, x.size) / n, y, s=4, alpha=0.5,
                           color=_colour(t.marker.color))
        elif t.type == "scatter":
            x = positions(xk, t.x)
            y = positions(yk, t.y)
            mode = t.mode or "lines"
            if "lines" in mode:
                ax.plot(x, y, label=_text(t.name), color=_colour(t.line.color, None))
                if t.name and t.showlegend is not False:
                    legend_axes = ax
            if "markers" in mode:
                sym = str(t.marker.symbol or "circle")
                size = float(t.marker.size or 6) ** 2
                if sym.startswith("x"):
                    ax.scatter(x, y, s=size, marker="x", color="black", linewidths=4)
                    ax.scatter(x, y, s=size, marker="x", color=_colour(t.marker.color),
                               linewidths=1.5)
                elif sym.endswith("open"):
                    ax.scatter(x, y, s=size, facecolors="none",
                               edgecolors=_colour(t.marker.color), linewidths=1.5)
                else:
                    ax.scatter(x, y, s=size / 2, color=_colour(t.marker.color))

    for (xk, yk), ax in axes.items():
        xa, ya = lay[xk], lay[yk]
        for a, setter, key, which in ((xa, ax.set_xlabel, xk, "x"), (ya, ax.set_ylabel, yk, "y")):
            setter(_text(a.title.text), fontsize=9)
            table = cats.get(key)
            ticks = ax.set_xticks if which == "x" else ax.set_yticks
            labels = ax.set_xticklabels if which == "x" else ax.set_yticklabels
            if a.showticklabels is False or (table and len(table) > 40):
                ticks([])
            elif table:
                ticks(list(table.values()))
                tilt = which == "x" and len(table) > 4
                labels(list(table), fontsize=7, rotation=30 if tilt else 0,
                       **({"ha": "right" if tilt else "center"} if which == "x" else {}))
        if xa.range is not None:
            ax.set_xlim(*xa.range)
        if ya.range is not None:
            ax.set_ylim(*ya.range)
        if ya.autorange == "reversed" and not ax.yaxis_inverted():
            ax.invert_yaxis()
        ax.tick_params(labelsize=7)
    for im, used, title in scales.values():  # one bar beside the axes that use it
        for ax in used:
            ax.apply_aspect()
        boxes = [ax.get_position() for ax in used]
        x1 = max(b.x1 for b in boxes)
        y0, y1 = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
        cax = out.add_axes([min(x1 + 0.02, pl + pw + 0.015), y0, 0.015, y1 - y0])
        cb = out.colorbar(im, cax=cax)
        cb.set_label(_text(title), fontsize=8)
        cb.ax.tick_params(labelsize=7)
    if legend_axes is not None:
        if lay.legend.y is not None and lay.legend.y < 0:  # a legend under the plot
            handles, labels = legend_axes.get_legend_handles_labels()
            out.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01),
                       ncol=min(len(labels), 6), fontsize=8, frameon=False)
        else:
            legend_axes.legend(fontsize=7, loc="best", framealpha=0.8)
    for an in lay.annotations or ():
        if an.xref == "paper" and an.yref == "paper":
            out.text(pl + an.x * pw, pb + an.y * ph + 0.005, _text(an.text), ha="center",
                     va="bottom", fontsize=8)
    # the title, line by line; a line styled with a colour (e.g. a red warning) keeps it
    title_lines = re.split(r"<br\s*/?>", str(lay.title.text or ""))
    for i, line in enumerate(title_lines):
        colour = re.search(r"color:\s*([#\w]+)", line)
        out.text(0.01, 1 - (8 + 15 * i) / h, _text(line), ha="left", va="top", fontsize=10,
                 color=colour.group(1) if colour else "black", wrap=len(title_lines) == 1)
    buf = io.BytesIO()
    out.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data
