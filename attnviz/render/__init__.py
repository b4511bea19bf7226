"""Renderings of capture records and attributions, independent of any UI toolkit.

* :mod:`.overlay`: OpenCV colormap overlays at the image's resolution, colour bars with their
  scale, query markers, ``fit`` for display and ``to_png_bytes``.
* :mod:`.figures`: the Plotly figure of any record, dispatched on its kind, each under 1 MB of
  JSON, and shared colour scales; the builders live in :mod:`.kind_figures` (heatmaps, gate bars,
  kernel selection, group grid, affinity explorer, channel affinity), :mod:`.charts` (bar / line
  charts) and :mod:`.figure_style` (what every figure shares).
* :mod:`.scale`: value ranges per map or shared across maps and models.
* :mod:`.static`: PNG pictures of Plotly figures with matplotlib (no kaleido needed).
"""
from .figures import (affinity_explorer, bars_figure, channel_affinity_heatmap, channel_gate_bars,
                      channel_order, colorscale, figure_for, figure_kb, figures_for,
                      group_factor_grid, kernel_selection_bars, line_figure, shared_zrange,
                      spatial_heatmap)
from .overlay import (COLORMAPS, DEFAULT_COLORMAP, affinity_overlay, caption, colorbar, colorize,
                      draw_marker, fit, overlay, overlay_record, save_png, to_png_bytes,
                      with_colorbar)
from .scale import Normaliser, display_values, normalise, resolve_range, shared_range, widen
from .static import figure_png

__all__ = [
    "COLORMAPS", "DEFAULT_COLORMAP", "Normaliser", "affinity_explorer", "affinity_overlay",
    "bars_figure", "caption", "channel_affinity_heatmap", "channel_gate_bars", "channel_order",
    "colorbar", "colorize", "colorscale", "display_values", "draw_marker", "figure_for",
    "figure_kb", "figure_png", "figures_for", "fit", "group_factor_grid", "kernel_selection_bars",
    "line_figure", "normalise", "overlay", "overlay_record", "resolve_range", "save_png",
    "shared_range", "shared_zrange", "spatial_heatmap", "to_png_bytes", "widen",
    "with_colorbar",
]
