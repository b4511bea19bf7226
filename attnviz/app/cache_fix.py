"""Make Gradio's image cache safe under concurrent requests.

Gradio 6.31's ``processing_utils.save_pil_to_cache`` names a cached image by the hash of its
bytes and rewrites the file on every call (truncate, then write). When two requests return the
same picture (a colour-bar legend, the same image analysed twice), one request's rewrite can be
read by another client's download while it is empty: measured here as one
``RemoteProtocolError: peer closed connection ... (received 0 bytes, expected 3886)`` in 200
concurrent /inspect calls. This replacement writes each content-addressed file once, under a
temporary name renamed into place (as Gradio's own ``save_file_to_cache`` does), so a reader
sees either no file or the whole file. A JPEG is encoded at :data:`JPEG_QUALITY` (Gradio's
default, 75, leaves ringing around the colour bars' digits).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gradio import processing_utils

_original = processing_utils.save_pil_to_cache


JPEG_QUALITY = 90  # overlays and tiles: no visible loss at the size shown, ~100x faster than PNG


def encode(img, format: str) -> bytes:
    """The image's bytes: JPEG at JPEG_QUALITY (RGB, no metadata) where no exact pixels are
    needed (the app's overlays ask for it), else Gradio's own encoding."""
    if format.lower() in ("jpeg", "jpg"):
        import io
        with io.BytesIO() as out:
            img.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
            return out.getvalue()
    return processing_utils.encode_pil_to_bytes(img, format)


def write_once(data: bytes, name: str, cache_dir: str) -> str:
    """``data`` in ``cache_dir/<hash of data>/name``, written once under a temporary name and
    renamed into place (a concurrent reader sees no file or the whole file); its path."""
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / name).resolve()
    if not target.exists():
        fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(staging, target)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
    return str(target)


def save_pil_to_cache_atomic(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    return write_once(encode(img, format), f"{name}.{format}", cache_dir)


def install() -> None:
    """Route Gradio's image caching through :func:`save_pil_to_cache_atomic` (idempotent)."""
    processing_utils.save_pil_to_cache = save_pil_to_cache_atomic
