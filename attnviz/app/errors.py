"""Turn attnviz's errors (and anything else a handler raises) into ``gr.Error`` messages a person
can act on. Every handler body runs inside :func:`user_errors`; the server keeps serving.

    with user_errors("analysing the image"):
        ...
"""
from __future__ import annotations

import contextlib
import html
import logging
import traceback

import gradio as gr

from .. import errors as E
from ..data.images import FORMAT_NAMES

log = logging.getLogger("attnviz.app")

_TITLES = [
    (E.ImageError, "Cannot use this file"),
    (E.UnknownModelError, "Unknown model"),
    (E.DownloadDisabledError, "Weights not available"),
    (E.WeightsError, "Weights problem"),
    (E.DatasetError, "Dataset problem"),
    (E.TargetError, "Not a class of this model"),
    (E.LayerError, "No such layer"),
    (E.UnknownKindError, "Unknown kind of attention"),
    (E.UnknownOptionError, "Unknown option"),
    (E.CaptureError, "Bad capture option"),
    (E.AttnvizError, "Cannot do that"),
]

# the head of an image's message, by why the loader refused it (ImageError.reason). API clients
# see only the message, so a file that is no image says "not an image" (once: the loader's own
# words for NOT_AN_IMAGE say it); the formats are named once, as the loader names them
_UNREADABLE = "This file is not an image attnviz can read"
_UNUSABLE = "This image cannot be used"
IMAGE_HEADS = {
    E.ImageReason.NOT_AN_IMAGE: "Upload refused",
    E.ImageReason.UNREADABLE: _UNREADABLE,
    E.ImageReason.UNDECODABLE: _UNREADABLE,
    E.ImageReason.UNSUPPORTED: _UNUSABLE,
    E.ImageReason.TOO_LARGE: _UNUSABLE,
    E.ImageReason.TOO_SMALL: _UNUSABLE,
    E.ImageReason.TOO_COSTLY: _UNUSABLE,
    E.ImageReason.BAD_OPTION: "Unknown option",
    E.ImageReason.UNUSABLE: _UNUSABLE,
}


def to_gr_error(exc: BaseException, doing: str = "") -> gr.Error:
    """A ``gr.Error`` carrying a message written for a person."""
    if isinstance(exc, gr.Error):
        return exc
    for cls, title in _TITLES:
        if isinstance(exc, cls):
            msg = str(exc) or title
            if isinstance(exc, E.ImageError):
                reason = getattr(exc, "reason", E.ImageReason.UNUSABLE)
                msg = f"{IMAGE_HEADS[reason]}: {msg.rstrip('.')}."
                if reason is not E.ImageReason.BAD_OPTION and FORMAT_NAMES not in msg:
                    msg = f"{msg} Upload a {FORMAT_NAMES} image."
            if getattr(exc, "input_name", None) == "mask":  # the object mask was refused
                title = "Cannot use this mask"
            # messages quote users' names and paths: the browser shows them as HTML
            return gr.Error(html.escape(_capital(msg), quote=False), title=title,
                            print_exception=False)
    if isinstance(exc, MemoryError):
        return gr.Error("The server ran out of memory for this request; try a smaller image or a "
                        "lite model.", title="Out of memory")
    log.error("unexpected error while %s:\n%s", doing or "handling a request",
              "".join(traceback.format_exception(exc)))
    what = f" while {doing}" if doing else ""
    return gr.Error(_cap(f"Something went wrong{what}: {type(exc).__name__}: {exc}"),
                    title="Unexpected error")


def _capital(s: str) -> str:
    s = _cap(s)
    return s[:1].upper() + s[1:] if s else s


def _cap(s: str) -> str:
    """A message cut to MESSAGE_MAX_CHARS (input echoed in it cannot make it large)."""
    from .limits import MESSAGE_MAX_CHARS
    return s if len(s) <= MESSAGE_MAX_CHARS else s[:MESSAGE_MAX_CHARS] + " ... (cut)"


@contextlib.contextmanager
def user_errors(doing: str = ""):
    """Re-raise any exception from the block as a ``gr.Error`` with a clear message."""
    try:
        yield
    except gr.Error:
        raise
    except Exception as e:  # noqa: BLE001 - the UI must answer every failure with a message
        raise to_gr_error(e, doing) from e


def bad_request(message: str, title: str = "Bad request") -> gr.Error:
    return gr.Error(_cap(message), title=title, print_exception=False)
