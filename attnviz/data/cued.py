"""A relational task whose links run one way by design: a small cue whose colour names which of
two far-apart shapes to classify.

``make_cued(n, seed, size=128)`` draws images holding three objects on a plain noisy grey
background:

- the **cue**: a small square (side 10-12 px at 128 px, scaled with ``size``) with a white centre;
  it is the *query*;
- two **shapes** (a circle, a triangle or a square; longest side 22-28 px, any rotation) of two
  different classes and two different :data:`CUE_PALETTE` colours. The one whose colour is the
  cue's is the *partner* (the named shape); the other is the *distractor*.

The label is the partner's class (:data:`CUED_CLASSES`). Both shapes lie at least ``0.45 * size``
from the cue (and apart from each other), so no receptive field of a plain CNN holds the cue
and a shape at once; a module that lets one position read another (non-local, SAGAN, DANet) can
carry the named shape's class to the cue, or the cue's colour to the shapes. A query on the cue
should attend to the partner, not to the distractor: that is the link the scores check
(:mod:`attnviz.scores.links`).

What each region tells alone (the tests measure it): the cue's colour is uniform whatever the
label; a shape alone is the named one half of the time (so its class is the label with
probability 1/2 + 1/6 over three classes, against 1/3 by chance); the two shapes without the cue
leave two classes equally likely. Only the cue together with the shapes gives the label.

Findings (README, "A task whose reader is fixed"): trained on the image's label alone, the lite
models stay at the two-shape bound (accuracy 0.5), the cue's row spread over both shapes. With a
second loss on the answer read at the cue (:attr:`~attnviz.data.link_tasks.LinkTask.query_loss`,
:mod:`attnviz.models.readout`) and the same/different checkpoint as the warm start, non-local
learns it (at the cue 0.958; partner mass 6.9x the distractor's) but its cue reads the partner
only for some colours; SAGAN's cue ranks the shapes by colour, whatever its own.

Same fields as :func:`attnviz.datasets.make_relational` (a
:class:`~attnviz.data.relational.RelationalData`): ``query_masks`` (the cue), ``partner_masks``,
``distractor_masks``, ``query_points`` (the cue's centre, (y, x) in pixels), ``region_colours``
(palette index of cue, partner, distractor) and ``masks`` = cue | partner. Image ``i`` depends
only on ``(seed, i, size)``; ``indices=`` draws a subset alone (sharded training).
"""
from __future__ import annotations

import numpy as np

from .relational import RelationalData, draw_set
from .synthetic import SHAPE_CLASSES, shape_mask

CUED_CLASSES = ["circle", "triangle", "square"]  # the first three of SHAPE_CLASSES
CUE_PALETTE = np.array([[220, 40, 40],     # red
                        [40, 180, 60],     # green
                        [50, 90, 235],     # blue
                        [230, 200, 40]],   # yellow
                       np.uint8)
CUE_SEPARATION = 0.45  # cue-shape centre distance, as a fraction of the image size
_SHAPE_INDEX = [SHAPE_CLASSES.index(c) for c in CUED_CLASSES]


def _cue(size, cy, cx, side):
    """Masks of the cue square and of its white centre."""
    m = np.zeros((size, size), bool)
    h = side / 2
    m[max(round(cy - h), 0):round(cy + h), max(round(cx - h), 0):round(cx + h)] = True
    c = np.zeros_like(m)
    k = max(1.0, side / 6)
    c[round(cy - k):round(cy + k), round(cx - k):round(cx + k)] = True
    return m, c & m


def _one(seed: int, i: int, size: int):
    rng = np.random.default_rng([int(seed), int(i), 11])
    s = size / 128
    label = int(rng.integers(0, len(CUED_CLASSES)))
    other = int((label + rng.integers(1, len(CUED_CLASSES))) % len(CUED_CLASSES))
    cp, cd = (int(c) for c in rng.choice(len(CUE_PALETTE), 2, replace=False))
    grey = rng.uniform(70, 150)
    img = np.clip(grey + rng.normal(0, 6, (size, size, 1)), 0, 255).repeat(3, -1)
    scales = rng.uniform(22, 28, 2) * s
    side = rng.uniform(10, 12) * s
    lo_shape, lo_cue = 16 * s, 8 * s
    for _ in range(2000):
        c = rng.uniform(lo_cue, size - lo_cue, 2)
        p = rng.uniform(lo_shape, size - lo_shape, 2)
        d = rng.uniform(lo_shape, size - lo_shape, 2)
        far = CUE_SEPARATION * size + 5 * s  # + 5: a triangle's centroid is off its box's centre
        if min(np.linalg.norm(c - p), np.linalg.norm(c - d)) < far:
            continue
        if np.linalg.norm(p - d) < 40 * s:  # the shapes never touch
            continue
        break
    pm = shape_mask(_SHAPE_INDEX[label], size, p, scales[0], rng.uniform(0, 2 * np.pi), rng)
    dm = shape_mask(_SHAPE_INDEX[other], size, d, scales[1], rng.uniform(0, 2 * np.pi), rng)
    qm, centre = _cue(size, c[0], c[1], side)
    for m, col in ((qm, cp), (pm, cp), (dm, cd)):
        jitter = rng.integers(-12, 13, 3)
        img[m] = np.clip(CUE_PALETTE[col].astype(int) + jitter, 0, 255)
    img[centre] = 240
    return img.astype(np.uint8), label, qm, pm, dm, (c[0], c[1]), (cp, cp, cd)


def make_cued(n: int, seed: int = 0, size: int = 128, indices=None,
              check=None) -> RelationalData:
    """``n`` images of the cued task (or those at ``indices`` of the ``n``-image set).

    Deterministic: image ``i`` depends only on ``(seed, i, size)``. ``check``, if given, is called
    every 32 images (an exception from it stops the drawing: a cancelled request)."""
    if size < 64:
        raise ValueError("size must be at least 64 px (the cue must lie far from the shapes)")
    return draw_set(_one, n, seed, size, indices, check, CUED_CLASSES, CUE_PALETTE, 1,
                    "make_cued")
