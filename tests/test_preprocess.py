"""load_image reads every PIL mode and input type a person may hand us and refuses broken or
dangerous files with a clear ImageError; preprocess records the geometry that takes maps back."""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import attnviz
from attnviz.errors import ImageError
from attnviz.data.images import Preprocess, gaussian_blur, load_image, make_baseline, preprocess


def _rgb(w=40, h=30):
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
    a[..., 1] = 100
    a[: h // 2, : w // 2, 2] = 200
    return a


def _check(img, size):
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == size
    assert np.asarray(img).dtype == np.uint8


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "CMYK", "YCbCr", "I", "F", "LAB", "HSV"])
def test_modes_convert_to_rgb(mode):
    img = Image.fromarray(_rgb()).convert(mode)
    _check(load_image(img), (40, 30))


def test_rgba_and_la_composite_on_white():
    a = np.zeros((30, 40, 4), np.uint8)
    a[..., 0] = 255
    a[:, :20, 3] = 255  # left half opaque red, right half fully transparent
    out = np.asarray(load_image(Image.fromarray(a, "RGBA")))
    assert (out[:, :20] == [255, 0, 0]).all() and (out[:, 20:] == 255).all()
    la = Image.fromarray(a[..., [1, 3]], "LA")
    out = np.asarray(load_image(la))
    assert (out[:, :20] == 0).all() and (out[:, 20:] == 255).all()
    assert (np.asarray(load_image(a))[:, 20:] == 255).all()  # RGBA arrays too


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (20, 20), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, 10, 20))
    p.info["transparency"] = 0  # index 0 (black) transparent -> white
    path = tmp_path / "p.png"
    p.save(path, transparency=0)
    out = np.asarray(load_image(path))
    assert (out[:, :10] == [255, 0, 0]).all() and (out[:, 10:] == 255).all()


def test_16_bit(tmp_path):
    a = (np.linspace(0, 65535, 64 * 16).reshape(16, 64)).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out.shape == (16, 64, 3)
    assert out[..., 0].max() == 255 and out[..., 0].min() == 0
    np.testing.assert_allclose(out[..., 0].astype(float), a / 257.0, atol=1)
    assert np.asarray(load_image(a)).max() == 255  # uint16 arrays


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "c.jpg"
    Image.fromarray(_rgb()).convert("CMYK").save(path)
    _check(load_image(path), (40, 30))


def test_exif_orientation(tmp_path):
    img = Image.fromarray(_rgb(40, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    out = load_image(path)
    assert out.size == (30, 40)
    # the top-left of the stored image (blue quarter) ends up top-right
    a = np.asarray(out).astype(int)
    assert a[2, -3, 2] > 150 and a[2, 2, 2] < 60


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    out = np.asarray(load_image(path))
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def test_inputs_of_every_type(tmp_path):
    a = _rgb()
    path = tmp_path / "x.png"
    Image.fromarray(a).save(path)
    for src in (a, a[..., 0], a.astype(np.float32) / 255, str(path), path, path.read_bytes(),
                io.BytesIO(path.read_bytes()), Image.fromarray(a)):
        _check(load_image(src), (40, 30))
    assert (np.asarray(load_image(str(path))) == a).all()


def _png_claiming(w, h) -> bytes:
    """A PNG whose header claims w x h pixels (its data is a few bytes)."""
    raw = io.BytesIO()
    Image.new("L", (8, 8)).save(raw, "PNG")
    data = bytearray(raw.getvalue())
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("w,h", [(8000, 6000), (20000, 20000)])
def test_decompression_bomb_refused(tmp_path, w, h):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(w, h))
    with pytest.raises(ImageError, match="megapixels"):
        load_image(path)


def test_pixel_limit_is_settable():
    with pytest.raises(ImageError, match="limit"):
        load_image(_rgb(), max_pixels=100)


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"hello, not an image", "not an image"),
                                           (None, "truncated|corrupt")])
