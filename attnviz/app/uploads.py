"""Which files a client may name: only what was uploaded to this server, or the app's examples.

Every component that hands a handler a file path (the image inputs, the training zip) passes the
path it was sent through :func:`uploaded_path` first, whatever the payload's shape (Gradio's
``FileData``, a dict with or without its ``meta`` marker, a plain string, a list of them). The
path is resolved (``..`` and symlinks followed) and accepted only when the real file lies inside
Gradio's upload cache for this server (``GRADIO_TEMP_DIR``, where uploads and ``data:`` URLs are
written) or the app's examples folder, and is a regular file. Anything else gets the same
:data:`REFUSED` message, so that a client cannot tell a missing path from a folder, a text file
or another user's image.

    path = uploaded_path(payload)   # a real path inside the allowed folders, or gr.Error
"""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

REFUSED = ("This file was not uploaded to this server, so it cannot be used. Upload the file "
           "itself (in the page, or with gradio_client's handle_file('photo.jpg')), or send an "
           "image as a data: URL.")
REFUSED_TITLE = "Not an uploaded file"


def upload_folder() -> Path:
    """Gradio's upload cache for this server (the folder every upload is written to)."""
    from gradio.utils import get_upload_folder
    return Path(os.path.realpath(get_upload_folder()))


def allowed_folders() -> list[Path]:
    """The folders a client's path may point into, resolved: the upload cache and the examples."""
    from .examples import EXAMPLES_DIR
    return [upload_folder(), Path(os.path.realpath(EXAMPLES_DIR))]


def refused() -> gr.Error:
    return gr.Error(REFUSED, title=REFUSED_TITLE, print_exception=False)


def payload_paths(payload) -> list:
    """Every path named in a payload of any shape (FileData, dict, string, list of them)."""
    if payload is None:
        return []
    if isinstance(payload, (str, os.PathLike)):
        return [payload]
    if isinstance(payload, dict):
        return [payload.get("path")]
    if isinstance(payload, (list, tuple)):
        return [p for item in payload for p in payload_paths(item)]
    root = getattr(payload, "root", None)  # Gradio's ListFiles
    if isinstance(root, list):
        return payload_paths(root)
    return [getattr(payload, "path", None)]


def uploaded_path(path) -> str:
    """``path`` resolved, if the real file is a regular file inside :func:`allowed_folders`;
    otherwise :func:`refused` (one message, whether the path exists or not)."""
    if not isinstance(path, (str, os.PathLike)):
        raise refused()
    try:
        text = os.fspath(path)
        if not text or "\x00" in text or len(text) > 4096:
            raise refused()
        real = Path(os.path.realpath(text))
    except (TypeError, ValueError, OSError):
        raise refused() from None
    for folder in allowed_folders():
        if real != folder and real.is_relative_to(folder):
            break
    else:
        raise refused()
    try:
        if not real.is_file():
            raise refused()
    except OSError:
        raise refused() from None
    return str(real)


class UploadedFile(gr.File):
    """``gr.File`` (type "filepath") that accepts only files uploaded to this server (see the
    module); hands the handler the resolved path, or a list of them for ``file_count`` multiple.
    (Gradio's own File also leaves an empty temporary file in the cache at every call; this one
    does not.)"""

    is_template = True  # rendered by the frontend as a plain File

    def preprocess(self, payload):
        if payload is None:
            return None
        paths = [uploaded_path(p) for p in payload_paths(payload)]
        if not paths:
            raise refused()
        if self.file_types:
            suffixes = tuple(t.lower() for t in self.file_types if t.startswith("."))
            if suffixes and not all(p.lower().endswith(suffixes) for p in paths):
                raise gr.Error(f"Upload a file of type {', '.join(suffixes)}.",
                               title="Wrong file type", print_exception=False)
        if self.file_count == "single":
            if len(paths) != 1:
                raise gr.Error("Upload one file.", title="One file", print_exception=False)
            return paths[0]
        return paths
