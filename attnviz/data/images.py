"""Read any image a person may hand us, and turn it into the model's input tensor.

    pil = load_image("photo.png")            # PIL RGB, EXIF-rotated, alpha on white
    x, pre = preprocess(model, pil)          # (1, 3, S, S) on the model's device, geometry
    full = pre.to_image(low_res_map)         # a map on the input grid -> (H, W) at image size

Geometry. ``mode="resize"`` (the default) resizes the whole image to S x S, so every map covers
the whole image; ``mode="center_crop"`` resizes the short side to ``info.resize`` and crops the
centre S x S, as ImageNet evaluation does (``crop_box`` records the crop in image pixels; maps are
0 outside it).
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.nn import functional as F

from ..errors import ImageError
from ..errors import ImageReason as R

from ..models.info import IMAGENET_MEAN, IMAGENET_STD, info_of  # noqa: F401 - re-exported


def normalisation(model_or_info) -> tuple[tuple, tuple]:
    """(mean, std) a model (or its ``info``) normalises inputs with; ImageNet's by default."""
    info = getattr(model_or_info, "info", model_or_info)
    if isinstance(info, torch.nn.Module):  # any module: what attnviz.describe() set, if anything
        info = info_of(info)
    return (tuple(getattr(info, "mean", None) or IMAGENET_MEAN),
            tuple(getattr(info, "std", None) or IMAGENET_STD))

MAX_PIXELS = 40_000_000  # larger images are refused (decompression-bomb guard)
MIN_SIDE = 8
# the formats an image file may be in: each is identified from its header, and none decodes
# pixels while it is opened (ICO, ICNS, ... do: refused before Pillow reads past the header)
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF or WebP"
# a JPEG's decoding work grows with its scans (a progressive file may repeat thousands of them
# over the whole image): counted from the markers before decoding
MAX_JPEG_SCANS = 100
MAX_SCAN_MEGAPIXELS = 1000  # scans x megapixels
MODES = ("resize", "center_crop")

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


# --------------------------------------------------------------------------------- load_image
def load_image(image, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Return ``image`` as a loaded PIL image in RGB mode.

    Accepts a PIL image, an HxW or HxWx3 (or x4) numpy array (uint8; uint16 and floats in [0, 1]
    are scaled), a file path, bytes, or a binary file object. EXIF orientation is applied,
    transparency is composited on white, 16-bit images are scaled to 8 bits, CMYK and palette
    images are converted, animated images give their first frame.

    Raises :class:`attnviz.errors.ImageError` for an empty, unreadable or truncated file, an image
    over ``max_pixels`` or smaller than 8 x 8 pixels, or an input of an unsupported type.
    """
    if isinstance(image, Image.Image):
        _check_size(image.size, max_pixels)
        try:
            image.load()  # a lazily opened image decodes here
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"the image could not be decoded; it may be truncated or corrupt "
                             f"({e})", R.UNDECODABLE) from None
        return _to_rgb(image)
    if isinstance(image, np.ndarray):
        return _to_rgb(_from_array(image, max_pixels))
    if isinstance(image, (str, os.PathLike)):
        return _open(Path(image), max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise ImageError("the uploaded image is empty (0 bytes)", R.UNREADABLE)
        return _open_stream(io.BytesIO(bytes(image)), "the uploaded data", max_pixels)
    if hasattr(image, "read"):
        return _open_stream(image, "the uploaded file", max_pixels)
    raise ImageError(f"cannot read an image from a {type(image).__name__}; pass a PIL image, an "
                     "HxWx3 uint8 array or a file path", R.UNSUPPORTED)


def image_size(image, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(W, H) of an image file, bytes or binary stream, read from its header only (nothing is
    decoded), after the same checks :func:`load_image` makes before decoding: readable format,
    at most ``max_pixels``, at least 8 x 8. Raises :class:`attnviz.errors.ImageError`."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise ImageError("the uploaded image is empty (0 bytes)", R.UNREADABLE)
        stream, name = io.BytesIO(bytes(image)), "the uploaded data"
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageError(f"no such file: {_short(str(path))}", R.UNREADABLE)
        stream, name = open(path, "rb"), path.name
    else:
        stream, name = image, "the uploaded file"
    try:
        with _read_errors(name, max_pixels, "read"), _open_checked(stream, max_pixels) as img:
            return img.size
    finally:
        if isinstance(image, (str, os.PathLike)):
            stream.close()


@contextlib.contextmanager
def _read_errors(name: str, max_pixels: int, step: str):
    """PIL's failures while opening (``step`` "read") or decoding ("decoded") ``name`` as one
    clear ImageError each; attnviz's own ImageErrors pass through."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name} is too large to open safely ({e}); the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels", R.TOO_LARGE) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image format that can be read (it must be a "
                         f"{FORMAT_NAMES} file)", R.NOT_AN_IMAGE) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name} could not be {step}; it may be truncated or corrupt ({e})",
                         R.UNDECODABLE) from None


