"""Small component helpers shared by the tabs."""
from __future__ import annotations

import gradio as gr

try:  # Hugging Face ZeroGPU: functions that use the GPU carry @spaces.GPU
    import spaces  # type: ignore

    def gpu(fn=None, **kw):
        return spaces.GPU(fn) if fn is not None and not kw else spaces.GPU(**kw)
except Exception:  # noqa: BLE001 - not on Spaces: a no-op decorator
    def gpu(fn=None, **kw):
        return fn if fn is not None else (lambda f: f)


class InputImage(gr.Image):
    """``gr.Image`` that hands the uploaded file's path to the handler without opening it.

    Gradio's own preprocessing opens every upload with PIL before the handler runs, so a corrupt
    file, a text file named .png or a decompression bomb would fail there with a generic error.
    Here the path goes straight to :func:`attnviz.preprocess.load_image`, whose ImageError the
    handlers turn into a clear message."""

    is_template = True  # rendered by the frontend as a plain Image

    def preprocess(self, payload):
        if payload is None:
            return None
        if getattr(payload, "path", None) and not str(payload.url or "").startswith("data:"):
            return str(payload.path)
        if not str(getattr(payload, "url", None) or "").startswith("data:"):
            raise gr.Error("The image did not arrive as an uploaded file: send it as a file "
                           "(gradio_client: handle_file('photo.jpg')) or a data: URL.",
                           title="No image file")
        try:
            return super().preprocess(payload)
        except Exception as e:  # noqa: BLE001
            raise gr.Error(f"This upload is not an image attnviz can read: {e}",
                           title="Not an image") from e


def skips(n: int):
    """``n`` no-change updates."""
    return tuple(gr.skip() for _ in range(n))
