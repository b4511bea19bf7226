"""Exceptions raised for user errors. Messages are written for a person: what was wrong, what to
do."""
import enum


class AttnvizError(Exception):
    """Base class of every error attnviz raises on bad input."""


class UnknownModelError(AttnvizError, KeyError):
    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(AttnvizError):
    """A checkpoint could not be read or does not fit the model."""


class DownloadDisabledError(WeightsError):
    """Pretrained weights would have to be downloaded, but downloads are off."""


class ImageReason(enum.Enum):
    """Why an image was refused (:attr:`ImageError.reason`), set where the error is raised: the
    app heads its message by it, never by the message's words."""
    NOT_AN_IMAGE = "not_an_image"  # its header names no readable format (a text file, ...)
    UNREADABLE = "unreadable"      # no such file, a folder, empty (0 bytes)
    UNDECODABLE = "undecodable"    # a readable format whose data fails: truncated or corrupt
    UNSUPPORTED = "unsupported"    # a Python value that holds no image (type, array shape, dtype)
    TOO_LARGE = "too_large"        # over the pixel limit (a decompression bomb)
    TOO_SMALL = "too_small"        # under 8 x 8 pixels
    TOO_COSTLY = "too_costly"      # its decoding work is out of proportion (a JPEG's scans)
    BAD_OPTION = "bad_option"      # an unknown preprocessing mode or baseline
    UNUSABLE = "unusable"          # anything else (the default)


class ImageError(AttnvizError):
    """An input is not an image attnviz can read; ``reason`` (an :class:`ImageReason`) says
    why."""

    def __init__(self, message: str = "", reason: ImageReason = ImageReason.UNUSABLE):
        super().__init__(message)
        self.reason = ImageReason(reason)

    def __reduce__(self):  # the reason survives pickling (a worker process's error)
        return type(self), (*self.args, self.reason)


class DatasetError(AttnvizError):
    """A dataset upload (folder or zip) is unusable."""


class OptionError(AttnvizError, ValueError):
    """An invalid target, layer, kind or option. ``explain``, ``inspect`` and ``metrics`` raise
    the same subclass for the same mistake (:class:`TargetError`, :class:`LayerError`,
    :class:`UnknownKindError`, :class:`UnknownOptionError`), with the underlying cause chained
    where there is one."""


# each entry point's own family (other bad input of that entry point raises these directly)
class CaptureError(OptionError):
    """Bad options for attention capture."""


class ExplainError(OptionError):
    """Bad options for an attribution (unknown method, layer, baseline or target)."""


class InspectError(OptionError):
    """A request the analysis cannot answer (a map with no spatial layout, a query outside the
    image, a mask of the wrong size, ...)."""


class MetricError(OptionError):
    """Bad input to a metric (shapes that do not match, an empty mask, ...)."""


# the mistakes every entry point shares: one class each, whichever function was called; each is
# also every entry point's own error, so ``except ExplainError`` still catches a bad target
_EVERY = (CaptureError, ExplainError, InspectError, MetricError)


class TargetError(*_EVERY):
    """A target that is not a class of the model (an index out of range, a negative index, or
    not an integer)."""


class LayerError(*_EVERY):
    """A layer, tap or map name or pattern that names nothing in the model."""


class UnknownKindError(*_EVERY):
    """A kind name that ``attnviz.kinds`` does not know."""


class UnknownOptionError(*_EVERY):
    """An option (keyword, method, mode or baseline name) the function does not take."""


class UnknownBlockError(OptionError):
    """An attention block name that ``attnviz.kinds`` does not know."""


def class_index(target) -> int:
    """``target`` as an int (an integer, or an integral float), or TargetError with the
    conversion error chained. The range is checked by :func:`check_target`."""
    import operator
    try:
        try:
            t = operator.index(target)
        except TypeError:
            f = float(target)
            if not f.is_integer():
                raise ValueError(f"{target!r} is not a whole number") from None
            t = int(f)
    except (TypeError, ValueError, OverflowError) as e:
        raise TargetError(f"target {target!r} is not a class index (an integer)") from e
    return t


def check_target(target, n_classes: int) -> int:
    """``target`` as a class index of a model with ``n_classes`` classes, or TargetError (an
    integer, or an integral float, in 0..n_classes-1; the conversion error chained)."""
    t = class_index(target)
    if not 0 <= t < n_classes:
        raise TargetError(f"target {t} is not a class of this model (0..{n_classes - 1})")
    return t
