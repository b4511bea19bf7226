"""Exceptions raised for user errors. Messages are written for a person: what was wrong, what to do."""


class AttnvizError(Exception):
    """Base class of every error attnviz raises on bad input."""


class UnknownModelError(AttnvizError, KeyError):
    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(AttnvizError):
    """A checkpoint could not be read or does not fit the model."""


class DownloadDisabledError(WeightsError):
    """Pretrained weights would have to be downloaded, but downloads are off."""


class ImageError(AttnvizError):
    """An input is not an image attnviz can read."""


class DatasetError(AttnvizError):
    """A dataset upload (folder or zip) is unusable."""


class OptionError(AttnvizError, ValueError):
    """An invalid target, layer, kind or option. ``explain``, ``inspect`` and ``metrics`` raise
    the same subclass for the same mistake, with the underlying cause chained."""


class CaptureError(OptionError):
    """Bad options for attention capture."""


class UnknownKindError(CaptureError):
    """A kind name that ``attnviz.kinds`` does not know."""


class UnknownBlockError(OptionError):
    """An attention block name that ``attnviz.kinds`` does not know."""
