"""A lean JSON route beside Gradio's API, for programs: one request, one answer, no queue
events, sessions or file downloads.

    POST /attnviz/api/inspect   {"image": <path from /gradio_api/upload, or a data: URL>,
                                 "model": "lite_cbam", "method": "gradcam", "scale": "per map",
                                 "target": null, "layer": null, "mask": null, "box": null,
                                 "gallery": true}
      200 {"top5", "badge", "summary", "agreement",
           "images": {"head_att": {"label", "data"}, "head_attr": {...}, "legend": {...}},
           "gallery": [{"caption", "data"}, ...]}          # data: "data:image/jpeg;base64,..."
      400 / 413 / 429 / 500 {"error": message, "title": title}
    GET  /attnviz/api/models    {"models": [...]}   (the floor: a call that does nothing)

The answer holds what Gradio's ``/inspect`` returns (the same values, from the same functions:
:func:`.analysis.analyse`, :func:`.inspect_views.inspect_values`), with its images inline:
Gradio's ``/inspect`` is four HTTP exchanges plus one per image and spends most of its CPU
around the analysis (see docs/serving.md); this route is one exchange.

The same guards as Gradio's path: the request-size limit (:class:`.guards.BodyLimit` runs
before this route), an image only from this server's uploads or the examples
(:func:`.uploads.uploaded_path`) or a ``data:`` URL checked on its header
(:func:`.components.data_url_to_file`), the pixel limit of the library's loader, every
message cut (:func:`.guards.choice_message`), and admission: at most ``ANALYSES`` analyses run
at once and ``limits.QUEUE_MAX`` wait; beyond that the answer is 429 with a message. The
analysis is not kept: its session is freed once the answer is written.
"""
from __future__ import annotations

import base64
import json

from . import limits

PREFIX = "/attnviz/api"
FIELDS = ("image", "model", "method", "scale", "target", "layer", "mask", "box", "gallery")


class Refusal(Exception):
    """A request this route answers with ``status`` and a message for a person."""

    def __init__(self, status: int, message: str, title: str = "Bad request"):
        super().__init__(message)
        self.status, self.message, self.title = status, message, title


# ------------------------------------------------------------------------------ the request
def _text(body: dict, key: str, default=None, allow_int: bool = False):
    v = body.get(key, default)
    if v is None or isinstance(v, str) or (allow_int and isinstance(v, int)
                                           and not isinstance(v, bool)):
        return v
    raise Refusal(400, f"'{key}' must be {'a number or ' if allow_int else ''}a string, not "
                       f"{limits.echo(v)}.")


def parse(raw: bytes) -> dict:
    """The request's fields, checked (types, known names); Refusal otherwise."""
    from . import views as V
    from .catalogue import default_model
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refusal(400, "The body must be a JSON object, e.g. {\"image\": \"<path from "
                           "/gradio_api/upload>\", \"model\": \"lite_cbam\"}.") from None
    if not isinstance(body, dict):
        raise Refusal(400, f"The body must be a JSON object, not {type(body).__name__}.")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise Refusal(400, f"Unknown field {limits.echo(unknown[0])}; the fields are "
                           f"{', '.join(FIELDS)}.")
    image = _text(body, "image")
    if not image:
        raise Refusal(400, "Send an image: 'image' is the path /gradio_api/upload returned, or "
                           "a data: URL.", "No image")
    out = {"image": image, "model": _text(body, "model") or default_model(),
           "method": _text(body, "method") or "gradcam",
           "scale": _text(body, "scale") or "per map",
           "target": _text(body, "target", allow_int=True), "layer": _text(body, "layer"),
           "mask": _text(body, "mask"), "box": _text(body, "box"),
           "gallery": body.get("gallery", True)}
    if out["scale"] not in V.SCALES:
        raise Refusal(400, f"'scale' is one of {list(V.SCALES)}, not "
                           f"{limits.echo(out['scale'])}.")
    if not isinstance(out["gallery"], bool):
        raise Refusal(400, "'gallery' must be true or false.")
    return out


def _image_path(image: str, cache_dir: str) -> str:
    """A path the analysis may open: an upload of this server or an example (the path
    resolved and checked), or a data: URL written to the cache after its header's check."""
    from .components import data_url_to_file
    from .uploads import uploaded_path
    if image.startswith("data:"):
        return data_url_to_file(image, cache_dir)
    return uploaded_path(image)


# ------------------------------------------------------------------------------ the answer
def _data_url(img, fmt: str) -> str:
    """An RGB array as a data: URL (JPEG at the app's quality, or PNG)."""
    from PIL import Image

    from .cache_fix import encode
    data = encode(Image.fromarray(img), fmt)
    return f"data:image/{fmt};base64,{base64.b64encode(data).decode('ascii')}"


