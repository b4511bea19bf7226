"""Data with known ground truth, and users' own images.

``make_shapes(n, seed, size=128)`` draws a synthetic classification task whose answer is known
pixel by pixel: every image holds one *target* shape whose outline alone decides the class
(circle, triangle, square, star, cross, ring) at a random position, scale (28-60 px of bounding
box at 128 px, scaled with ``size``), rotation and colour, on a smooth textured background, with
2-4 distractors (line segments, thin ellipses, arcs, zigzags) that are none of the class shapes
and whose colours come from the same distribution as the target's. Distractors never touch the
target (they are kept at least 2 px away), and nothing is antialiased, so ``masks`` is exactly
the set of target pixels (every masked pixel has the target colour ``colors[i]``).

Image ``i`` of a set depends only on ``(seed, i)``, so a subset (``indices=``) can be drawn
alone, which is how distributed training shards an epoch across processes.

``load_image_folder(path_or_zip, size=128)`` reads a folder or a zip of class sub-folders::

    data/cat/001.jpg            image of class "cat"
    data/cat/001_mask.png       optional mask for it (non-zero = object); or
    data/cat/masks/001.png      the same mask in a ``masks/`` sub-folder

Zips are unpacked into a temporary folder after checking every member: absolute paths, ``..``
components, symlinks and other non-regular entries are refused, and so are archives with more
than ``max_files`` members or more than ``max_bytes`` uncompressed. Problems raise
:class:`attnviz.errors.DatasetError` with a message saying what to fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..errors import DatasetError

SHAPE_CLASSES = ["circle", "triangle", "square", "star", "cross", "ring"]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions without antialiasing
_ONE = 1 << _SHIFT


@dataclass
class ShapesData:
    """A labelled image set. ``masks`` is None for data without masks."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    masks: np.ndarray | None  # (N, H, W) bool
    classes: list
    colors: np.ndarray | None = None  # (N, 3) uint8 target colour (synthetic data)
    boxes: np.ndarray | None = None  # (N, 4) int x0, y0, x1, y1 (inclusive) of the mask
    meta: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.labels)

    def subset(self, idx) -> "ShapesData":
        idx = np.asarray(idx)

        def pick(a):
            return None if a is None else a[idx]

        meta = dict(self.meta)
        if "has_mask" in meta:  # per-image entries of image-folder data
            meta["has_mask"] = np.asarray(meta["has_mask"])[idx]
        if "files" in meta:
            ii = np.nonzero(idx)[0] if idx.dtype == bool else np.atleast_1d(idx)
            meta["files"] = [meta["files"][int(i)] for i in ii]
        return ShapesData(self.images[idx], self.labels[idx], pick(self.masks), list(self.classes),
                          pick(self.colors), pick(self.boxes), meta)


def with_classes(data: ShapesData, classes) -> ShapesData:
    """``data`` relabelled to a model's classes: each class folder is matched by name (case and
    surrounding spaces ignored) to the model's label of that name, so a model with labels
    ["cat", "dog", "fox"] is evaluated on folders dog/ and cat/ in its own index order. Raises
    DatasetError naming the folders that match no label."""
    classes = [str(c) for c in classes or []]
    if not classes:
        raise DatasetError("the model has no class names to match the folders to; give it its "
                           "labels (app.py --labels FILE, or describe(model, classes=...)).")
    index = {c.strip().lower(): i for i, c in enumerate(classes)}
    unknown = [c for c in data.classes if str(c).strip().lower() not in index]
    if unknown:
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        raise DatasetError(f"the folders {', '.join(map(str, unknown[:8]))} match none of the "
                           f"model's {len(classes)} labels ({shown}); name each class folder "
                           "after one of them.")
    remap = np.array([index[str(c).strip().lower()] for c in data.classes], dtype=np.int64)
    return ShapesData(data.images, remap[data.labels], data.masks, classes, data.colors,
                      data.boxes, dict(data.meta))


