"""Rendering helpers shared by the tabs: captions, which map is the headline, overlays at display
size with their colour range, attribution maps on the model-input grid, scores.

Display geometry: every analysis uses the "resize" preprocessing, so a map on the model-input grid
covers the whole image and is drawn straight over the display image (the image fit to 512 px);
no full-resolution map is ever built for drawing.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import kinds as K
from ..analysis.headline import concentration, grid_map, headline_record  # noqa: F401
from ..attribution.explain import FAST, METHODS, canonical_method
from ..capture.maps import has_spatial
from ..render.overlay import (affinity_overlay, colorbar,
                              fit, overlay)
from ..render.scale import shared_range
from ..render.captions import (METHOD_NAMES, attribution_grid, attribution_norm,  # noqa: F401
                               map_caption, method_name, module_label)

DISPLAY_SIDE = 512

# methods of one forward (and backward) pass (explain.FAST) share the analysis request; the
# others run in the "attribution" queue
FAST_METHODS = FAST
METHOD_CHOICES = [(METHOD_NAMES[m] + ("" if m in FAST_METHODS else " (slow)"), m)
                  for m in METHODS]
FAST_METHOD_CHOICES = [(METHOD_NAMES[m], m) for m in FAST_METHODS]



def kind_tabs() -> list[tuple[str, str, tuple]]:
    """The kind tabs from the kind specs: (key, title, kinds shown there), in registry order."""
    tabs: dict[str, list] = {}
    for spec in K.all_kinds():
        tabs.setdefault(spec.tab_key, []).append(spec.name)
    return [(key, K.get(key).title if key in K.KINDS else key, tuple(names))
            for key, names in tabs.items()]


SCALES = ("per map", "shared")


def check_method(method) -> str:
    """A canonical attribution method name, or an ExplainError listing the choices."""
    from ..attribution.explain import ExplainError
    from .limits import echo
    if method is None or (isinstance(method, str) and not method.strip()):
        return "gradcam"
    if not isinstance(method, str):
        raise ExplainError(f"the attribution method must be a name, one of "
                           f"{', '.join(METHODS)}; not {echo(method)} "
                           f"({type(method).__name__})")
    m = method.strip().lower().replace(" ", "_").replace("-", "_")
    for key, name in METHOD_NAMES.items():  # accept the display names too
        if m == name.lower().replace(" ", "_").replace("-", "_"):
            m = key
    m = canonical_method(m)
    if m not in METHODS:
        raise ExplainError(f"unknown attribution method {echo(method)}; choose from "
                           f"{', '.join(METHODS)}")
    return m


# ------------------------------------------------------------------------------ records
def block_name(rec) -> str:
    return K.label(rec)


def kind_record(records, kind: str):
    """The deepest record of ``kind`` ("strongest": :func:`headline_record`), or None."""
    if kind in (None, "", "strongest"):
        return headline_record(records)
    recs = [r for r in records if r.kind == K.get(kind).name and has_spatial(r)]
    return recs[-1] if recs else None


def queried_records(records) -> list:
    """The records with one row per query (position affinities), in forward order."""
    return [r for r in records if K.of(r).queried]


MEAN_HEADS, ROLLOUT = "mean over heads", "rollout across layers"


def head_choices(records) -> list[str]:
    """The Affinity tab's head selector: the mean over heads, attention rollout when two or
    more layers chain, and each head of the model's multi-head maps."""
    from ..capture.maps import rollout_chain
    n = max((K.of(r).heads(r.meta, r.tensor) for r in queried_records(records)), default=1)
    out = [MEAN_HEADS]
    if len(rollout_chain(records)) >= 2:
        out.append(ROLLOUT)
    return out + ([f"head {i}" for i in range(n)] if n > 1 else [])


def head_of(choice, rec=None):
    """A head selector's choice as ``head=`` for a record: an index (None beyond the record's
    heads), or None for the mean (and for rollout, drawn apart)."""
    if not isinstance(choice, str) or not choice.startswith("head "):
        return None
    try:
        i = int(choice.split()[1])
    except (IndexError, ValueError):
        return None
    if rec is not None and not 0 <= i < K.of(rec).heads(rec.meta, rec.tensor):
        return None
    return i


def rollout_record(records):
    """Attention rollout across the chained layers as an affinity-like record (drawn like one),
    or None when fewer than two layers chain."""
    from ..capture.recorder import AttentionMap
    from ..capture.maps import rollout, rollout_chain
    chain = rollout_chain(records)
    if len(chain) < 2:
        return None
    roll, grid = rollout(chain)
    return AttentionMap(layer=f"rollout of {len(chain)} layers", tap="rollout", block="rollout",
                        kind="affinity", tensor=roll,
                        meta={"query_hw": grid, "key_hw": grid, "layers": len(chain)})


