"""OpenCV renderings: colormap overlays at the image's own resolution, colour bars that state
their scale, query markers, resizing for display and PNG encoding.

Images are RGB ``HxWx3 uint8`` arrays throughout (OpenCV's BGR is handled inside). Maps are any
(h, w) float array or tensor; they are brought to the image's resolution with bilinear
interpolation (``cv2.INTER_LINEAR``) before colouring.

    img = overlay(image, cam, colormap="inferno", norm="percentile")
    img = overlay(image, rec_map, norm=shared_range(maps), colorbar=True, label="CBAM spatial")
    png = to_png_bytes(fit(img, 512))
"""
from __future__ import annotations

import cv2
import numpy as np

from .. import kinds as _kinds
from .scale import as_numpy, normalise, resolve_range
from ..capture.maps import to_spatial
from ..capture.maps import affinity_row

DEFAULT_COLORMAP = "jet"
COLORMAPS = {name[len("COLORMAP_"):].lower(): getattr(cv2, name)
             for name in dir(cv2) if name.startswith("COLORMAP_")}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


# -- images ------------------------------------------------------------------------------------
def as_rgb(image) -> np.ndarray:
    """PIL image or array (HxW, HxWx1, HxWx3, HxWx4; uint8 or float in [0, 1]) -> HxWx3 uint8."""
    a = np.asarray(image)
    if a.dtype == np.uint16:  # 16-bit images: 0..65535 -> 0..255
        a = np.round(a.astype(np.float32) / 257.0).astype(np.uint8)
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected an HxWx3 image, got an array of shape {a.shape}")
    if a.shape[2] in (1, 2):  # grey, grey + alpha
        a = np.repeat(a[..., :1], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def fit(image, max_side: int = 512) -> np.ndarray:
    """Downscale (never upscale) so the longer side is at most ``max_side`` (area interpolation)."""
    img = as_rgb(image)
    h, w = img.shape[:2]
    s = max(h, w)
    if s <= max_side:
        return img
    size = (max(1, round(w * max_side / s)), max(1, round(h * max_side / s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def to_png_bytes(image, compression: int = 6) -> bytes:
    """PNG-encode an RGB image."""
    img = as_rgb(image)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def save_png(path, image, compression: int = 9) -> None:
    with open(path, "wb") as f:
        f.write(to_png_bytes(image, compression))


# -- colour -----------------------------------------------------------------------------------
def colormap_id(colormap: str) -> int:
    key = str(colormap).lower()
    if key not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose from {sorted(COLORMAPS)}")
    return COLORMAPS[key]


def colorize(values01, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Values in [0, 1] (any 2-D shape) -> RGB uint8 colours of ``colormap``."""
    u8 = np.round(np.clip(as_numpy(values01), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, colormap_id(colormap)), cv2.COLOR_BGR2RGB)


def _fmt(v: float, ref: float = 0.0) -> str:
    """3 significant digits; a value negligible beside ``ref`` (1e-17 next to 0.05: float noise
    of a softmax row) is written 0."""
    if v == 0 or abs(v) < 1e-6 * abs(ref):
        return "0"
    return f"{v:.3g}"


def range_labels(vmin: float, vmax: float) -> tuple[str, str]:
    """The two ends of a colour bar as written on it."""
    ref = max(abs(float(vmin)), abs(float(vmax)))
    return _fmt(float(vmin), ref), _fmt(float(vmax), ref)


def _fit_text(text: str, max_w: int, scale: float) -> str:
    """Shorten ``text`` with '..' until it fits ``max_w`` pixels."""
    if max_w <= 0:
        return ""
    t = text
    while t and cv2.getTextSize(t, _FONT, scale, 1)[0][0] > max_w:
        t = t[:-3] + ".." if len(t) > 3 else ""
    return t


def colorbar(vmin: float, vmax: float, colormap: str = DEFAULT_COLORMAP, label: str = "",
             width: int = 256, height: int | None = None) -> np.ndarray:
    """A horizontal colour bar, ``width`` pixels wide: the gradient strip, then vmin at the left,
    vmax at the right and ``label`` between them (white background). Returns RGB uint8."""
    width = max(int(width), 32)
    scale = float(np.clip(width / 640, 0.32, 0.6))
    th = cv2.getTextSize("0.9g", _FONT, scale, 1)[0][1]
    strip = max(6, th)
    height = height or strip + th + 12
    bar = np.full((height, width, 3), 255, np.uint8)
    pad = 2
    bar[pad:pad + strip] = colorize(np.linspace(0, 1, width)[None].repeat(strip, 0), colormap)
    base = pad + strip + th + 4
    lo, hi = range_labels(vmin, vmax)
    hi_w = cv2.getTextSize(hi, _FONT, scale, 1)[0][0]
    lo_w = cv2.getTextSize(lo, _FONT, scale, 1)[0][0]
    cv2.putText(bar, lo, (2, base), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, hi, (width - hi_w - 2, base), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    room = width - lo_w - hi_w - 16
    text = _fit_text(label, room, scale)
    if text:
        tw = cv2.getTextSize(text, _FONT, scale, 1)[0][0]
        x = lo_w + 8 + (room - tw) // 2
        cv2.putText(bar, text, (x, base), _FONT, scale, (60, 60, 60), 1, cv2.LINE_AA)
    return bar


def with_colorbar(image, vmin: float, vmax: float, colormap: str = DEFAULT_COLORMAP,
                  label: str = "") -> np.ndarray:
    """``image`` with a colour bar of its width stacked beneath it (an image narrower than the
    narrowest bar, 32 px, is centred on white above it)."""
    img = as_rgb(image)
    return stack_under(img, colorbar(vmin, vmax, colormap, label, width=img.shape[1]))


def stack_under(image: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """``bar`` beneath ``image``, the narrower of the two centred on white to the other's
    width (a very thin image is narrower than any colour bar)."""
    width = max(image.shape[1], bar.shape[1])

    def centred(a):
        extra = width - a.shape[1]
        if not extra:
            return a
        return np.pad(a, ((0, 0), (extra // 2, extra - extra // 2), (0, 0)),
                      constant_values=255)
    return np.vstack([centred(image), centred(bar)])


def draw_marker(image, xy, size: int | None = None) -> np.ndarray:
    """Draw a query marker (white cross in a white ring, outlined in black) at pixel
    ``xy`` = (x, y), in place; returns the image."""
    h, w = image.shape[:2]
    x = int(np.clip(round(float(xy[0])), 0, w - 1))
    y = int(np.clip(round(float(xy[1])), 0, h - 1))
    size = size or max(7, min(h, w) // 16)
    for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.drawMarker(image, (x, y), colour, cv2.MARKER_CROSS, size, thick, cv2.LINE_AA)
        cv2.circle(image, (x, y), size // 2 + 2, colour, thick, cv2.LINE_AA)
    image[y, x] = (255, 255, 255)
    return image


# -- overlays ---------------------------------------------------------------------------------
def heat(map2d, size_hw, colormap: str = DEFAULT_COLORMAP, norm="minmax"):
    """Colour a map at ``size_hw`` = (H, W): returns (RGB uint8 HxWx3, (vmin, vmax))."""
    m = as_numpy(map2d)
    while m.ndim > 2 and m.shape[0] == 1:  # a leading batch axis; a (H, 1) column stays 2-D
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    vmin, vmax = resolve_range(m, norm)
    h, w = size_hw
    up = cv2.resize(m, (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
    return colorize(normalise(up, vmin, vmax), colormap), (vmin, vmax)


def overlay(image, map2d, alpha: float = 0.5, colormap: str = DEFAULT_COLORMAP, norm="minmax",
            mark=None, colorbar: bool = False, label: str = "") -> np.ndarray:
    """Blend a colour-mapped ``map2d`` over ``image`` at the image's original resolution.

    Args:
        image: HxWx3 uint8 RGB (PIL images, grey and RGBA arrays are accepted too).
        map2d: (h, w) floats; resized to (H, W) bilinearly.
        alpha: weight of the colour map (0: only the image, 1: only the map).
        colormap: an OpenCV colormap name ("jet", "inferno", "viridis", "turbo", ...).
        norm: "minmax", "fixed", "percentile", (vmin, vmax) or a :class:`Normaliser`.
        mark: (x, y) in image pixels to mark (e.g. an affinity query), or None.
        colorbar: stack a colour bar stating the range under the image (the result is then taller
            than the image; without it the result is exactly HxWx3).
        label: text on the colour bar.
    """
    img = as_rgb(image)
    h, w = img.shape[:2]
    colours, (vmin, vmax) = heat(map2d, (h, w), colormap, norm)
    a = float(np.clip(alpha, 0.0, 1.0))
    out = cv2.addWeighted(img, 1.0 - a, colours, a, 0.0)
    if mark is not None:
        draw_marker(out, mark)
    if colorbar:
        out = with_colorbar(out, vmin, vmax, colormap, label)
    return out


BLOCK_NAMES = _kinds.BLOCK_NAMES  # live {name: display name} views of attnviz.kinds' tables
KIND_NAMES = _kinds.KIND_NAMES


def caption(rec) -> str:
    """"layer3.0.cbam.SpatialGate · CBAM spatial · 16x16": where, what, and at which size."""
    grid = _kinds.of(rec).caption(rec.tensor.shape, rec.meta)
    what = _kinds.label(rec)
    return " · ".join(p for p in (rec.layer, what, grid) if p)


def overlay_record(image, rec, batch: int = 0, reduce: str = "mean", **kw) -> np.ndarray:
    """Overlay a capture record's spatial reduction (see ``attnviz.maps.to_spatial``): spatial
    maps, group and calibration means, affinity column means. ``kw`` go to :func:`overlay`."""
    m = to_spatial(rec, reduce=reduce)
    if m is None:
        raise ValueError(f"{rec.label} has no spatial layout to overlay")
    kw.setdefault("label", caption(rec) if kw.get("colorbar") else "")
    return overlay(image, m[batch], **kw)


def affinity_overlay(image, rec, x: float, y: float, batch: int = 0, alpha: float = 0.5,
                     colormap: str = DEFAULT_COLORMAP, norm="minmax", colorbar: bool = False,
                     label: str | None = None, head: int | None = None) -> np.ndarray:
    """The affinity row of the query at image pixel (x, y) (nearest query cell; with capped
    captures the nearest kept query), upsampled over the image, with the query marked;
    multi-head maps: one ``head`` or (None) the mean over heads."""
    img = as_rgb(image)
    h, w = img.shape[:2]
    row, q = affinity_row(rec, y / h, x / w, head)
    if label is None:
        label = f"attention from query ({int(x)}, {int(y)})"
    return overlay(img, row[batch], alpha, colormap, norm, mark=(x, y), colorbar=colorbar,
                   label=label)
