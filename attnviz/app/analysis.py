"""The analysis behind the Inspect tab: one request -> a :class:`~attnviz.app.sessions.Session`
(no rendering), the attribution shown, the agreement score and the JSON summary ``/inspect``
returns.

    sess = analyse("photo.jpg", "lite_cbam", "gradcam")
    summary(sess)["top_k"]
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..capture.maps import has_spatial
from . import views as V
from .batching import BATCHER
from .capacity import analysis_slot
from .components import gpu
from .errors import bad_request
from .examples import known_links, known_mask
from .model_cache import MODELS, autocast
from .sessions import SESSIONS, Session, next_generation


# how many analyses and chained steps this server ran (``/health``'s ``work``): the tests check
# that one upload runs one analysis
WORK: Counter = Counter()
_WORK_LOCK = threading.Lock()


def count(step: str) -> None:
    with _WORK_LOCK:
        WORK[step] += 1


def work() -> dict:
    with _WORK_LOCK:
        return dict(WORK)


_RUNNING: dict[tuple, threading.Event] = {}


@contextlib.contextmanager
def single_flight(key: tuple, wait: float = 60.0):
    """Run one request per ``key`` at a time: yields True to the first caller (it does the
    work); a caller arriving while it runs waits for it to end, then gets False (the answer is
    already on its way to the same page)."""
    with _WORK_LOCK:
        running = _RUNNING.get(key)
        if running is None:
            running = _RUNNING[key] = threading.Event()
            leader = True
        else:
            leader = False
    if not leader:
        running.wait(wait)
        yield False
        return
    try:
        yield True
    finally:
        with _WORK_LOCK:
            _RUNNING.pop(key, None)
        running.set()


def _to_cpu(a) -> None:
    """Keep the session's copy of the analysis off the GPU, in float32 (an analysis under
    autocast records bfloat16 tensors)."""
    for r in a.maps:
        r.tensor = r.tensor.detach().float().cpu()
    for att in a.attributions.values():
        att.raw = att.raw.detach().float().cpu()
    if a.input is not None:
        a.input = a.input.detach().float().cpu()


@gpu
def _run_inspect(model, pil, methods, amp: bool = False, target=None, explain_opts=None):
    """The analysis of one image; concurrent ones of the same model and options share one
    batched pass (:mod:`.batching`)."""
    from ..analysis.inspect import inspect

    def single(image):
        with autocast(amp):
            return inspect(model, image, attributions=methods, target=target,
                           explain_opts=explain_opts)

    def batch(images):
        with autocast(amp):
            return inspect(model, images, attributions=methods, target=target,
                           explain_opts=explain_opts)

    key = (id(model), tuple(methods), bool(amp), repr(target), repr(explain_opts))
    return BATCHER.run(key, pil, single, batch)


def check_image(image_path) -> None:
    """A clear refusal when no image was given."""
    if image_path is None or (isinstance(image_path, str) and not image_path.strip()):
        raise bad_request("Upload an image or pick one of the examples first.", "No image")


def layer_opts(methods, layer) -> dict:
    """{method: {"layer": layer}} for the methods that take a layer (none without a layer)."""
    from ..attribution.explain import LAYER_METHODS
    return {m: {"layer": layer} for m in methods if layer and m in LAYER_METHODS}


def analyse(image_path, model_name, method, target=None, layer=None, mask=None,
            box=None, generation: int | None = None) -> Session:
    """The analysis of one request, as a Session (no rendering). ``target``: a class index or
    name (None: the prediction); ``layer``: the CAM methods' layer path (None: the model's
    default); ``mask``: an uploaded object mask the size of the image (white = object), which
    every localisation score then uses (else the shipped example's own mask, if any); ``box``:
    "x0, y0, x1, y1" in image pixels, the object's box, when no mask is given.
    ``generation``: when the request started (:func:`.sessions.next_generation`; taken now
    when not given). An image or a mask that cannot be used raises its error marked as that
    input's (:func:`refused_input`)."""
    from ..attribution.choice import resolve_cam_layer, resolve_target
    from ..analysis.inspect import box_mask, load_mask
    from ..data.images import load_image
    from ..errors import AttnvizError, ImageError
    if generation is None:
        generation = next_generation()
    check_image(image_path)
    method = V.check_method(method)
    loaded = MODELS.get(model_name)
    key = request_key(image_path, loaded.name, method, target, layer, mask, box)
    target = resolve_target(loaded.model, target)
    layer = resolve_cam_layer(loaded.model, layer)
    with analysis_slot():  # shared by Gradio's events and the JSON route
        try:
            pil = load_image(image_path)
        except ImageError as e:
            e.input_name = "image"  # the image itself was refused (refused_input)
            raise
        img = np.asarray(pil)
        try:
            own = None if mask is None else load_mask(mask, img.shape[:2], exact=True)
        except AttnvizError as e:  # unreadable, not the image's size, marking nothing
            e.input_name = "mask"
            raise
        source = "uploaded"
        if own is None and isinstance(box, str) and box.strip():  # a box instead of a mask
            own, source = load_mask(box_mask(box, img.shape[:2]), img.shape[:2]), "box"
        methods = [method] if method in V.FAST_METHODS else ["gradcam"]
        count("analyses")
        t0 = time.perf_counter()
        a = _run_inspect(loaded.model, pil, methods, loaded.amp, target,
                         layer_opts(methods, layer))
        a.timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        _to_cpu(a)
    example, known = known_mask(img)
    links = known_links(img)  # a relational example: its partner and distractor are outlined
    name = Path(str(image_path)).name if isinstance(image_path, (str, Path)) else "image"
    return SESSIONS.add(Session(a, loaded.name, method, V.display_image(img), name,
                                known if own is None else own, example, badge=loaded.badge,
                                links=links, query=links["query_xy"] if links else None,
                                target=target, layer=layer,
                                mask_source=None if own is None and known is None else
                                source if own is not None else "example", request=key,
                                generation=generation))


REFUSABLE_INPUTS = ("image", "mask")  # the file inputs the page empties when one is refused


def refused_input(exc: BaseException) -> str | None:
    """The file input ``exc`` is :func:`analyse` refusing: "image" (the image itself:
    unreadable, truncated, too large) or "mask" (the object mask: unreadable, not the image's
    size, marking nothing); None for any other error. The page then empties that input's box."""
    name = getattr(exc, "input_name", None)
    return name if name in REFUSABLE_INPUTS else None


def request_key(image_path, model_name: str, method: str, *options) -> tuple:
    """What identifies an analysis request: the image file (uploads are named by their
    content's hash), the model, the attribution and the options as given (target, layer,
    mask, box)."""
    return (str(image_path), model_name, method, *map(str, options))


def shown_method(sess: Session) -> str:
    """The attribution shown: the one asked for once computed, else Grad-CAM."""
    return sess.method if sess.method in sess.analysis.attributions else \
        next(iter(sess.analysis.attributions))


def agreement(sess: Session, rec, method: str):
    """Spearman rank correlation of an attention record with an attribution (model-input grid;
    the library's ``Analysis.agreement``, as in the scores)."""
    if rec is None or method not in sess.analysis.attributions:
        return None
    key = (rec.tap, method)  # once per analysis: the headline and the summary both show it
    if key not in sess.agreements:
        sess.agreements[key] = V.finite(sess.analysis.agreement(rec, method))
    return sess.agreements[key]


def summary(sess: Session) -> dict:
    """The JSON summary /inspect returns."""
    a = sess.analysis
    d = a.to_dict()
    rec = V.headline_record(a.maps)
    method = shown_method(sess)
    d.update(
        weights=sess.badge, example=sess.example, mask_known=sess.mask is not None,
        mask_source=sess.mask_source, target_asked=sess.target, layer=sess.layer,
        attribution=method, attribution_pending=None if method == sess.method else sess.method,
        headline=None if rec is None else {"tap": rec.tap, "caption": V.map_caption(rec, a.maps)},
        agreement=agreement(sess, rec, method),
        overlays=([V.map_caption(r, a.maps) for r in a.maps if has_spatial(r)]
                  + [V.method_name(method)]),
    )
    d.pop("preprocess", None)
    return d


@gpu(duration=120)
def _slow_attribution(model, image, method, target, layer=None):
    from ..attribution.explain import explain_tensor
    from ..data.images import preprocess
    x, pre = preprocess(model, image)
    return explain_tensor(model, x, pre, method, target, **layer_opts([method], layer).get(
        method, {}))


def add_attribution(sess: Session) -> bool:
    """Compute the slow attribution the session asked for (IG, SmoothGrad, Occlusion,
    GradientSHAP) and add it to the analysis; False when there was nothing to compute."""
    if sess.method in sess.analysis.attributions:
        return False
    loaded = MODELS.get(sess.model_name)
    t0 = time.perf_counter()
    att = _slow_attribution(loaded.model, sess.analysis.image, sess.method, sess.analysis.target,
                            sess.layer)
    att.raw = att.raw.detach().float().cpu()
    sess.analysis.attributions[sess.method] = att
    sess.analysis.timings[sess.method] = round((time.perf_counter() - t0) * 1000, 1)
    sess.scores = {}
    SESSIONS.resize(sess)  # counted in the sessions' memory
    return True
