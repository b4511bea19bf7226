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

import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import DatasetError
from ..errors import ImageError
from .images import MAX_PIXELS, image_size, load_image

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


# ------------------------------------------------------------------------------------------------
# users' own images: a folder or a zip of class sub-folders
# ------------------------------------------------------------------------------------------------
_SKIP_DIRS = {"__MACOSX", "masks"}
_CHUNK = 1 << 20
_NAME_MAX = 255  # bytes in one file or folder name (most file systems)


def _quote(name: str, limit: int = 100) -> str:
    """A member name for a message, cut to ``limit`` characters."""
    return repr(name) if len(name) <= limit else repr(name[:limit]) + f"... ({len(name)} chars)"


def _clashes(infos) -> str | None:
    """A member name used both as a file and as a folder (``cat`` and ``cat/1.png``), or twice."""
    files, dirs = set(), set()
    for info in infos:
        parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p not in ("", "."))
        if not parts:
            continue
        for i in range(1, len(parts)):
            dirs.add(parts[:i])
        if info.is_dir():
            dirs.add(parts)
        elif parts in files:
            return f"{_quote('/'.join(parts))} appears twice"
        else:
            files.add(parts)
    both = files & dirs
    if both:
        return f"{_quote('/'.join(min(both)))} is both a file and a folder"
    return None


