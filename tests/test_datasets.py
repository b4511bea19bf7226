"""The synthetic shapes task (deterministic, masks exact, class only in the shape) and the image
folder / zip loader (layouts, masks, and refusal of unsafe or unusable uploads)."""
import io
import stat
import struct
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from attnviz.datasets import SHAPE_CLASSES, load_image_folder, make_shapes
from attnviz.errors import DatasetError

CHANCE = 1 / len(SHAPE_CLASSES)


# ------------------------------------------------------------------------------ make_shapes
def test_make_shapes_layout():
    d = make_shapes(12, seed=3, size=64)
    assert d.images.shape == (12, 64, 64, 3) and d.images.dtype == np.uint8
    assert d.masks.shape == (12, 64, 64) and d.masks.dtype == bool
    assert d.labels.shape == (12,) and d.labels.dtype == np.int64
    assert d.colors.shape == (12, 3) and d.boxes.shape == (12, 4)
    assert d.classes == SHAPE_CLASSES and len(d.classes) >= 6
    assert d.labels.min() >= 0 and d.labels.max() < len(d.classes)
    assert len(d) == 12 and d.meta["seed"] == 3


def test_make_shapes_deterministic_by_seed():
    a, b = make_shapes(16, seed=5, size=64), make_shapes(16, seed=5, size=64)
    for f in ("images", "labels", "masks", "colors", "boxes"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = make_shapes(16, seed=6, size=64)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.masks, c.masks)
    # every image differs, not only some
    assert all(not np.array_equal(a.images[i], c.images[i]) for i in range(16))


def test_make_shapes_pinned_output():
    """The shipped checkpoints were trained on exactly this distribution: any change to
    make_shapes' output (or to the pinned numpy / OpenCV it draws with) shows up here."""
    import hashlib
    d = make_shapes(50, seed=123)
    digest = hashlib.sha1(d.images.tobytes() + d.masks.tobytes() + d.labels.tobytes())
    assert digest.hexdigest() == "c0b1b984f7395718828d21b1bfd4536e841fdabe"


def test_make_shapes_indices_match_full_set():
    full = make_shapes(20, seed=9, size=64)
    idx = [17, 2, 11, 5]
    part = make_shapes(20, seed=9, size=64, indices=idx)
    for f in ("images", "labels", "masks", "colors", "boxes"):
        np.testing.assert_array_equal(getattr(part, f), getattr(full, f)[idx])
    sub = full.subset(idx)
    np.testing.assert_array_equal(sub.images, part.images)


@pytest.fixture(scope="module")
def sample():
    return make_shapes(240, seed=21)


def test_masks_match_pixels(sample):
    d = sample
    for i in range(len(d)):
        m = d.masks[i]
        assert m.any()
        # every mask pixel carries the target colour
        assert (d.images[i][m] == d.colors[i]).all(), i
        # one connected object (8-connectivity; the ring is an annulus, still one piece)
        n, _ = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        assert n == 2, (i, d.classes[d.labels[i]], n - 1)
        ys, xs = np.nonzero(m)
        assert tuple(d.boxes[i]) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_classes_balanced_and_sizes_in_range(sample):
    d = sample
    counts = np.bincount(d.labels, minlength=len(d.classes))
    assert counts.min() > 0.4 * len(d) / len(d.classes)
    side = np.maximum(d.boxes[:, 2] - d.boxes[:, 0], d.boxes[:, 3] - d.boxes[:, 1]) + 1
    assert side.min() >= 26 and side.max() <= 62


# ------------------------------------------------------------------------------ no shortcut
def _features(d):
    b = d.boxes.astype(np.float64)
    w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    area = d.masks.sum((1, 2)).astype(np.float64)
    colour = np.stack([d.images[i][d.masks[i]].mean(0) for i in range(len(d))])
    return {"cx": (b[:, 0] + b[:, 2]) / 2, "cy": (b[:, 1] + b[:, 3]) / 2, "w": w, "h": h,
            "area": area, "r": colour[:, 0], "g": colour[:, 1], "b": colour[:, 2],
            "fill": area / (w * h), "aspect": np.minimum(w, h) / np.maximum(w, h)}


