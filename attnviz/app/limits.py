"""Every limit the app enforces against hostile or oversized input and load, in one place, each
settable by an environment variable (read at start), with what happens when it is reached.

    from attnviz.app import limits
    limits.JOB_MAX_SECONDS        # a training or evaluation stops (writing nothing) after this
    limits.describe()             # the limits as Markdown lines (UI, README)
"""
from __future__ import annotations

import os


def _num(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


# images (the analysis limit itself is attnviz.preprocess.MAX_PIXELS, checked on the header)
DATA_URL_MAX_BYTES = int(_num("ATTNVIZ_DATA_URL_MAX_MB", 20) * 2**20)

# requests: a body over this is answered 413 before it is read (a data: URL image is base64,
# 4/3 of its bytes); an upload (a file sent to /upload) may be as large as a file may be
FILE_MAX_MB = int(_num("ATTNVIZ_FILE_MAX_MB", 50))
REQUEST_MAX_BYTES = int(_num("ATTNVIZ_REQUEST_MAX_MB", 32) * 2**20)
UPLOAD_REQUEST_MAX_BYTES = (FILE_MAX_MB + 1) * 2**20

# training sets: a zip of class folders
UPLOAD_MAX_MB = int(_num("ATTNVIZ_UPLOAD_MAX_MB", 200))
UPLOAD_MAX_FILES = int(_num("ATTNVIZ_UPLOAD_MAX_FILES", 5000))
TRAIN_IMAGE_MAX_PIXELS = int(_num("ATTNVIZ_TRAIN_IMAGE_MAX_MP", 16) * 1e6)
TRAIN_TOTAL_MAX_PIXELS = int(_num("ATTNVIZ_TRAIN_TOTAL_MAX_MP", 1000) * 1e6)

# jobs: training, evaluation, the sanity check (one at a time)
JOB_MAX_SECONDS = _num("ATTNVIZ_JOB_MAX_SECONDS", 1200)
TRAIN_MAX_IMAGES = int(_num("ATTNVIZ_TRAIN_MAX_IMAGES", 100_000))  # epochs x images per epoch
SLOT_WAIT_SECONDS = _num("ATTNVIZ_SLOT_WAIT_SECONDS", 15)  # a stopping job is waited for

# the queue: long jobs (training, evaluation, sanity check, deletion/insertion, export) wait in
# their own room, so they cannot fill the analyses' (see attnviz.app.admission)
HEAVY_PER_SESSION = int(_num("ATTNVIZ_HEAVY_PER_SESSION", 1))  # waiting, per session
HEAVY_QUEUE_MAX = int(_num("ATTNVIZ_HEAVY_QUEUE_MAX", 8))  # waiting, all sessions
QUEUE_MAX = int(_num("ATTNVIZ_QUEUE_MAX", 64))  # analyses and other requests waiting

# sessions: each browser / API session's last analysis
SESSION_MEMORY_MB = _num("ATTNVIZ_SESSION_MEMORY_MB", 1024)
SESSION_TTL_SECONDS = _num("ATTNVIZ_SESSION_TTL_SECONDS", 3 * 3600)
# a session without a page (API calls: gradio_client, raw /call requests) loses its analysis once
# idle this long (a page's lasts until the page closes or its state expires)
API_SESSION_IDLE_SECONDS = _num("ATTNVIZ_API_SESSION_IDLE_SECONDS", 600)

# models trained in the app
USER_MODELS_MAX = int(_num("ATTNVIZ_USER_MODELS_MAX", 20))
USER_MODELS_MAX_MB = _num("ATTNVIZ_USER_MODELS_MAX_MB", 500)
SHARE_TRAINED = os.environ.get("ATTNVIZ_SHARE_TRAINED", "0").strip().lower() in (
    "1", "true", "yes", "on")

# an export's zip can be downloaded this long (removed at a later export once older, or at
# the session's next export)
EXPORT_KEEP_SECONDS = _num("ATTNVIZ_EXPORT_KEEP_SECONDS", 600)

# text echoed back in messages
ECHO_MAX_CHARS = 120
MESSAGE_MAX_CHARS = 2000


def echo(value, limit: int = ECHO_MAX_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: user input quoted in a message stays small."""
    s = repr(value) if not isinstance(value, str) else repr(value[: limit + 1])
    if len(s) > limit:
        n = len(value) if isinstance(value, (str, bytes, list, tuple)) else None
        s = s[:limit] + "..." + (f" ({n} characters)" if n is not None else "")
    return s


def describe() -> list[str]:
    """The limits, one Markdown line each (shown in the UI and listed in the README)."""
    return [
        f"Images: PNG, JPEG, GIF, BMP, TIFF or WebP, at most {_mp(_max_pixels())} (checked on "
        f"the file's header before decoding; a JPEG at most {_max_scans()} scans; a data: URL at "
        f"most {DATA_URL_MAX_BYTES / 2**20:.0f} MB, a request {REQUEST_MAX_BYTES / 2**20:.0f} MB, "
        f"a file {FILE_MAX_MB} MB).",
        f"Training zip: at most {UPLOAD_MAX_FILES} files, {UPLOAD_MAX_MB} MB unpacked, "
        f"{_mp(TRAIN_IMAGE_MAX_PIXELS)} per image and {_mp(TRAIN_TOTAL_MAX_PIXELS)} in all "
        "(images are resized to 128 px anyway).",
        f"Jobs (training, evaluation, sanity check): one at a time, at most "
        f"{JOB_MAX_SECONDS / 60:.0f} min each; training at most {TRAIN_MAX_IMAGES:,} images "
        "(epochs x images per epoch). A cancelled or stopped job writes nothing.",
        f"Long jobs waiting: {HEAVY_PER_SESSION} per session, {HEAVY_QUEUE_MAX} in all.",
        f"Models trained here: at most {USER_MODELS_MAX} ({USER_MODELS_MAX_MB:.0f} MB), "
        + ("shared with every user." if SHARE_TRAINED else "visible only to the session "
           "that trained them."),
    ]


def _max_pixels() -> int:
    from ..data.images import MAX_PIXELS
    return MAX_PIXELS


def _max_scans() -> int:
    from ..data.images import MAX_JPEG_SCANS
    return MAX_JPEG_SCANS


def _mp(pixels: float) -> str:
    return f"{pixels / 1e6:g} megapixels"