def _short(s: str, limit: int = 120) -> str:
    """``s`` cut to ``limit`` characters (user input echoed in a message stays small)."""
    return s if len(s) <= limit else f"{s[:limit]}... ({len(s)} characters)"


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise ImageError(f"no such file: {_short(str(path))}", R.UNREADABLE)
    if path.is_dir():
        raise ImageError(f"{_short(str(path))} is a folder, not an image file", R.UNREADABLE)
    if path.stat().st_size == 0:
        raise ImageError(f"{path.name} is empty (0 bytes)", R.UNREADABLE)
    with open(path, "rb") as f:
        return _open_stream(f, path.name, max_pixels)


def _open_stream(stream, name: str, max_pixels: int) -> Image.Image:
    with _read_errors(name, max_pixels, "decoded"), _open_checked(stream, max_pixels) as img:
        img.load()  # decode now (the first frame): truncated and corrupt files fail here
        return _to_rgb(img, copy=True)


@contextlib.contextmanager
def _open_checked(stream, max_pixels: int):
    """The image in ``stream`` opened (nothing decoded) once every check that can be made
    before decoding has passed: one of :data:`FORMATS` by its header, its size, and for a JPEG
    its decoding work (:func:`check_jpeg_work`). The one place attnviz opens image files."""
    with Image.open(stream, formats=FORMATS) as img:
        _check_size(img.size, max_pixels)
        if img.format in ("JPEG", "MPO"):
            check_jpeg_work(_whole(stream), img.size)
        yield img


def _whole(stream) -> bytes:
    """All bytes of a seekable binary stream (its position kept)."""
    if isinstance(stream, io.BytesIO):
        return stream.getbuffer().tobytes()
    pos = stream.tell()
    try:
        stream.seek(0)
        return stream.read()
    finally:
        stream.seek(pos)


_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker (not stuffing, RSTn, fill)


def jpeg_scans(data: bytes, stop_after: int | None = None) -> int:
    """How many scans (SOS markers) a JPEG file holds, read from its markers without decoding:
    the segments are skipped by their lengths, each scan's entropy-coded data up to the next
    marker. Stops counting past ``stop_after``."""
    scans, pos, n = 0, 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF or data[pos + 1] == 0xFF:  # padding or fill bytes
            m = _JPEG_MARKER.search(data, pos + 1)
            if m is None:
                break
            pos = m.start()
            continue
        marker = data[pos + 1]
        if marker == 0xD9:  # end of image
            break
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
            m = _JPEG_MARKER.search(data, end)
            if m is None:
                break
            pos = m.start()
        else:
            pos = end
    return scans


def check_jpeg_work(data: bytes, size) -> None:
    """Refuse a JPEG whose decoding would be out of proportion to its size: more than
    :data:`MAX_JPEG_SCANS` scans, or scans x megapixels over :data:`MAX_SCAN_MEGAPIXELS` (a
    progressive file repeating its scans makes the decoder go over the whole image each time:
    12,000 scans of a 40-megapixel image are about a minute of CPU). Raises ImageError."""
    mp = max(size[0] * size[1] / 1e6, 1e-6)
    allowed = int(min(MAX_JPEG_SCANS, MAX_SCAN_MEGAPIXELS / mp))
    scans = jpeg_scans(data, stop_after=allowed)
    if scans > allowed:
        raise ImageError(f"the JPEG holds more than {allowed} scans for {mp:.1f} megapixels; "
                         f"at most {MAX_JPEG_SCANS} scans and {MAX_SCAN_MEGAPIXELS} scans x "
                         "megapixels are decoded (an ordinary progressive JPEG has about 10). "
                         "Save it again as an ordinary JPEG or PNG", R.TOO_COSTLY)