def load_image_folder(path_or_zip, size: int = 128, max_files: int = 20000,
                      max_bytes: int = 500 * 2**20, max_image_pixels: int | None = None,
                      max_total_pixels: int | None = None, progress=None) -> ShapesData:
    """Read a folder or a zip of class sub-folders (layout in the module docstring).

    Every image is read with :func:`attnviz.preprocess.load_image` (any format it accepts) and
    resized to ``size`` x ``size`` (bilinear, as :func:`attnviz.preprocess.preprocess` does); masks
    (non-zero = object) are resized with nearest neighbours. Classes are the sub-folder names in
    sorted order; hidden entries, ``__MACOSX`` and files that are not images are ignored. A zip
    (or folder) whose only entry is one folder holding the class folders is read from that folder.

    ``masks`` is None when no image has a mask; when only some do, the others get an empty mask
    and ``meta["has_mask"]`` (N,) tells which are real. ``meta["files"]`` lists the images' paths
    relative to the dataset root.

    Limits: at most ``max_files`` images (and zip members); a zip may hold at most ``max_bytes``
    uncompressed; each image (and mask) at most ``max_image_pixels`` (default: the analysis limit,
    :data:`attnviz.preprocess.MAX_PIXELS`) and all of them together at most ``max_total_pixels``
    (default: no total limit). Pixel limits are checked on every file's header before any image
    is decoded. Raises :class:`DatasetError` for anything unusable.

    progress: called with {"stage": "unzip" | "check" | "read", "done", "total"} after every zip
    member, header and image; an exception it raises stops the reading there (a cancelled
    request), and the temporary folder is removed.
    """
    if size < 8:
        raise DatasetError("size must be at least 8 px")
    path = Path(path_or_zip).expanduser()
    if not path.exists():
        raise DatasetError(f"no such file or folder: {path}")
    limits = dict(max_image_pixels=max_image_pixels, max_total_pixels=max_total_pixels,
                  progress=progress)
    if path.is_dir():
        data = _read_class_folders(path, size, max_files, **limits)
        data.meta.update(source="image folder", path=str(path))
        return data
    if not path.is_file():
        raise DatasetError(f"{path.name} is neither a folder nor a regular file")
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path.name} is not a zip archive; upload a .zip of class folders "
                           "(e.g. cat/001.jpg, dog/002.jpg) or give a folder")
    with tempfile.TemporaryDirectory(prefix="attnviz_zip_") as tmp:
        _safe_extract(path, Path(tmp), max_files, max_bytes, progress)
        data = _read_class_folders(Path(tmp), size, max_files, **limits)
    data.meta.update(source="zip", path=str(path))
    return data


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be extracted, or None when it is safe."""
    name = info.filename
    if "\x00" in name:
        return "has a NUL character in its name"
    drive = len(name) > 1 and name[0].isalpha() and name[1] == ":"
    if name.startswith(("/", "\\")) or drive:
        return "has an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "has a '..' path component (it would be written outside the target folder)"
    if any(len(p.encode("utf-8", "surrogateescape")) > _NAME_MAX for p in parts):
        return f"has a file or folder name longer than {_NAME_MAX} bytes"
    mode = (info.external_attr >> 16) & 0xFFFF
    ftype = stat.S_IFMT(mode)
    if ftype and stat.S_ISLNK(mode):
        return "is a symbolic link"
    if ftype and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "is not a regular file or folder (device, pipe or socket)"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def _safe_extract(zip_path: Path, dest: Path, max_files: int, max_bytes: int,
                  progress=None) -> None:
    """Check every member of ``zip_path`` first, then extract into ``dest`` counting bytes."""
    mb = max_bytes / 2**20
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{zip_path.name} could not be opened as a zip archive ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise DatasetError(f"{zip_path.name} has {len(infos)} entries; at most {max_files} "
                               "are accepted. Upload fewer images")
        declared = 0
        for info in infos:
            why = _zip_member_problem(info)
            if why:
                raise DatasetError(f"{zip_path.name}: member {_quote(info.filename)} {why}; such "
                                   "archives are refused. Zip the class folders themselves")
            declared += info.file_size
        if declared > max_bytes:
            raise DatasetError(f"{zip_path.name} unpacks to {declared / 2**20:.1f} MB; at most "
                               f"{mb:.0f} MB are accepted. Upload fewer or smaller images")
        clash = _clashes(infos)
        if clash:
            raise DatasetError(f"{zip_path.name}: {clash}; such archives are refused. Zip the "
                               "class folders themselves")
        root = dest.resolve()
        total = 0
        for k, info in enumerate(infos):
            if progress is not None:
                progress({"stage": "unzip", "done": k, "total": len(infos)})
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
            if not parts:
                continue
            target = root.joinpath(*parts)
            if root not in target.resolve().parents:
                raise DatasetError(f"{zip_path.name}: member {_quote(info.filename)} would be "
                                   "written outside the target folder; refused")
            written = 0
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        written += len(chunk)
                        total += len(chunk)
                        if total > max_bytes:
                            raise DatasetError(
                                f"{zip_path.name} unpacks to more than {mb:.0f} MB (its headers "
                                "understate the sizes); refused. Upload fewer or smaller images")
                        if written > info.file_size:
                            raise DatasetError(f"{zip_path.name}: member "
                                               f"{_quote(info.filename)} is larger than its "
                                               "header says; refused")
                        out.write(chunk)
            except DatasetError:
                raise
            except OSError as e:  # the message names the member, never the server's folder
                raise DatasetError(f"{zip_path.name}: member {_quote(info.filename)} could not be "
                                   f"extracted ({e.strerror or type(e).__name__})") from None
            except (zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as e:
                raise DatasetError(f"{zip_path.name}: member {_quote(info.filename)} could not be "
                                   f"extracted ({e})") from None


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name not in _SKIP_DIRS


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _dataset_root(root: Path) -> Path:
    """Descend through single wrapping folders (``data.zip`` -> ``data/cat/...``)."""
    for _ in range(8):
        entries = [p for p in root.iterdir() if _visible(p)]
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) == 1 and not any(_is_image(p) for p in entries) and \
                any(q.is_dir() and _visible(q) for q in dirs[0].iterdir()):
            root = dirs[0]
        else:
            break
    return root


def _find_mask(img: Path) -> Path | None:
    stem = img.stem
    for cand in [img.with_name(f"{stem}_mask{ext}") for ext in (".png", ".PNG")] + \
                [img.parent / "masks" / f"{stem}{ext}" for ext in (".png", ".PNG")]:
        if cand.is_file():
            return cand
    return None


def _read_class_folders(root: Path, size: int, max_files: int, max_image_pixels=None,
                        max_total_pixels=None, progress=None) -> ShapesData:
    from PIL import Image


    max_image_pixels = int(max_image_pixels or MAX_PIXELS)

    root = _dataset_root(root)
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and _visible(p)),
                        key=lambda p: p.name)
    loose = [p.name for p in root.iterdir() if _is_image(p)]
    per_class = []
    for d in class_dirs:
        files = sorted((p for p in d.iterdir()
                        if _is_image(p) and not p.stem.endswith("_mask")), key=lambda p: p.name)
        per_class.append((d.name, files))
    empty = [name for name, files in per_class if not files]
    if empty:
        raise DatasetError(f"class folder(s) {empty} hold no images; remove them or add images "
                           f"({', '.join(sorted(IMAGE_EXTS))})")
    if len(per_class) < 2:
        hint = (f" ({len(loose)} images lie directly in the top folder; put them into one "
                "sub-folder per class)" if loose else "")
        found = [name for name, _ in per_class]
        raise DatasetError(f"need at least 2 class sub-folders with images each, found "
                           f"{len(per_class)} {found}{hint}. Layout: data/cat/001.jpg, "
                           "data/dog/002.jpg, ...")
    n = sum(len(files) for _, files in per_class)
    if n > max_files:
        raise DatasetError(f"the dataset has {n} images; at most {max_files} are accepted")
    # every header first: a set too large to decode is refused before anything is decoded
    pixels, k = 0, 0
    for _, files in per_class:
        for f in files:
            for p in (f, _find_mask(f)):
                if p is None:
                    continue
                try:
                    w, h = image_size(p, max_image_pixels)
                except ImageError as e:
                    what = "mask " if p is not f else ""
                    raise DatasetError(f"{what}{p.relative_to(root).as_posix()}: {e}") from None
                pixels += w * h
            k += 1
            if max_total_pixels and pixels > max_total_pixels:
                raise DatasetError(
                    f"the images hold more than {max_total_pixels / 1e6:g} megapixels in all "
                    f"({pixels / 1e6:.0f} MP in the first {k} of {n}); they are resized to "
                    f"{size} x {size} px anyway, so downscale them (e.g. to 512 px) and upload "
                    "again")
            if progress is not None:
                progress({"stage": "check", "done": k, "total": n})
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), bool)
    has_mask = np.zeros(n, bool)
    labels = np.empty(n, np.int64)
    names = []
    j = 0
    for c, (_cname, files) in enumerate(per_class):
        for f in files:
            rel = f.relative_to(root).as_posix()
            try:
                pil = load_image(f, max_image_pixels)
            except ImageError as e:
                raise DatasetError(f"{rel}: {e}") from None
            images[j] = np.asarray(pil.resize((size, size), Image.BILINEAR))
            mpath = _find_mask(f)
            if mpath is not None:
                mrel = mpath.relative_to(root).as_posix()
                try:
                    m = np.asarray(load_image(mpath, max_image_pixels)).max(-1) > 0
                except ImageError as e:
                    raise DatasetError(f"mask {mrel}: {e}") from None
                if m.shape != (pil.height, pil.width):
                    raise DatasetError(f"mask {mrel} is {m.shape[1]} x {m.shape[0]} but its "
                                       f"image is {pil.width} x {pil.height}; they must match")
                masks[j] = cv2.resize(m.astype(np.uint8), (size, size),
                                      interpolation=cv2.INTER_NEAREST).astype(bool)
                has_mask[j] = True
            labels[j] = c
            names.append(rel)
            j += 1
            if progress is not None:
                progress({"stage": "read", "done": j, "total": n})
    meta = {"n": n, "size": int(size), "files": names,
            "images_per_class": {cname: len(files) for cname, files in per_class}}
    if has_mask.all():
        out_masks = masks
    elif has_mask.any():
        out_masks = masks
        meta["has_mask"] = has_mask
    else:
        out_masks = None
    return ShapesData(images, labels, out_masks, [name for name, _ in per_class], meta=meta)


TEST_SEED = 424_242  # evaluation default: never used by training or validation


def to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


__all__ = ["IMAGE_EXTS", "SHAPE_CLASSES", "ShapesData", "TEST_SEED", "load_image_folder",
           "make_shapes", "to_tensor", "with_classes"]
