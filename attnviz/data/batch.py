"""Many images in one pass: what :func:`attnviz.explain` and :func:`attnviz.inspect` accept as a
batch, and how it becomes one model input.

A batch is a list or tuple of images (each anything :func:`attnviz.load_image` reads, of any
size), a (B, H, W[, C]) numpy array of images, or a (B, 3, S, S) float tensor that is already the
model's normalised input (its maps come back at S x S). Targets are None (each image's predicted
class), one class for all, or one class per image.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import AttnvizError, ImageError, class_index
from ..errors import ImageReason as R
from .images import Preprocess, load_image, model_device, normalisation, preprocess

DEFAULT_BATCH = 32


def is_batch(images) -> bool:
    """Whether ``images`` is a batch (list / tuple, 4-D array, 4-D tensor) rather than one image."""
    if isinstance(images, (list, tuple)):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim == 4
    return isinstance(images, torch.Tensor) and images.dim() == 4


def batch_size_of(images) -> int:
    return len(images) if isinstance(images, (list, tuple, np.ndarray)) else int(images.shape[0])


def as_input(model, images, mode: str = "resize"):
    """A batch -> ((B, 3, S, S) float tensor on the model's device, [Preprocess] per image,
    [PIL image or None] per image). A tensor batch has no PIL images (None)."""
    if isinstance(images, torch.Tensor):
        info = getattr(model, "info", None)
        S = int(getattr(info, "input_size", images.shape[-1]))
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (S, S):
            raise ImageError(f"a tensor batch must be the normalised model input (B, 3, {S}, "
                             f"{S}), not {tuple(images.shape)}; pass images as a list instead",
                             R.UNSUPPORTED)
        if not images.is_floating_point():
            raise ImageError("a tensor batch must be the normalised float model input; pass "
                             "uint8 images as a list or a (B, H, W, 3) array", R.UNSUPPORTED)
        x = images.detach().to(model_device(model), torch.float32)
        mean, std = normalisation(info)
        return x, [Preprocess((S, S), S, "resize", None, mean, std)
                   for _ in range(x.shape[0])], [None] * x.shape[0]
    items = list(images)
    if not items:
        raise ImageError("the batch holds no image", R.UNSUPPORTED)
    pils, xs, pres = [], [], []
    for im in items:
        pil = load_image(im)
        x, pre = preprocess(model, pil, mode=mode)
        pils.append(pil)
        xs.append(x)
        pres.append(pre)
    return torch.cat(xs), pres, pils


def targets_for(target, n: int) -> list:
    """Per-image targets: [None] * n, [t] * n, or the given sequence (n of them)."""
    if target is None:
        return [None] * n
    if isinstance(target, torch.Tensor):
        target = target.reshape(-1).tolist()
    if isinstance(target, (list, tuple, np.ndarray)):
        t = [None if v is None else class_index(v) for v in target]
        if len(t) != n:
            raise AttnvizError(f"got {len(t)} targets for {n} images; give one per image, one "
                               "for all, or None for each image's predicted class")
        return t
    return [class_index(target)] * n


def chunks(n: int, batch_size: int):
    """Slices of at most ``batch_size`` covering range(n)."""
    if int(batch_size) < 1:
        raise AttnvizError("batch_size must be at least 1")
    return [slice(i, min(n, i + int(batch_size))) for i in range(0, n, int(batch_size))]


def pass_target(targets: list):
    """The target argument for one pass over these images: None when all are None (the top
    logit path), else a list (None entries must have been resolved first)."""
    if all(t is None for t in targets):
        return None
    if any(t is None for t in targets):
        raise AttnvizError("mixing None and class targets in one pass")  # resolved by callers
    return list(targets)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_paths(folder) -> list:
    """The image files directly in ``folder`` (by suffix), sorted by name."""
    from pathlib import Path
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"{folder} is not a folder", R.UNREADABLE)
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


__all__ = ["DEFAULT_BATCH", "as_input", "batch_size_of", "chunks", "image_paths",
           "is_batch", "pass_target", "targets_for", "load_image"]
