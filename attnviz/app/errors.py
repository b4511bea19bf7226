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


def to_gr_error(exc: BaseException, doing: str = "") -> gr.Error:
    """A ``gr.Error`` carrying a message written for a person."""
    if isinstance(exc, gr.Error):
        return exc
    for cls, title in _TITLES:
        if isinstance(exc, cls):
            msg = str(exc) or title
            if isinstance(exc, E.ImageError):
                unreadable = any(w in msg for w in ("decoded", "not an image", "empty",
                                                    "cannot read", "no such file", "folder"))
                # API clients see only the message, so it says "not an image" (once: the
                # loader's words when they say it); the formats are named once, as the loader
                # names them
                head = ("Upload refused" if "not an image" in msg else
                        "This file is not an image attnviz can read" if unreadable
                        else "This image cannot be used")
                msg = f"{head}: {msg.rstrip('.')}."
                if FORMAT_NAMES not in msg:
                    msg = f"{msg} Upload a {FORMAT_NAMES} image."
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
