"""Decode guards of the one image opener (attnviz.preprocess): the formats accepted are checked
from the header before anything decodes, and a JPEG's decoding work is bounded from its markers
(issue 17: progressive-JPEG CPU bomb, formats that decode while opening)."""
from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from bad_inputs import ico_bomb, progressive_jpeg_bomb
from PIL import Image

from attnviz.errors import DatasetError, ImageError
from attnviz.data.images import MAX_JPEG_SCANS, image_size, jpeg_scans, load_image


def _jpeg(size=(320, 240), **kw) -> bytes:
    rng = np.random.default_rng(0)
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        b, "JPEG", **kw)
    return b.getvalue()


@pytest.mark.parametrize("kw,scans", [({}, 1), ({"progressive": True}, 10),
                                      ({"progressive": True, "comment": b"\xff\xda" * 40}, 10),
                                      ({"exif": Image.Exif().tobytes(), "progressive": True}, 10)])
def test_scans_are_counted_from_the_markers(kw, scans):
    """Baseline 1, progressive 10 (libjpeg's script), marker bytes inside a comment segment not
    counted; the count agrees with what the file holds and the image still loads."""
    data = _jpeg(**kw)
    assert jpeg_scans(data) == scans
    assert load_image(data).size == (320, 240)


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_progressive_bomb_is_refused_before_decoding(tmp_path):
    """1000 repeated scans over a 4-megapixel image (2.4 MB; a decoder goes over the image 1000
    times) are refused from the markers, as bytes, a file, a header check and a zip member."""
    bomb = progressive_jpeg_bomb(2000, 2000, repeats=100)
    assert jpeg_scans(bomb) == 1000
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bomb)
    for read in (lambda: load_image(bomb), lambda: load_image(path),
                 lambda: image_size(bomb), lambda: image_size(path)):
        t = time.process_time()  # CPU of this process: decoding would show, load would not
        with pytest.raises(ImageError, match=f"more than {MAX_JPEG_SCANS} scans"):
            read()
        assert time.process_time() - t < 0.3
    # the budget is scans x megapixels: 20 scans are fine at 4 MP, not at 64 MP
    assert load_image(progressive_jpeg_bomb(400, 400, repeats=2)).size == (400, 400)
    with pytest.raises(ImageError, match="more than 15 scans"):
        image_size(progressive_jpeg_bomb(8000, 8000, repeats=2), max_pixels=100_000_000)
    from attnviz.datasets import load_image_folder
    zpath = tmp_path / "set.zip"
    ok = _jpeg((40, 40))
    with zipfile.ZipFile(zpath, "w") as z:
        for i in range(3):
            z.writestr(f"d/a/{i}.jpg", ok)
            z.writestr(f"d/b/{i}.jpg", ok)
        z.writestr("d/b/bomb.jpg", bomb)
    with pytest.raises(DatasetError, match="bomb.jpg: the JPEG holds more than 100 scans"):
        load_image_folder(zpath)


@pytest.mark.parametrize("fmt", ["ICO", "ICNS_like", "PSD_like"])
def test_only_listed_formats_are_opened(fmt, tmp_path):
    """An .ico wrapping a 169-megapixel PNG is refused from its header (Pillow would decode it
    while opening: seconds and +500 MB), as is any format outside the list."""
    if fmt == "ICO":
        data = ico_bomb(13000, 13000)
    elif fmt == "ICNS_like":
        data = b"icns" + (8 + 8).to_bytes(4, "big") + b"ic08" + (8).to_bytes(4, "big")
    else:
        b = io.BytesIO()
        Image.new("RGB", (32, 32)).save(b, "PCX")  # a format Pillow reads, not accepted here
        data = b.getvalue()
    for read in (lambda: load_image(data), lambda: image_size(data)):
        t = time.process_time()  # CPU of this process: decoding would show, load would not
        with pytest.raises(ImageError, match="PNG, JPEG, GIF, BMP, TIFF or WebP"):
            read()
        assert time.process_time() - t < 0.3
    for fmt_ok in ("PNG", "GIF", "BMP", "TIFF", "WEBP"):
        b = io.BytesIO()
        Image.new("RGB", (32, 24), (10, 200, 30)).save(b, fmt_ok)
        assert load_image(b.getvalue()).getpixel((5, 5))[1] > 150
