"""Ground-truth masks for the localisation and oracle scores: a user's mask image or array at
the image's size (:func:`load_mask`), or a typed box (:func:`box_mask`)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..data.images import load_image
from ..errors import InspectError


def load_mask(mask, hw, exact: bool = False) -> np.ndarray:
    """A ground-truth mask as bool (H, W) for an image of size ``hw``: a bool / 0-1 array, or an
    image (path, PIL) whose bright pixels mark the object. ``exact``: the mask must have the
    image's size (a user's upload), else an InspectError says both sizes; otherwise an image of
    another size is resized (nearest). A mask that marks nothing is refused."""
    if exact:
        size = mask.shape[:2] if isinstance(mask, np.ndarray) else load_image(mask).size[::-1]
        if tuple(size) != tuple(hw):
            raise InspectError(f"the mask is {size[1]} x {size[0]} pixels but the image is "
                               f"{hw[1]} x {hw[0]}; give a mask the size of the image (white "
                               "where the object is)")
    m = _load_mask(mask, hw)
    if not m.any():
        raise InspectError("the mask marks no pixel as the object (white = object)")
    if m.all():
        raise InspectError("the mask marks every pixel as the object; white = object, black = "
                           "background")
    return m


def box_mask(box, hw) -> np.ndarray:
    """A bool (H, W) mask that is True inside ``box``: (x0, y0, x1, y1) in image pixels (the
    corners' pixels included), as numbers or one string "x0, y0, x1, y1"."""
    try:
        vals = [float(v) for v in (box.replace(",", " ").split() if isinstance(box, str)
                                   else box)]
    except (TypeError, ValueError):
        raise InspectError(f"a box is four numbers x0, y0, x1, y1 in image pixels, not "
                           f"{str(box)[:80]!r}") from None
    h, w = hw
    if len(vals) != 4 or not np.isfinite(vals).all():
        raise InspectError(f"a box is four numbers x0, y0, x1, y1 in image pixels, not {vals}")
    x0, y0, x1, y1 = (int(round(v)) for v in vals)
    if not (0 <= x0 < x1 < w + 1 and 0 <= y0 < y1 < h + 1):
        raise InspectError(f"the box ({x0}, {y0}, {x1}, {y1}) must lie inside the image "
                           f"({w} x {h} pixels) with x0 < x1 and y0 < y1")
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


def _load_mask(mask, hw) -> np.ndarray:
    """A mask as bool (H, W) at the image's resolution: an array, or an image (path / PIL) whose
    bright pixels mark the object. An image mask of another size is resized (nearest)."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        m = mask > 0.5 if mask.dtype.kind == "f" else mask.astype(bool)
        if m.shape != hw:
            m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(
                (hw[1], hw[0]), Image.NEAREST)) > 127
        return m
    pil = load_image(mask).convert("L")
    if pil.size != (hw[1], hw[0]):
        pil = pil.resize((hw[1], hw[0]), Image.NEAREST)
    return np.asarray(pil) > 127