# ------------------------------------------------------------------------------------------------
# synthetic shapes
# ------------------------------------------------------------------------------------------------
def _unit_shape(cls: int, rng) -> list[np.ndarray]:
    """Polygons (outer first, then holes) of class ``cls`` in unit coordinates, roughly centred."""
    if cls == 0 or cls == 5:  # circle / ring
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], 1)
        if cls == 0:
            return [outer]
        return [outer, outer * rng.uniform(0.45, 0.65)]
    if cls == 1:  # triangle (near equilateral)
        a = np.array([90, 210, 330]) + rng.uniform(-8, 8, 3)
        a = np.deg2rad(a)
        return [np.stack([np.cos(a), np.sin(a)], 1)]
    if cls == 2:  # square
        a = np.deg2rad(np.array([45, 135, 225, 315]))
        return [np.stack([np.cos(a), np.sin(a)], 1)]
    if cls == 3:  # five-pointed star
        inner = rng.uniform(0.38, 0.5)
        a = np.deg2rad(90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        return [np.stack([r * np.cos(a), r * np.sin(a)], 1)]
    if cls == 4:  # cross (plus sign)
        w = rng.uniform(0.3, 0.4)
        p = np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1],
                      [-w, w], [-1, w], [-1, -w], [-w, -w]], float)
        return [p]
    raise ValueError(cls)


def _background(rng, size: int) -> np.ndarray:
    """Smooth noise blended between two colours, plus a gradient and sometimes faint stripes."""
    c1 = rng.uniform(0, 255, 3)
    c2 = np.clip(c1 + rng.normal(0, 45, 3), 0, 255)
    g = int(rng.integers(3, 9))
    noise = cv2.resize(rng.random((g, g)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ang = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(ang) * xx + np.sin(ang) * yy)
    f = 0.6 * noise + 0.4 * (grad - grad.min()) / (np.ptp(grad) + 1e-6)
    if rng.random() < 0.5:
        sang = rng.uniform(0, np.pi)
        period = rng.uniform(6, 20) / 128 * size
        f = f + 0.15 * np.sin(2 * np.pi * (np.cos(sang) * xx + np.sin(sang) * yy) * size / period)
    f = np.clip(f, 0, 1)[..., None]
    img = c1 * (1 - f) + c2 * f
    img += rng.normal(0, 3, (size, size, 1))  # faint grain, same for all channels
    return np.clip(img, 0, 255).astype(np.uint8), (c1 + c2) / 2


def _pick_colour(rng, avoid: np.ndarray, min_dist: float = 90.0) -> np.ndarray:
    for _ in range(50):
        c = rng.integers(0, 256, 3)
        if np.linalg.norm(c - avoid) >= min_dist:
            return c.astype(np.uint8)
    return (255 - avoid).clip(0, 255).astype(np.uint8)


def _to_fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(pts * _ONE).astype(np.int32)


def _draw_target(cls, rng, size, scale):
    """Mask of the target class shape with bounding box max side ``scale`` at a random place."""
    polys = _unit_shape(cls, rng)
    th = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    polys = [p @ rot.T for p in polys]
    lo, hi = polys[0].min(0), polys[0].max(0)
    k = scale / float((hi - lo).max())
    polys = [(p - (lo + hi) / 2) * k for p in polys]
    half = (hi - lo) * k / 2
    margin = 2
    cx = rng.uniform(half[0] + margin, size - 1 - half[0] - margin)
    cy = rng.uniform(half[1] + margin, size - 1 - half[1] - margin)
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [_to_fixed(polys[0] + (cx, cy))], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    for hole in polys[1:]:
        cv2.fillPoly(m, [_to_fixed(hole + (cx, cy))], 0, lineType=cv2.LINE_8, shift=_SHIFT)
    return m.astype(bool)


def shape_mask(cls: int, size: int, centre_yx, scale: float, angle: float, rng) -> np.ndarray:
    """(size, size) bool mask of class ``cls`` (an index of :data:`SHAPE_CLASSES`) whose bounding
    box has longest side ``scale``, rotated by ``angle`` radians, centred at ``centre_yx``;
    drawn like the targets of :func:`make_shapes` (no antialiasing)."""
    polys = _unit_shape(cls, rng)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polys = [p @ rot.T for p in polys]
    lo, hi = polys[0].min(0), polys[0].max(0)
    k = scale / float((hi - lo).max())
    cy, cx = centre_yx
    polys = [(p - (lo + hi) / 2) * k + (cx, cy) for p in polys]
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [_to_fixed(polys[0])], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    for hole in polys[1:]:
        cv2.fillPoly(m, [_to_fixed(hole)], 0, lineType=cv2.LINE_8, shift=_SHIFT)
    return m.astype(bool)


def _draw_distractor(rng, size, m: np.ndarray):
    """Draw one distractor (value 1) into the zeroed uint8 canvas ``m``."""
    s = size / 128
    kind = rng.integers(0, 4)
    c = rng.uniform(0, size, 2)
    thick = max(1, int(round(rng.uniform(2, 5) * s)))
    if kind == 0:  # line segment
        L = rng.uniform(20, 60) * s
        a = rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * L / 2
        cv2.line(m, tuple(_to_fixed(c - d)), tuple(_to_fixed(c + d)), 1, thick,
                 lineType=cv2.LINE_8, shift=_SHIFT)
    elif kind == 1:  # thin filled ellipse (aspect >= 3)
        a = rng.uniform(8, 24) * s
        b = a * rng.uniform(0.12, 0.3)
        cv2.ellipse(m, tuple(_to_fixed(c)), (int(a * _ONE), max(_ONE, int(b * _ONE))),
                    rng.uniform(0, 180), 0, 360, 1, -1, lineType=cv2.LINE_8, shift=_SHIFT)
    elif kind == 2:  # open arc (at most 200 degrees)
        r = rng.uniform(10, 28) * s
        a0 = rng.uniform(0, 360)
        cv2.ellipse(m, tuple(_to_fixed(c)), (int(r * _ONE), int(r * rng.uniform(0.6, 1.0) * _ONE)),
                    rng.uniform(0, 180), a0, a0 + rng.uniform(60, 200), 1, thick,
                    lineType=cv2.LINE_8, shift=_SHIFT)
    else:  # zigzag polyline
        k = int(rng.integers(3, 6))
        step = rng.uniform(8, 16) * s
        a = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(a), np.sin(a)])
        nrm = np.array([-d[1], d[0]])
        pts = [c + d * step * i + nrm * step * 0.6 * (1 if i % 2 else -1) for i in range(k)]
        cv2.polylines(m, [_to_fixed(np.array(pts))], False, 1, thick, lineType=cv2.LINE_8,
                      shift=_SHIFT)