def _image(update, fmt: str = "jpeg") -> dict:
    """``{"label", "data"}`` of a headline update (``gr.update`` dict) or a bare array."""
    if isinstance(update, dict):
        value, label = update.get("value"), update.get("label")
    else:
        value, label = update, None
    return {"label": label, "data": None if value is None else _data_url(value, fmt)}


def answer(fields: dict, cache_dir: str) -> dict:
    """The analysis of one request as JSON (blocking: run it in a worker thread)."""
    import gradio as gr

    from .analysis import analyse
    from .errors import to_gr_error
    from .inspect_views import inspect_values
    from .sessions import SESSIONS
    sess = None
    try:
        path = _image_path(fields["image"], cache_dir)
        mask = _image_path(fields["mask"], cache_dir) if fields["mask"] else None
        sess = analyse(path, fields["model"], fields["method"], fields["target"],
                       fields["layer"], mask, fields["box"])
        v = inspect_values(sess, fields["scale"], gallery=fields["gallery"])
        return {"top5": v["top5"], "badge": v["badge"], "summary": v["summary"],
                "agreement": v["agreement"],
                "images": {"head_att": _image(v["head_att"]), "head_attr": _image(v["head_attr"]),
                           "legend": _image(v["legend"], "png")},
                "gallery": [{"caption": c, "data": _data_url(img, "jpeg")}
                            for img, c in v.get("gal_all", [])]}
    except Exception as e:  # noqa: BLE001 - every failure is answered with a message
        err = to_gr_error(e, "analysing the image")
        unexpected = not isinstance(e, gr.Error) and getattr(err, "title", "") in (
            "Unexpected error", "Out of memory")
        raise Refusal(500 if unexpected else 400, err.message,
                      getattr(err, "title", None) or "Cannot analyse") from None
    finally:
        if sess is not None:
            SESSIONS.free(sess)  # nothing refers to it once answered


# ------------------------------------------------------------------------------ admission
class Admission:
    """At most ``running`` analyses at once, ``waiting`` more in line; beyond: refused."""

    def __init__(self, running: int, waiting: int):
        self.running, self.waiting = running, waiting
        self.inside = 0  # running + waiting
        self._limiter = None

    def limiter(self):
        import anyio
        if self._limiter is None:  # made inside the event loop
            self._limiter = anyio.CapacityLimiter(self.running)
        return self._limiter

    async def run(self, fn, *args):
        import anyio
        if self.inside >= self.running + self.waiting:
            raise Refusal(429, f"The server is very busy ({self.waiting} analyses waiting); "
                               "try again in a minute.", "Busy")
        self.inside += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter())
        finally:
            self.inside -= 1


ADMISSION = None


def admission() -> Admission:
    global ADMISSION
    if ADMISSION is None:
        from .capacity import analyses_at_once
        ADMISSION = Admission(analyses_at_once(), limits.QUEUE_MAX)
    return ADMISSION


# ------------------------------------------------------------------------------ the route
class JsonApi:
    """ASGI middleware serving :data:`PREFIX` routes; every other request goes on to Gradio.
    Placed after :class:`.guards.BodyLimit`, so a body over the limit never reaches it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX + "/"):
            return await self.app(scope, receive, send)
        from starlette.requests import Request
        route, method = path[len(PREFIX):].rstrip("/"), scope.get("method", "GET")
        try:
            if route == "/models" and method == "GET":
                from .catalogue import model_choices
                out = {"models": [c[1] if isinstance(c, tuple) else c for c in model_choices()]}
            elif route == "/inspect" and method == "POST":
                raw = await Request(scope, receive).body()
                out = await admission().run(answer, parse(raw), _cache_dir())
            elif route in ("/models", "/inspect"):
                raise Refusal(405, f"{route} takes {'GET' if route == '/models' else 'POST'}.",
                              "Method not allowed")
            else:
                raise Refusal(404, f"There is no {PREFIX}{limits.echo(route)[1:-1]}; the "
                                   f"routes are {PREFIX}/inspect (POST) and {PREFIX}/models.",
                              "Not found")
            response = _json(out)
        except Refusal as r:
            from .guards import choice_message
            response = _json({"error": choice_message(r.message), "title": r.title}, r.status)
        await response(scope, receive, send)


def _json(out, status: int = 200):
    """A JSON response as Gradio writes its own (orjson: numpy values, NaN as null)."""
    import orjson
    from starlette.responses import Response
    return Response(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY
                                 | orjson.OPT_NON_STR_KEYS), status_code=status,
                    media_type="application/json")


def _cache_dir() -> str:
    from gradio.utils import get_upload_folder
    return get_upload_folder()


def middleware() -> list:
    """The route, for ``launch(app_kwargs={"middleware": [... BodyLimit, *middleware()]})``."""
    from starlette.middleware import Middleware
    return [Middleware(JsonApi)]
