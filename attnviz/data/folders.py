"""Users' own images: a folder or a zip of class sub-folders (with optional ``masks/``), read into
a :class:`~attnviz.data.synthetic.ShapesData` with every guard a hostile upload needs (member
names, sizes, counts, decode limits)."""
from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError, ImageError
from .images import MAX_PIXELS, image_size, load_image
from .synthetic import IMAGE_EXTS, ShapesData

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


__all__ = ["load_image_folder"]