def _standardise(x, xt):
    mu, sd = x.mean(0), x.std(0) + 1e-9
    return (x - mu) / sd, (xt - mu) / sd


def _logreg(x, y, xt, k, steps=400, lr=0.5, l2=1e-3):
    """Multinomial logistic regression by full-batch gradient descent (numpy only)."""
    x, xt = _standardise(x, xt)
    x, xt = np.c_[x, np.ones(len(x))], np.c_[xt, np.ones(len(xt))]
    w = np.zeros((x.shape[1], k))
    y1 = np.eye(k)[y]
    for _ in range(steps):
        z = x @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= lr * (x.T @ (p - y1) / len(x) + l2 * w)
    return (xt @ w).argmax(1)


def _nearest_mean(x, y, xt, k):
    x, xt = _standardise(x, xt)
    means = np.stack([x[y == c].mean(0) for c in range(k)])
    return ((xt[:, None] - means[None]) ** 2).sum(-1).argmin(1)


@pytest.fixture(scope="module")
def split():
    tr, te = make_shapes(1200, seed=31), make_shapes(600, seed=32)
    return _features(tr), tr.labels, _features(te), te.labels


def _acc(clf, split, names):
    f, y, ft, yt = split
    x = np.stack([f[n] for n in names], 1)
    xt = np.stack([ft[n] for n in names], 1)
    return float((clf(x, y, xt, len(SHAPE_CLASSES)) == yt).mean())


NUISANCE = ["cx", "cy", "w", "h", "r", "g", "b"]  # position, bounding-box size, colour


@pytest.mark.parametrize("clf", [_logreg, _nearest_mean], ids=["logreg", "nearest_mean"])
@pytest.mark.parametrize("names", [NUISANCE, ["cx", "cy"], ["w", "h"], ["r", "g", "b"],
                                   ["area"]], ids=["all", "position", "bbox", "colour", "area"])
def test_class_not_predictable_from_colour_position_size(split, clf, names):
    acc = _acc(clf, split, names)
    assert acc < CHANCE + 0.12, (names, acc)


def test_class_not_predictable_nearest_mean_with_area(split):
    # Position, bbox, area and colour together through a nearest-class-mean classifier. (Area
    # *relative to* the bounding box is the shape's fill ratio, a shape property: a linear model
    # on w, h and area together recovers part of it, which the next test shows on purpose.)
    acc = _acc(_nearest_mean, split, NUISANCE + ["area"])
    assert acc < CHANCE + 0.12, acc


def test_the_same_classifiers_do_see_shape(split):
    """Sanity: the test above can fail. Shape descriptors (mask area over bbox area, bbox aspect)
    are predictive through the very same classifiers."""
    for clf in (_logreg, _nearest_mean):
        acc = _acc(clf, split, ["fill", "aspect"])
        assert acc > CHANCE + 0.25, (clf.__name__, acc)


# ------------------------------------------------------------------------------ image folders
def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def small():
    return make_shapes(9, seed=41, size=64)


def _write_folder(root, d, mask_style="suffix", classes=None):
    """Class sub-folders of PNGs from ``d``; masks as <stem>_mask.png or masks/<stem>.png."""
    names = classes or d.classes
    files = []
    for i in range(len(d)):
        cdir = root / names[d.labels[i]]
        cdir.mkdir(parents=True, exist_ok=True)
        (cdir / f"img{i:03d}.png").write_bytes(_png(d.images[i]))
        files.append((d.labels[i], i))
        m = d.masks[i].astype(np.uint8) * 255
        if mask_style == "suffix":
            (cdir / f"img{i:03d}_mask.png").write_bytes(_png(m))
        elif mask_style == "subdir":
            (cdir / "masks").mkdir(exist_ok=True)
            (cdir / "masks" / f"img{i:03d}.png").write_bytes(_png(m))
    return files