def test_broken_files(tmp_path, content, match):
    path = tmp_path / "bad.png"
    if content is None:  # a real PNG cut in half
        buf = io.BytesIO()
        Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)).save(
            buf, "PNG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match):
        load_image(path)
    if match.startswith("truncated"):  # also when the caller opened it lazily with PIL
        with Image.open(path) as lazy, pytest.raises(ImageError, match=match):
            load_image(lazy)


def test_bad_inputs():
    with pytest.raises(ImageError, match="no such file"):
        load_image("/nonexistent/x.png")
    with pytest.raises(ImageError, match="at least"):
        load_image(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="HxW"):
        load_image(np.zeros((3, 10, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="cannot read"):
        load_image(12)


def test_preprocess_resize_and_geometry():
    model = attnviz.create_model("lite_resnet")
    x, pre = preprocess(model, _rgb(150, 100))
    assert x.shape == (1, 3, 128, 128) and x.dtype == torch.float32
    assert pre.original_size == (150, 100) and pre.mode == "resize"
    assert pre.crop_box == (0.0, 0.0, 150.0, 100.0)
    m = torch.zeros(16, 16)
    m[:, :8] = 1  # left half of the input grid = left half of the image
    full = pre.to_image(m)
    assert full.shape == (100, 150)
    assert full[:, :70].min() > 0.99 and full[:, 80:].max() < 0.01
    back = pre.to_input(full)
    assert back.shape == (128, 128) and back[:, :60].min() > 0.99
    # normalisation: a mid-grey image becomes (0.5 - mean) / std
    g, _ = preprocess(model.info, np.full((20, 20, 3), 128, np.uint8))
    expect = (128 / 255 - np.asarray(model.info.mean)) / np.asarray(model.info.std)
    np.testing.assert_allclose(g[0, :, 5, 5].numpy(), expect, rtol=1e-5)


def test_preprocess_center_crop():
    info = attnviz.create_model("lite_resnet").info
    x, pre = preprocess(info, _rgb(300, 150), mode="center_crop")
    assert x.shape == (1, 3, 128, 128) and pre.mode == "center_crop"
    left, top, right, bottom = pre.crop_box
    # short side 150 -> 146 (= 128 * 256 / 224), then the central 128 x 128
    assert bottom - top == pytest.approx(128 * 150 / 146, abs=0.5) == right - left
    assert (top + bottom) / 2 == pytest.approx(75, abs=1)
    assert (left + right) / 2 == pytest.approx(150, abs=1)
    full = pre.to_image(torch.ones(16, 16))
    assert full.shape == (150, 300)
    assert full[:, :int(left) - 1].max() == 0 and full[:, int(right) + 1:].max() == 0
    assert full[:int(top) - 1].max() == 0 and full[int(bottom) + 1:].max() == 0
    assert full[int(top) + 2:int(bottom) - 2, int(left) + 2:int(right) - 2].min() > 0.99
    with pytest.raises(ImageError, match="mode"):
        preprocess(info, _rgb(), mode="squash")


def test_baselines_and_blur():
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(make_baseline(x, "mean"), torch.zeros_like(x))
    black = make_baseline(x, "black")
    assert torch.allclose(black[0, :, 0, 0], -torch.tensor([0.485, 0.456, 0.406]) /
                          torch.tensor([0.229, 0.224, 0.225]))
    b = gaussian_blur(x, 2.0)
    assert b.shape == x.shape and b.std() < x.std()
    const = torch.full((1, 3, 16, 16), 0.7)
    assert torch.allclose(gaussian_blur(const, 3.0), const, atol=1e-6)
    with pytest.raises(ImageError):
        make_baseline(x, "purple")


def test_preprocess_dataclass_defaults():
    pre = Preprocess((50, 40), 128)
    assert pre.crop_box == (0.0, 0.0, 50.0, 40.0) and pre.image_hw == (40, 50)
    assert pre.point_to_input(25, 20) == (0.5, 0.5)