def _one_image(seed: int, i: int, size: int, n_classes: int):
    rng = np.random.default_rng([int(seed), int(i)])
    label = int(rng.integers(0, n_classes))
    img, bg_mean = _background(rng, size)
    scale = rng.uniform(28, 60) * size / 128
    mask = _draw_target(label, rng, size, scale)
    colour = _pick_colour(rng, bg_mean)
    # keep-out zone: the target dilated by 2 px
    keep = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    n_dis = int(rng.integers(2, 5))
    canvas = np.zeros((size, size), np.uint8)
    placed = 0
    for _ in range(n_dis * 6):
        if placed >= n_dis:
            break
        canvas[:] = 0
        _draw_distractor(rng, size, canvas)
        d = canvas.astype(bool)
        if not d.any() or (d & keep).any():
            continue
        img[d] = _pick_colour(rng, bg_mean, 60.0)
        placed += 1
    img[mask] = colour
    ys, xs = np.nonzero(mask)
    box = (xs.min(), ys.min(), xs.max(), ys.max())
    return img, label, mask, colour, box


def make_shapes(n: int, seed: int = 0, size: int = 128, indices=None,
                check=None) -> ShapesData:
    """``n`` synthetic images (or only those at ``indices`` of the ``n``-image set) from ``seed``.

    Deterministic: image ``i`` depends only on ``(seed, i, size)``. ``check``, if given, is
    called every 32 images; an exception from it stops the drawing (a cancelled training)."""
    if size < 32:
        raise ValueError("size must be at least 32 px")
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    m = len(idx)
    images = np.empty((m, size, size, 3), np.uint8)
    masks = np.empty((m, size, size), bool)
    labels = np.empty(m, np.int64)
    colors = np.empty((m, 3), np.uint8)
    boxes = np.empty((m, 4), np.int64)
    k = len(SHAPE_CLASSES)
    for j, i in enumerate(idx):
        if check is not None and j % 32 == 0:
            check()
        images[j], labels[j], masks[j], colors[j], boxes[j] = _one_image(seed, int(i), size, k)
    return ShapesData(images, labels, masks, list(SHAPE_CLASSES), colors, boxes,
                      {"source": "make_shapes", "seed": int(seed), "n": int(n), "size": int(size)})


TEST_SEED = 424_242  # evaluation default: never used by training or validation


def to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


__all__ = ["IMAGE_EXTS", "SHAPE_CLASSES", "ShapesData", "TEST_SEED", "make_shapes", "to_tensor",
           "with_classes"]