def _expected_order(d, classes):
    """Dataset order: classes sorted by name, files sorted within a class."""
    present = sorted({classes[c] for c in d.labels})
    order = []
    for name in present:
        order += [i for i in range(len(d)) if classes[d.labels[i]] == name]
    return present, order


@pytest.mark.parametrize("mask_style", ["suffix", "subdir"])
def test_load_image_folder_with_masks(tmp_path, small, mask_style):
    _write_folder(tmp_path, small, mask_style)
    (tmp_path / small.classes[small.labels[0]] / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, size=64)
    present, order = _expected_order(small, small.classes)
    assert data.classes == present
    assert data.images.shape == (len(small), 64, 64, 3)
    np.testing.assert_array_equal(data.images, small.images[order])
    np.testing.assert_array_equal(data.masks, small.masks[order])
    assert [data.classes[c] for c in data.labels] == [small.classes[small.labels[i]]
                                                      for i in order]
    assert "has_mask" not in data.meta and len(data.meta["files"]) == len(small)


def test_load_image_folder_resizes_and_partial_masks(tmp_path, small):
    _write_folder(tmp_path, small, mask_style=None)
    # one mask only: the others are empty and flagged
    first = sorted(tmp_path.glob("*/img*.png"))[0]
    big = cv2.resize(np.full((64, 64), 255, np.uint8), (100, 80))
    Image.fromarray(cv2.resize(np.asarray(Image.open(first)), (100, 80))).save(first)
    Image.fromarray(big).save(first.with_name(first.stem + "_mask.png"))
    data = load_image_folder(tmp_path, size=32)
    assert data.images.shape[1:] == (32, 32, 3) and data.masks.shape[1:] == (32, 32)
    assert data.meta["has_mask"].sum() == 1 and data.masks[data.meta["has_mask"]].all()
    assert not data.masks[~data.meta["has_mask"]].any()
    sub = data.subset([0, 1])
    assert len(sub.meta["files"]) == 2 and sub.meta["has_mask"].shape == (2,)


def test_load_image_folder_without_masks(tmp_path, small):
    _write_folder(tmp_path, small, mask_style=None)
    data = load_image_folder(tmp_path, size=64)
    assert data.masks is None and len(data) == len(small)


def _zip_folder(folder, zpath, prefix=""):
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return zpath


def test_load_zip_with_masks(tmp_path, small):
    src = tmp_path / "src"
    _write_folder(src, small, "subdir")
    present, order = _expected_order(small, small.classes)
    for prefix in ("", "mydata/"):  # class folders at the top, or inside one wrapping folder
        z = _zip_folder(src, tmp_path / f"d{len(prefix)}.zip", prefix)
        data = load_image_folder(z, size=64)
        assert data.classes == present and data.meta["source"] == "zip"
        np.testing.assert_array_equal(data.images, small.images[order])
        np.testing.assert_array_equal(data.masks, small.masks[order])
    # a folder holding the same zip's content loads identically
    folder = load_image_folder(src, size=64)
    np.testing.assert_array_equal(folder.images, data.images)


