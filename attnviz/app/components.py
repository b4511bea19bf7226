"""Small component helpers shared by the tabs."""
from __future__ import annotations

import functools
import threading

import gradio as gr
import torch

from .cache_fix import write_once  # the one atomic write into Gradio's cache

try:  # Hugging Face ZeroGPU: functions that use the GPU carry @spaces.GPU
    import spaces  # type: ignore

    def _device(fn=None, **kw):
        return spaces.GPU(fn) if fn is not None and not kw else spaces.GPU(**kw)
except Exception:  # noqa: BLE001 - not on Spaces: a no-op decorator
    def _device(fn=None, **kw):
        return fn if fn is not None else (lambda f: f)


def gpu(fn=None, **kw):
    """Mark a function that runs a model (on ZeroGPU it gets the GPU); every call is counted in
    :data:`IN_FLIGHT` so /health can tell hooks held by running requests from leaked ones."""
    if fn is None:
        return lambda f: gpu(f, **kw)
    run = _device(**kw)(fn) if kw else _device(fn)

    @functools.wraps(fn)
    def counted(*args, **kwargs):
        model = args[0] if args and isinstance(args[0], torch.nn.Module) else None
        IN_FLIGHT.enter(model)
        try:
            return run(*args, **kwargs)
        finally:
            IN_FLIGHT.exit(model)
    return counted


class _InFlight:
    """Model calls running now, per model (``None``: calls not tied to one model), and how many
    ever started (a reading is consistent when that did not change while it was taken)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.running: dict[int, int] = {}
        self.started = 0

    def enter(self, model) -> None:
        with self._lock:
            self.started += 1
            k = id(model) if model is not None else 0
            self.running[k] = self.running.get(k, 0) + 1

    def exit(self, model) -> None:
        with self._lock:
            k = id(model) if model is not None else 0
            self.running[k] -= 1
            if not self.running[k]:
                del self.running[k]

    def snapshot(self) -> tuple[int, dict]:
        with self._lock:
            return self.started, dict(self.running)


IN_FLIGHT = _InFlight()


class InputImage(gr.Image):
    """``gr.Image`` that hands the uploaded file's path to the handler without opening it.

    Gradio's own preprocessing opens every upload with PIL before the handler runs, so a corrupt
    file, a text file named .png or a decompression bomb would fail there with a generic error;
    and an image sent as a ``data:`` URL would be decoded in full and re-encoded before any size
    check (a 20 KB PNG claiming 13000 x 13000 pixels: 15 s and +1.7 GB). Here the path goes
    straight to :func:`attnviz.preprocess.load_image` once :func:`.uploads.uploaded_path` has
    checked that it names a file uploaded to this server (or an example: never any other file on
    the server's disk, whatever the payload's shape), and a ``data:`` URL's bytes are written to
    a file as they are, after :func:`attnviz.preprocess.image_size` has read the size from the
    header; both refuse an image over the pixel limit before decoding it."""

    is_template = True  # rendered by the frontend as a plain Image

    def preprocess(self, payload):
        if payload is None:
            return None
        from .uploads import payload_paths, refused, uploaded_path
        url = getattr(payload, "url", None) if not isinstance(payload, dict) \
            else payload.get("url")
        url = url if isinstance(url, str) else ""
        paths = [p for p in payload_paths(payload) if p]
        if paths and not url.startswith("data:"):
            if len(paths) != 1:
                raise refused()
            return uploaded_path(paths[0])  # only a file uploaded here (see .uploads)
        if not url.startswith("data:"):
            raise gr.Error("The image did not arrive as an uploaded file: send it as a file "
                           "(gradio_client: handle_file('photo.jpg')) or a data: URL.",
                           title="No image file")
        return data_url_to_file(url, self.GRADIO_CACHE)


def data_url_to_file(url: str, cache_dir: str) -> str:
    """The bytes of an image ``data:`` URL, written unchanged to a file in ``cache_dir`` once its
    header has passed the size checks (nothing is decoded); a clear ``gr.Error`` otherwise."""
    import base64
    import binascii

    from ..errors import ImageError
    from ..data.images import image_size
    from .limits import DATA_URL_MAX_BYTES
    head, _, body = url.partition(",")
    if ";base64" not in head[:200]:
        raise gr.Error("A data: URL image must be base64-encoded (data:image/png;base64,...).",
                       title="Not an image")
    if len(body) > DATA_URL_MAX_BYTES * 4 // 3 + 4:
        raise gr.Error(f"The data: URL holds more than {DATA_URL_MAX_BYTES / 2**20:.0f} MB; "
                       "upload the image as a file instead.", title="Too large")
    try:
        data = base64.b64decode(body, validate=False)
    except (binascii.Error, ValueError) as e:
        raise gr.Error(f"The data: URL is not valid base64 ({e}).", title="Not an image") \
            from None
    try:
        w, h = image_size(data)
    except ImageError as e:
        from .errors import to_gr_error
        raise to_gr_error(e) from None
    mime = head[5:].split(";")[0].strip().lower()
    ext = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/webp": "webp", "image/gif": "gif",
           "image/bmp": "bmp", "image/tiff": "tiff"}.get(mime, "png")
    return write_once(data, f"image.{ext}", cache_dir)


def skips(n: int):
    """``n`` no-change updates."""
    return tuple(gr.skip() for _ in range(n))


class Outputs:
    """An event's output components, by name: the names are attributes of the app's ``ui``
    namespace. ``outputs.components`` is the event's outputs list; a handler wrapped with
    :meth:`handler` returns ``{name: value}`` and every output it leaves out keeps its value.

        out = Outputs(ui, "top5", "badge", "state")
        btn.click(out.handler(run), inputs, out.components)    # run returns {"top5": ...}
    """

    def __init__(self, ui, *names: str):
        self.names = tuple(dict.fromkeys(names))
        self.components = [getattr(ui, n) for n in self.names]
        self._by_name = dict(zip(self.names, self.components))

    def __add__(self, other: "Outputs") -> "Outputs":
        out = Outputs.__new__(Outputs)
        out.names = tuple(dict.fromkeys(self.names + other.names))
        out._by_name = {**self._by_name, **other._by_name}
        out.components = [out._by_name[n] for n in out.names]
        return out

    def updates(self, values: dict):
        """``{name: value}`` -> what Gradio takes: ``{component: value}`` (a no-change update
        when empty; the bare value for a single output)."""
        unknown = [k for k in values if k not in self._by_name]
        if unknown:
            raise KeyError(f"{unknown} are not outputs of this event ({', '.join(self.names)})")
        if not values:
            return gr.skip()
        if len(self.names) == 1:
            return values[self.names[0]]
        return {self._by_name[k]: v for k, v in values.items()}

    def stream(self, fn):
        """``fn`` a generator yielding ``{name: value}`` steps (progressive results), as a
        Gradio generator handler of these outputs."""
        @functools.wraps(fn)
        def run(*args, **kwargs):
            for values in fn(*args, **kwargs):
                yield self.updates(values)
        return run

    def handler(self, fn):
        """``fn`` returning ``{name: value}``, as a Gradio handler of these outputs (the same
        parameters, so the API names them the same)."""
        @functools.wraps(fn)
        def run(*args, **kwargs):
            return self.updates(fn(*args, **kwargs))
        return run
