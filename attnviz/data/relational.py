"""A relational task with ground truth for every link: is the colour of two far-apart squares the
same?

``make_relational(n, seed, size=128)`` draws images holding three objects on a plain noisy grey
background:

- two filled **squares** (side 16-22 px at 128 px, scaled with ``size``) whose centres are at
  least ``0.45 * size`` apart; one of them is the *query*, the other its *partner*;
- one hollow **ring** of about the same size, the *distractor*, kept away from both squares.

Each object has one of the :data:`PALETTE` colours (plus a little per-object jitter). The label is
``"same"`` when the two squares have the same palette colour and ``"different"`` otherwise; the
ring's colour never matters. So the label is a function of both squares, and of nothing else:

- the label is drawn first (50/50), the query's colour uniformly, the partner's colour equal to it
  ("same") or uniformly among the others ("different"), so each square's colour alone is uniform
  whatever the label: no single region gives the answer away (the tests measure it);
- the ring copies the query's or the partner's colour half of the time (else a uniform colour), so
  a model that links a square to whatever has its colour is misled; its colour alone is uniform
  too.

A plain CNN that pools its features over the image and classifies them linearly cannot compute
"same colour" from two regions that its receptive fields do not both cover (a sum of per-region
terms cannot express equality); a module that lets one position read another (non-local, SAGAN,
DANet) can. Which square is the query is random, so both roles are seen everywhere.

For every image the generator returns the masks a query on the query square should attend to
(``partner_masks``) and should not (``distractor_masks``), the query's own region
(``query_masks``) and the query point (``query_points``, (y, x) in pixels, the query square's
centre). ``masks`` (the objects that decide the label) is query | partner. Image ``i`` depends
only on ``(seed, i, size)``; ``indices=`` draws a subset alone (sharded training).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .synthetic import ShapesData

RELATION_CLASSES = ["same", "different"]
PALETTE = np.array([[220, 40, 40],     # red
                    [40, 180, 60],     # green
                    [50, 90, 235]],    # blue
                   np.uint8)
MIN_SEPARATION = 0.45  # query-partner centre distance, as a fraction of the image size


@dataclass
class RelationalData(ShapesData):
    """ShapesData plus the link ground truth of :func:`make_relational`."""

    query_masks: np.ndarray | None = None  # (N, H, W) bool: the query square
    partner_masks: np.ndarray | None = None  # (N, H, W) bool: the other square
    distractor_masks: np.ndarray | None = None  # (N, H, W) bool: the ring
    query_points: np.ndarray | None = None  # (N, 2) float: (y, x) pixel centre of the query
    region_colours: np.ndarray | None = None  # (N, 3) int: palette index of query, partner, ring

    def subset(self, idx) -> RelationalData:
        base = super().subset(idx)
        idx = np.asarray(idx)
        return RelationalData(**{**base.__dict__, **{
            k: getattr(self, k)[idx] for k in ("query_masks", "partner_masks", "distractor_masks",
                                               "query_points", "region_colours")}})


def _square(size, cy, cx, side):
    m = np.zeros((size, size), bool)
    h = side / 2
    y0, y1 = round(cy - h), round(cy + h)
    x0, x1 = round(cx - h), round(cx + h)
    m[max(y0, 0):y1, max(x0, 0):x1] = True
    return m


def _ring(size, cy, cx, radius, thick):
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (round(cx), round(cy)), round(radius), 1, thick,
               lineType=cv2.LINE_8)
    return m.astype(bool)


def _one(seed: int, i: int, size: int):
    rng = np.random.default_rng([int(seed), int(i), 7])
    s = size / 128
    k = len(PALETTE)
    label = int(rng.integers(0, 2))
    cq = int(rng.integers(0, k))
    cp = cq if label == 0 else int((cq + rng.integers(1, k)) % k)
    cd = int([cq, cp][rng.integers(0, 2)]) if rng.random() < 0.5 else int(rng.integers(0, k))
    grey = rng.uniform(70, 150)
    img = np.clip(grey + rng.normal(0, 6, (size, size, 1)), 0, 255).repeat(3, -1)
    sides = rng.uniform(16, 22, 2) * s
    radius = rng.uniform(8, 11) * s
    thick = max(2, round(3 * s))
    lo = 13 * s  # centres at least this far from the border
    for _ in range(1000):
        q = rng.uniform(lo, size - lo, 2)
        p = rng.uniform(lo, size - lo, 2)
        d = rng.uniform(lo, size - lo, 2)
        if np.linalg.norm(q - p) < MIN_SEPARATION * size:
            continue
        if min(np.linalg.norm(d - q), np.linalg.norm(d - p)) < 30 * s:
            continue
        break
    qm = _square(size, q[0], q[1], sides[0])
    pm = _square(size, p[0], p[1], sides[1])
    dm = _ring(size, d[0], d[1], radius, thick)
    for m, c in ((qm, cq), (pm, cp), (dm, cd)):
        jitter = rng.integers(-12, 13, 3)
        img[m] = np.clip(PALETTE[c].astype(int) + jitter, 0, 255)
    return (img.astype(np.uint8), label, qm, pm, dm, (q[0], q[1]), (cq, cp, cd))


def make_relational(n: int, seed: int = 0, size: int = 128, indices=None,
                    check=None) -> RelationalData:
    """``n`` images of the same/different task (or those at ``indices`` of the ``n``-image set).

    Deterministic: image ``i`` depends only on ``(seed, i, size)``. ``check``, if given, is called
    every 32 images (an exception from it stops the drawing: a cancelled request), as in
    ``make_shapes``."""
    if size < 64:
        raise ValueError("size must be at least 64 px (the squares must lie far apart)")
    return draw_set(_one, n, seed, size, indices, check, RELATION_CLASSES, PALETTE, 0,
                    "make_relational")


def draw_set(one, n, seed, size, indices, check, classes, palette, colour_region: int,
             source: str) -> RelationalData:
    """Draw images ``indices`` (default ``0..n-1``) of a relational set with ``one(seed, i,
    size)`` -> (image, label, query mask, partner mask, distractor mask, query (y, x), palette
    index of each region) and stack them into a :class:`RelationalData` whose ``colors`` are the
    palette colours of region ``colour_region``. Shared by the relational generators."""
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    m = len(idx)
    images = np.empty((m, size, size, 3), np.uint8)
    labels = np.empty(m, np.int64)
    qms, pms, dms = (np.empty((m, size, size), bool) for _ in range(3))
    points = np.empty((m, 2), np.float64)
    colours = np.empty((m, 3), np.int64)
    for j, i in enumerate(idx):
        if check is not None and j % 32 == 0:
            check()
        images[j], labels[j], qms[j], pms[j], dms[j], points[j], colours[j] = \
            one(seed, int(i), size)
    masks = qms | pms
    boxes = np.empty((m, 4), np.int64)
    for j in range(m):
        ys, xs = np.nonzero(masks[j])
        boxes[j] = (xs.min(), ys.min(), xs.max(), ys.max())
    return RelationalData(images, labels, masks, list(classes),
                          palette[colours[:, colour_region]], boxes,
                          {"source": source, "seed": int(seed), "n": int(n), "size": int(size)},
                          query_masks=qms, partner_masks=pms, distractor_masks=dms,
                          query_points=points, region_colours=colours)