def _check_size(size, max_pixels: int):
    w, h = size
    if w * h > max_pixels:
        raise ImageError(f"the image is {w} x {h} = {w * h / 1e6:.1f} megapixels; the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels. Downscale it and try again",
                         R.TOO_LARGE)
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"the image is {w} x {h} pixels; at least {MIN_SIDE} x {MIN_SIDE} "
                         "is needed", R.TOO_SMALL)


def _from_array(a: np.ndarray, max_pixels: int) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ImageError(f"an image array must be HxW, HxWx3 or HxWx4, not {a.shape}",
                         R.UNSUPPORTED)
    _check_size((a.shape[1], a.shape[0]), max_pixels)
    if a.dtype == np.uint8:
        pass
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("the image array contains NaN or infinite values", R.UNSUPPORTED)
        scale = 255.0 if a.max() <= 1.0 else 1.0
        a = np.clip(a * scale, 0, 255).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"cannot read an image array of dtype {a.dtype}", R.UNSUPPORTED)
    return Image.fromarray(np.ascontiguousarray(a))


def _to_rgb(img: Image.Image, copy: bool = False) -> Image.Image:
    """Loaded RGB copy of ``img`` with EXIF orientation applied and alpha on white."""
    out = img
    try:
        # only an image that says it is rotated is transposed (exif_transpose copies otherwise)
        if img.getexif().get(0x0112, 1) not in (1, None):
            out = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not make the picture unreadable
        out = img
    if out.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(out, dtype=np.float64)
        if out.mode == "F" and a.size and np.nanmax(a) <= 1.0:
            a = a * 255.0
        elif out.mode != "F" and a.size and a.max() > 255:
            a = a / 257.0  # 16-bit range
        out = Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8), "L")
    if out.mode == "P":
        out = out.convert("RGBA") if "transparency" in out.info else out.convert("RGB")
    elif out.mode in ("L", "1") and "transparency" in out.info:
        out = out.convert("RGBA")
    if out.mode in _ALPHA_MODES:
        rgba = out.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
    elif out.mode != "RGB":
        out = out.convert("RGB")
    if out is img and copy:
        out = img.copy()
    return out


