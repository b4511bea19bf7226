"""Bad and unusual inputs shared by the library and server reliability tests.

Each builder writes a file into ``d`` and returns (path, expect) where expect is "error" (a clear
attnviz error must come back) or "ok" (a correct result must come back)."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_bytes(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def _base(size=(96, 80)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def png_header_bomb(width=20000, height=20000) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, with a tiny IDAT."""
    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo attnviz-pwned > /tmp/attnviz_pwned",))


def image_cases(d: Path) -> dict[str, tuple[Path, str]]:
    d.mkdir(parents=True, exist_ok=True)
    cases = {}

    def put(name, data: bytes, expect):
        p = d / name
        p.write_bytes(data)
        cases[name] = (p, expect)

    good_png = _png_bytes(_base())
    b = io.BytesIO()
    _base().save(b, format="JPEG", quality=90)
    good_jpg = b.getvalue()
    put("empty.png", b"", "error")
    put("truncated.png", good_png[: len(good_png) // 2], "error")
    put("truncated.jpg", good_jpg[: len(good_jpg) // 3], "error")
    put("text.png", b"this is not an image, just text renamed to .png\n" * 20, "error")
    put("one_pixel.png", _png_bytes(Image.new("RGB", (1, 1), (200, 10, 10))), "error")
    put("bomb.png", png_header_bomb(), "error")
    # unusual but valid: a correct result must come back
    arr16 = (np.linspace(0, 65535, 96 * 80).reshape(80, 96)).astype(np.uint16)
    put("sixteen_bit.png", _png_bytes(Image.fromarray(arr16)), "ok")
    b = io.BytesIO()
    _base().convert("CMYK").save(b, format="JPEG")
    put("cmyk.jpg", b.getvalue(), "ok")
    pal = _base().convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    b = io.BytesIO()
    pal.save(b, format="PNG", transparency=0)
    put("palette_transparent.png", b.getvalue(), "ok")
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    b = io.BytesIO()
    frames[0].save(b, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", b.getvalue(), "ok")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    b = io.BytesIO()
    _base((120, 60)).save(b, format="JPEG", exif=exif.tobytes())
    put("exif_rotated.jpg", b.getvalue(), "ok")
    put("all_white.png", _png_bytes(Image.new("RGB", (64, 64), (255, 255, 255))), "ok")
    put("all_black.png", _png_bytes(Image.new("RGB", (64, 64), (0, 0, 0))), "ok")
    put("rgba.png", _png_bytes(_base().convert("RGBA")), "ok")
    return cases


def pickle_checkpoint(path: Path) -> Path:
    """A 'checkpoint' whose unpickling would run a shell command."""
    import torch
    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": Evil()}, path)
    return path


def traversal_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        png = _png_bytes(_base((32, 32)))
        z.writestr("data/a/1.png", png)
        z.writestr("data/b/1.png", png)
        z.writestr("../../evil.txt", b"escaped")
    return path


def oversized_zip(path: Path, mb: int = 260) -> Path:
    """A zip whose members expand to ``mb`` MB (highly compressible)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        png = _png_bytes(_base((32, 32)))
        z.writestr("data/a/1.png", png)
        z.writestr("data/b/1.png", png)
        z.writestr("data/a/big.png", b"\x00" * (mb * 2**20))
    return path


def progressive_jpeg_bomb(width: int = 2000, height: int = 2000, repeats: int = 200) -> bytes:
    """A valid progressive JPEG of a flat grey width x height image whose scans are repeated
    ``repeats`` times (10 scans each): a few kilobytes that make the decoder pass over the whole
    image ~10 x repeats times."""
    b = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(b, "JPEG", progressive=True,
                                                            quality=50)
    data = b.getvalue()
    first_sos = data.index(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:first_sos] + data[first_sos:end] * repeats + data[end:]


def ico_bomb(width: int = 13000, height: int = 13000) -> bytes:
    """An .ico whose one entry is a PNG of width x height black pixels (~20 KB): Pillow decodes
    an ICO's image while opening it."""
    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    raw = zlib.compress((b"\x00" * (1 + (width + 7) // 8)) * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw)
           + chunk(b"IEND", b""))
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png
