"""The shipped synthetic examples (assets/examples/<class>.png with <class>_mask.png beside it).

They are drawn with :func:`attnviz.datasets.make_shapes` from a seed no training run uses, one
image per class, and generated on first start when missing. A request's image is matched to an
example by its pixels (not its file name), so the mask is found for an upload of the same file
through the API too.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = Path(os.environ.get("ATTNVIZ_EXAMPLES_DIR", ROOT / "assets" / "examples"))
EXAMPLE_SEED = 90210  # far from any training/validation seed
EXAMPLE_COUNT = 60  # draw this many and keep the first image of each class


def pixel_key(image: np.ndarray) -> str:
    """A hash of an RGB uint8 image's pixels and shape."""
    a = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    return hashlib.sha1(str(a.shape).encode() + a.tobytes()).hexdigest()


def ensure_examples(directory: Path = EXAMPLES_DIR) -> list[Path]:
    """Write the examples if missing; return the image paths (masks excluded), in class order."""
    from ..data.synthetic import make_shapes

    directory = Path(directory)
    data = None
    out = []
    from ..data.synthetic import SHAPE_CLASSES
    for cls_index, cls in enumerate(SHAPE_CLASSES):
        path = directory / f"{cls}.png"
        mask_path = directory / f"{cls}_mask.png"
        if not (path.is_file() and mask_path.is_file()):
            if data is None:
                data = make_shapes(EXAMPLE_COUNT, seed=EXAMPLE_SEED)
            idx = np.flatnonzero(data.labels == cls_index)
            if not len(idx):
                continue
            i = int(idx[0])
            directory.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[i]).save(path, optimize=True)
            Image.fromarray((data.masks[i] * 255).astype(np.uint8)).save(mask_path, optimize=True)
        out.append(path)
    return out


@lru_cache(maxsize=1)
def example_index() -> dict:
    """{pixel key: (class name, mask bool array)} of the shipped examples."""
    from ..data.images import load_image
    index = {}
    for path in ensure_examples():
        img = np.asarray(load_image(path))
        mask = np.asarray(load_image(path.with_name(path.stem + "_mask.png"))).max(-1) > 127
        index[pixel_key(img)] = (path.stem, mask)
    return index


def known_mask(image: np.ndarray):
    """(class name, mask) when ``image`` is one of the shipped examples, else (None, None)."""
    hit = example_index().get(pixel_key(image))
    return hit if hit else (None, None)


# ------------------------------------------------------------------------------ relational
RELATIONAL_SEED = 424_242  # the relational test seed (never trained on); the Statistics tab's
RELATIONAL_COUNT = 50  # examples are images 0..49 of it, at the relational models' sizes
RELATIONAL_SIZES = (64, 128)
RELATIONAL_SHIPPED = {"relational_same": 0, "relational_different": 1}  # name: label, at 128 px


def relational_examples(size: int, indices=None, task: str = "relational"):
    """Images of a link task's example set at ``size`` px (``indices``: a subset) with their
    ground truth: ``task`` is a key of :data:`attnviz.data.link_tasks.LINK_TASKS`
    (:func:`attnviz.datasets.make_relational` by default, or the cued task's)."""
    from ..data.link_tasks import LINK_TASKS
    return LINK_TASKS[task].make(RELATIONAL_COUNT, seed=RELATIONAL_SEED, size=size,
                                 indices=indices)


def ensure_relational_examples(directory: Path = EXAMPLES_DIR) -> list[Path]:
    """Write the two shipped relational examples (a *same* and a *different* image of the set,
    128 px) if missing; return their paths."""
    out, data = [], None
    for name, label in RELATIONAL_SHIPPED.items():
        path = Path(directory) / f"{name}.png"
        if not path.is_file():
            data = relational_examples(128) if data is None else data
            i = int(np.flatnonzero(data.labels == label)[0])
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[i]).save(path, optimize=True)
        out.append(path)
    return out


@lru_cache(maxsize=1)
def relational_index() -> dict:
    """{pixel key: (size, index)} of every image of the relational example set (the shipped
    relational examples are among them)."""
    index = {}
    for size in RELATIONAL_SIZES:
        for i, img in enumerate(relational_examples(size).images):
            index[pixel_key(img)] = (size, i)
    return index


def known_links(image: np.ndarray):
    """The link ground truth when ``image`` is one of the relational examples (matched by its
    pixels), else None: {"regions": {"partner", "distractor", "query's own region": (H, W) bool},
    "query_xy": (x, y) pixel centre of the query square}."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[0] != a.shape[1] or a.shape[0] not in RELATIONAL_SIZES:
        return None  # cheap: other images never build the index
    hit = relational_index().get(pixel_key(a))
    if hit is None:
        return None
    d = relational_examples(hit[0], indices=[hit[1]])
    qy, qx = d.query_points[0]
    return {"regions": {"partner": d.partner_masks[0], "distractor": d.distractor_masks[0],
                        "query's own region": d.query_masks[0]},
            "query_xy": (float(qx), float(qy))}