# --------------------------------------------------------------------------------- preprocess
@dataclass
class Preprocess:
    """What preprocessing did, so that maps can be taken back to the image.

    original_size: (W, H) of the image given; input_size: S of the S x S model input;
    mode: "resize" or "center_crop"; crop_box: (left, top, right, bottom) of the region the input
    covers, in original-image pixels (the whole image for "resize"); mean, std: normalisation.
    """

    original_size: tuple
    input_size: int
    mode: str = "resize"
    crop_box: tuple | None = None
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __post_init__(self):
        if self.crop_box is None:
            w, h = self.original_size
            self.crop_box = (0.0, 0.0, float(w), float(h))

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.original_size[1]), int(self.original_size[0])

    def to_image(self, m, mode: str = "bilinear") -> np.ndarray:
        """A map on the model-input grid ((h, w) or (B, h, w); any h, w covering the input) ->
        float32 numpy (H, W) or (B, H, W) at the original image's resolution."""
        t = torch.as_tensor(m).detach().float()
        squeeze = t.dim() == 2
        if squeeze:
            t = t[None]
        if t.dim() != 3:
            raise ValueError(f"expected a (h, w) or (B, h, w) map, got shape {tuple(t.shape)}")
        H, W = self.image_hw
        kw = {} if mode == "nearest" else {"align_corners": False}
        if self.mode == "resize":
            out = F.interpolate(t[:, None], size=(H, W), mode=mode, **kw)[:, 0]
        else:
            # resample onto the crop box, then paste into a zero canvas
            left, top, right, bottom = self.crop_box
            x0, y0 = int(round(left)), int(round(top))
            x1, y1 = int(round(right)), int(round(bottom))
            inner = F.interpolate(t[:, None], size=(max(y1 - y0, 1), max(x1 - x0, 1)),
                                  mode=mode, **kw)[:, 0]
            out = t.new_zeros((t.shape[0], H, W))
            sy0, sx0 = max(0, -y0), max(0, -x0)
            dy0, dx0 = max(0, y0), max(0, x0)
            dy1, dx1 = min(H, y1), min(W, x1)
            out[:, dy0:dy1, dx0:dx1] = inner[:, sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
        a = out.cpu().numpy().astype(np.float32)
        return a[0] if squeeze else a

    def to_input(self, m) -> torch.Tensor:
        """A map at the original image's resolution (H, W) -> (S, S) float tensor on the input
        grid (the inverse of :meth:`to_image`)."""
        t = torch.as_tensor(np.asarray(m, dtype=np.float32))
        if t.dim() != 2:
            raise ValueError(f"expected an (H, W) map, got shape {tuple(t.shape)}")
        S = self.input_size
        if tuple(t.shape) == (S, S) and self.mode == "resize":
            return t
        left, top, right, bottom = self.crop_box
        if self.mode != "resize":
            t = t[int(round(top)):int(round(bottom)), int(round(left)):int(round(right))]
        return F.interpolate(t[None, None], size=(S, S), mode="bilinear", align_corners=False,
                             antialias=True)[0, 0]

    def point_to_input(self, x: float, y: float) -> tuple[float, float]:
        """An image pixel (x, y) -> (fy, fx), fractions of the model input's height and width."""
        left, top, right, bottom = self.crop_box
        return (y - top) / (bottom - top), (x - left) / (right - left)


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def preprocess(model_or_info, image, mode: str = "resize") -> tuple[torch.Tensor, Preprocess]:
    """Image -> ((1, 3, S, S) float32 tensor on the model's device, :class:`Preprocess`).

    ``model_or_info`` is a model carrying ``.info`` or a ``ModelInfo``; ``image`` anything
    :func:`load_image` reads.
    """
    if mode not in MODES:
        raise ImageError(f"unknown preprocessing mode {mode!r}; choose from {MODES}", R.BAD_OPTION)
    info = getattr(model_or_info, "info", model_or_info)
    if not hasattr(info, "input_size") and isinstance(model_or_info, torch.nn.Module):
        info = info_of(model_or_info)
    if not hasattr(info, "input_size"):
        raise TypeError("preprocess needs a model (nn.Module) or a ModelInfo")
    device = model_device(model_or_info) if isinstance(model_or_info, torch.nn.Module) \
        else torch.device("cpu")
    pil = load_image(image)
    W, H = pil.size
    S = int(info.input_size)
    if mode == "resize":
        box = (0.0, 0.0, float(W), float(H))
        small = pil.resize((S, S), Image.BILINEAR)
    else:
        short = int(info.resize or round(S * 256 / 224))
        scale = short / min(W, H)
        rw, rh = max(S, int(round(W * scale))), max(S, int(round(H * scale)))
        resized = pil.resize((rw, rh), Image.BILINEAR)
        left, top = int(round((rw - S) / 2)), int(round((rh - S) / 2))
        small = resized.crop((left, top, left + S, top + S))
        sx, sy = W / rw, H / rh
        box = (left * sx, top * sy, (left + S) * sx, (top + S) * sy)
    mean, std = tuple(info.mean), tuple(info.std)
    m, s = _norm_constants(mean, std)
    # the same float32 operations as (a / 255 - mean) / std, in torch (about 2x numpy's speed)
    x = torch.from_numpy(np.array(small, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    x = x.float().div_(255.0).sub_(m).div_(s)[None]
    return (x if device.type == "cpu" else x.to(device)), Preprocess((W, H), S, mode, box, mean,
                                                                     std)


@functools.lru_cache(maxsize=32)
def _norm_constants(mean: tuple, std: tuple):
    return (torch.tensor(mean, dtype=torch.float32).view(3, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(3, 1, 1))



# --------------------------------------------------------------------------------- baselines
def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (B, C, H, W) tensor (reflect padding); ``sigma`` in pixels."""
    if sigma <= 0:
        return x.clone()
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    k = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (r, r, r, r), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


BASELINES = ("black", "white", "mean", "blur", "noise")


def make_baseline(x: torch.Tensor, kind: str, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD, generator: torch.Generator | None = None):
    """A reference input like ``x`` (normalised): "black"/"white" pixels, "mean" (zeros after
    normalisation: the dataset's mean colour), "blur" (x blurred, sigma = S/16), "noise"
    (uniform random pixels)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if kind == "black":
        return ((0 - m) / s).expand_as(x).clone()
    if kind == "white":
        return ((1 - m) / s).expand_as(x).clone()
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x.detach(), max(x.shape[-1], x.shape[-2]) / 16)
    if kind == "noise":
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        return (u - m) / s
    raise ImageError(f"unknown baseline {kind!r}; choose from {BASELINES}", R.BAD_OPTION)