def map_figure(rec, records, shared: bool, query, image_hw, max_size: int = 64, head=None):
    """The Plotly figure of one record for a kind tab: on a scale shared with the other records
    of its kind when ``shared`` (over what each figure shows); queried kinds (affinities) show
    the row of ``query`` = (x, y) in pixels of an image ``image_hw`` (multi-head maps: one
    ``head`` or the mean over heads)."""
    from ..render import figures as F
    spec = K.of(rec)
    kw = {"max_size": max_size}
    if shared and spec.spatial and not spec.queried:
        same = [r for r in records if r.kind == rec.kind]
        kw["zmin"], kw["zmax"] = shared_range([F.displayed_values(r) for r in same])
    if spec.queried:
        kw.update(qx=query[0], qy=query[1], image_hw=tuple(image_hw))
        if head is not None and spec.axis("head") is not None:
            kw["head"] = head
    fig = F.figure_for(rec, **kw)
    tall = spec.shows_tensor and spec.spatial  # a grid of panels (group factors): its own height
    fig.update_layout(height=None if tall else 380, margin=dict(l=50, r=10, t=50, b=40))
    return fig


# ------------------------------------------------------------------------------ drawing
def display_image(image: np.ndarray) -> np.ndarray:
    return fit(image, DISPLAY_SIDE)


def fmt_value(v: float, ref: float = 1.0) -> str:
    """3 significant digits; values negligible next to ``ref`` (e.g. 1e-28 beside 0.9) as 0."""
    return "0" if abs(v) < 1e-6 * max(abs(ref), 1e-30) or v == 0 else f"{v:.3g}"


def fmt_range(lo: float, hi: float) -> str:
    ref = max(abs(lo), abs(hi))
    return f"{fmt_value(lo, ref)}–{fmt_value(hi, ref)}"


def range_text(m, rng, shared: bool) -> str:
    """A map's range for its caption: its own min-max, and under a shared scale the shared
    range beside it, each named ("own 0.285–0.913 · shared 0.215–0.92")."""
    if not shared:
        return fmt_range(*rng)
    a = np.asarray(m, dtype=np.float64)
    return f"own {fmt_range(float(a.min()), float(a.max()))} · shared {fmt_range(*rng)}"


def draw(display: np.ndarray, m: np.ndarray, norm="minmax", mark=None) -> tuple[np.ndarray, tuple]:
    """Overlay ``m`` (any grid covering the image) on the display image: (RGB, (vmin, vmax))."""
    from ..render.scale import resolve_range
    rng = resolve_range(m, norm)
    return overlay(display, m, norm=rng, mark=mark), rng


def draw_affinity(display: np.ndarray, rec, qx: float, qy: float, norm="minmax", head=None):
    """The affinity row of the query at display pixel (qx, qy), marked: (RGB, (vmin, vmax));
    multi-head maps: one ``head`` or (None) the mean over heads."""
    from ..capture.maps import affinity_row
    from ..render.scale import resolve_range
    h, w = display.shape[:2]
    row, _ = affinity_row(rec, qy / h, qx / w, head)
    m = row[0].float().cpu().numpy()
    rng = resolve_range(m, norm)
    return affinity_overlay(display, rec, qx, qy, norm=rng, head=head), rng


def scale_norms(records, scale: str) -> dict:
    """{tap: norm} for the spatial records: their own range, or one range shared by all."""
    recs = [r for r in records if has_spatial(r)]
    if scale == "shared" and recs:
        rng = shared_range([grid_map(r) for r in recs])
        return {r.tap: rng for r in recs}
    return {r.tap: "minmax" for r in recs}


@functools.lru_cache(maxsize=256)
def legend(scale: str, shared_rng=None, width: int = 360) -> np.ndarray:
    """A colour bar stating the scale in use (made once per scale and range; read-only)."""
    bar = _legend(scale, shared_rng, width)
    bar.setflags(write=False)
    return bar


def _legend(scale: str, shared_rng=None, width: int = 360) -> np.ndarray:
    if scale == "shared" and shared_rng is not None:
        return colorbar(shared_rng[0], shared_rng[1], label="shared scale: all attention maps",
                        width=width)
    return colorbar(0.0, 1.0, label="per map: own min (0) to max (1)", width=width)


# ------------------------------------------------------------------------------ text
def top_k_dict(analysis) -> dict:
    return {str(n): float(p) for n, p in analysis.top_k}


def prediction_text(analysis, k: int = 3) -> str:
    parts = [f"**{n}** {p:.0%}" if i == 0 else f"{n} {p:.0%}"
             for i, (n, p) in enumerate(analysis.top_k[:k])]
    return " · ".join(parts)


def finite(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