def _zip_with(tmp_path, members, name="x.zip"):
    """members: [(ZipInfo or name, bytes)]"""
    z = tmp_path / name
    with zipfile.ZipFile(z, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return z


def _valid_members(small):
    return [(f"{small.classes[small.labels[i]]}/img{i}.png", _png(small.images[i]))
            for i in range(4)]


def _refused(path, match, **kw):
    with pytest.raises(DatasetError, match=match):
        load_image_folder(path, size=64, **kw)


def test_zip_refuses_path_traversal(tmp_path, small):
    work = tmp_path / "work"
    work.mkdir()
    z = _zip_with(work, _valid_members(small) + [("circle/../../evil.txt", b"x")])
    _refused(z, r"'\.\.'")
    z = _zip_with(work, _valid_members(small) + [("../evil.txt", b"x")], "y.zip")
    _refused(z, r"'\.\.'")
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()


def test_zip_refuses_absolute_paths(tmp_path, small):
    for name in ("/tmp/attnviz_evil.txt", "C:/evil.txt", "\\evil.txt"):
        z = _zip_with(tmp_path, _valid_members(small) + [(zipfile.ZipInfo(name), b"x")])
        _refused(z, "absolute path")


def test_zip_refuses_symlinks_and_special_files(tmp_path, small):
    link = zipfile.ZipInfo("circle/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = _zip_with(tmp_path, _valid_members(small) + [(link, b"/etc/passwd")])
    _refused(z, "symbolic link")
    fifo = zipfile.ZipInfo("circle/pipe")
    fifo.create_system = 3
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    z = _zip_with(tmp_path, _valid_members(small) + [(fifo, b"")], "f.zip")
    _refused(z, "not a regular file")


def test_zip_refuses_too_many_files(tmp_path, small):
    z = _zip_with(tmp_path, _valid_members(small))
    assert len(load_image_folder(z, size=64, max_files=4)) == 4
    _refused(z, "at most 3", max_files=3)


def test_zip_refuses_too_many_bytes(tmp_path, small):
    members = _valid_members(small)
    total = sum(len(b) for _, b in members)
    z = _zip_with(tmp_path, members)
    assert len(load_image_folder(z, size=64, max_bytes=total)) == 4
    _refused(z, "MB", max_bytes=total - 1)
    # a highly compressible member (a zip bomb in miniature) counts by its unpacked size
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        zf.writestr("circle/zeros.bin", b"\0" * 2_000_000)
    assert bomb.stat().st_size < 100_000
    _refused(bomb, "MB", max_bytes=1_000_000)


def test_zip_refuses_understated_sizes(tmp_path, small):
    """Headers that declare fewer bytes than a member holds are not trusted."""
    z = tmp_path / "forged.zip"
    payload = b"A" * 50_000
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        for name, data in _valid_members(small):
            zf.writestr(name, data)
        zf.writestr("circle/big.bin", payload)
    raw = bytearray(z.read_bytes())
    # patch the uncompressed size (local header offset 22, central directory offset 24)
    size = struct.pack("<I", len(payload))
    small_size = struct.pack("<I", 10)
    n = 0
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := raw.find(sig, start)) >= 0:
            if raw[i + off:i + off + 4] == size:
                raw[i + off:i + off + 4] = small_size
                n += 1
            start = i + 4
    assert n == 2
    z.write_bytes(bytes(raw))
    with pytest.raises(DatasetError):
        load_image_folder(z, size=64, max_bytes=40_000)


def test_refuses_non_zip_files(tmp_path, small):
    txt = tmp_path / "data.zip"
    txt.write_text("hello, not a zip")
    _refused(txt, "not a zip archive")
    png = tmp_path / "one.png"
    png.write_bytes(_png(small.images[0]))
    _refused(png, "not a zip archive")
    _refused(tmp_path / "missing", "no such file")


def test_refuses_single_class_and_empty(tmp_path, small):
    one = tmp_path / "one"
    (one / "circle").mkdir(parents=True)
    for i in range(3):
        (one / "circle" / f"{i}.png").write_bytes(_png(small.images[i]))
    _refused(one, "at least 2 class")
    z = _zip_folder(one, tmp_path / "one.zip")
    _refused(z, "at least 2 class")
    loose = tmp_path / "loose"
    loose.mkdir()
    for i in range(3):
        (loose / f"{i}.png").write_bytes(_png(small.images[i]))
    _refused(loose, "sub-folder per class")
    (one / "square").mkdir()
    _refused(one, "hold no images")
    empty_zip = _zip_with(tmp_path, [], "empty.zip")
    _refused(empty_zip, "at least 2 class")


def test_corrupt_image_named_in_error(tmp_path, small):
    _write_folder(tmp_path, small, None)
    bad = sorted(tmp_path.glob("*/img*.png"))[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=bad.name):
        load_image_folder(tmp_path, size=64)
