"""The Inspect tab's event handlers: each takes the page's inputs (and its session) and returns
its outputs by name (a dict, or a generator of dicts for the browser's progressive analysis).
:mod:`~attnviz.app.inspect_tab` lays the tab out and wires these to its events; the values come
from :mod:`~attnviz.app.analysis`, :mod:`~attnviz.app.inspect_views` and
:mod:`~attnviz.app.scores_view`.

The browser's analyses (``run_inspect_ui``, ``run_inspect_auto``) never raise: a failure empties
every output and says why once, in the status line. A chained step (kind tabs, a slow
attribution, scores, the affinity), a colour-scale redraw or a gallery click's figure of an
analysis that a newer one superseded changes nothing,
also when the newer analysis was drawn while the step ran (:func:`writes_if_current`); its error,
if it fails, is logged, not shown (the page shows the newer analysis).
"""
from __future__ import annotations

import functools

import gradio as gr
import numpy as np

from ..errors import AttnvizError
from ..capture.maps import has_spatial
from . import limits
from . import views as V
from .analysis import (add_attribution, analyse, count, refused_input, request_key,
                       single_flight)
from .errors import bad_request, log, to_gr_error, user_errors
from .framing import entry_badge_md
from .inspect_views import (affinity_gallery, all_maps, cleared, headline, inspect_values,
                            kind_views, of_kinds, record_figure, tab_views)
from .scores_view import SCORE_HEADERS, scores_table, update_scores
from .catalogue import find_entry
from .model_cache import MODELS
from .sessions import (NEWEST, SESSIONS, Session, exclusive, next_generation, request_session,
                       use)

def inspect_outputs(sess, scale: str) -> dict:
    """The analysis step's values for a session (named as INSPECT_OUTPUTS)."""
    return inspect_values(sess, scale)


def run_inspect(image, model_name, method, scale="per map", target=None, layer=None,
                mask=None, box=None) -> dict:
    """``/inspect``: analyse the image; errors are raised as clear ``gr.Error`` messages.
    Optional: ``target`` (a class index or name; blank: the prediction), ``layer`` (the CAM
    methods' layer path; blank: the model's default), ``mask`` (an uploaded PNG the size of the
    image, white = object: every localisation score uses it), ``box`` ("x0, y0, x1, y1" in image
    pixels: the object's box, when there is no mask)."""
    with user_errors("analysing the image"):
        sess = analyse(image, model_name, method, target, layer, mask, box)
        out = inspect_values(sess, scale)
    if not NEWEST.show(sess.owner, sess.generation):
        out.pop("state")  # answered, but the session keeps the later analysis it already holds
    return out


def _pending_scores():
    import pandas as pd
    return pd.DataFrame([["…", "computing the scores of this analysis", "", ""]],
                        columns=SCORE_HEADERS)


def _status(sess) -> str:
    a = sess.analysis
    ms = a.timings.get("total_ms")
    took = f" · {ms / 1000:.2f} s" if ms is not None else ""
    mask = {"uploaded": " · scored against your mask",
            "box": " · scored against your box"}.get(sess.mask_source, "")
    return (f"<span class='av-ok'>{sess.model_name} on {sess.image_name}{took}{mask}</span>")


def _failed(e: Exception) -> dict:
    """Every output emptied and one message saying what was wrong; an image or a mask that was
    refused is taken out of its box too (a file the browser cannot draw would stay there as a
    broken image), ready for another upload."""
    err = to_gr_error(e, "analysing the image")
    title = getattr(err, "title", None) or "Cannot analyse"
    msg = f"<div class='av-error'><b>{title}.</b> {err.message}</div>"
    refused = refused_input(e)
    return {**cleared(), "status": msg, **({refused: None} if refused else {})}


def run_inspect_ui(image, model_name, method, scale, target=None, layer=None,
                   mask=None, box=None):
    """The browser's analysis, in steps (a generator of ``{name: value}``): the prediction and
    headline maps, then the gallery of every map. Like ``/inspect``, but a failure empties the
    outputs and says why once (no error on every output). The analysis takes its generation
    when it starts; it draws (and its chained steps may write) only if the page shows no
    analysis that started later."""
    generation = next_generation()
    try:
        sess = analyse(image, model_name, method, target, layer, mask, box, generation)
        # the page asked for another analysis meanwhile, or one that started later is drawn:
        # this one draws nothing
        # (or the store kept a later analysis of this page: this one gave way there, so the
        # page must not show it either)
        if NEWEST.superseded(sess.owner, sess.request) or \
                (sess.owner and SESSIONS.latest(sess.owner) is not sess) or \
                not NEWEST.show(sess.owner, generation):
            count("superseded")
            yield {}
            return
        first = {**inspect_values(sess, scale, gallery=False), "scores": _pending_scores(),
                 "status": _status(sess)}
    except Exception as e:  # noqa: BLE001 - every failure is answered in the status line
        # the outputs emptied and the state cleared, unless the page has since asked for
        # another analysis or a later one is drawn: then the error is logged, not shown
        sid = request_session()
        if NEWEST.superseded(sid, asked_key(image, model_name, method, target, layer, mask,
                                            box)) or not NEWEST.show(sid, generation):
            _log_stale("the analysis", e)
            yield {}
        else:
            if refused_input(e) == "mask":  # its box is emptied: the page now asks for none
                note_request(image, model_name, method, scale, target, layer, None, box)
            yield _failed(e)
        return
    # progressive: the prediction and headline maps first, then the gallery of every map
    yield first
    try:
        if superseded(sess):
            return
        yield {"gal_all": all_maps(sess, scale)}
    except Exception as e:  # noqa: BLE001
        if superseded(sess):  # a newer analysis was asked for or drawn meanwhile
            _log_stale("the gallery", e)
            return
        yield {"status": _failed(e)["status"]}


def selected_badge(model_name):
    """The catalogue's badge for the model just selected (nothing is built)."""
    try:
        return entry_badge_md(find_entry(model_name))
    except AttnvizError:
        return gr.skip()


def _already_shown(sess, image, model_name, method, *options) -> bool:
    """Whether ``sess`` already holds the analysis of (image, model, method, options) and its
    page shows it (not an analysis that gave way to another)."""
    if not isinstance(sess, Session) or sess.dropped or not current(sess):
        return False
    try:
        method = V.check_method(method)
    except AttnvizError:
        return False
    return sess.request == request_key(image, model_name, method, *options)


def run_inspect_auto(image, model_name, method, scale, target=None, layer=None,
                     mask=None, box=None, sess=None):
    """A new image, model or method re-runs the analysis when it is fast (lite models); for a
    full-size model the previous results are cleared and Analyse runs it. An event that asks
    for the analysis already shown (an upload fires ``change`` more than once: the image
    cleared, then the file, then its URL) changes nothing."""
    if image is None:
        yield {}
        return
    try:
        entry = find_entry(model_name)
    except AttnvizError as e:
        yield _failed(e)
        return
    # the analysis this page already shows or that its previous event just made (an upload
    # fires change more than once: the image cleared, then the file, then its URL)
    sid = request_session()
    options = (target, layer, mask, box)
    if any(_already_shown(s, image, entry.name, method, *options)
           for s in (sess, SESSIONS.latest(sid))):
        yield {}
        return
    if not NEWEST.claim(sid, asked_key(image, entry.name, method, *options)):
        count("superseded")  # a newer upload or choice of this page waits: this one gives way
        yield {}
        return
    if not entry.is_lite:
        # the badge follows the selection at once (from the catalogue: nothing is built); the
        # state is cleared: an earlier analysis's chained steps write nothing back
        NEWEST.show(sid, next_generation())
        yield {**cleared(), "badge": entry_badge_md(entry),
               "status": f"<span class='av-hint'><b>{entry.name}</b> is a "
                         "full-size model: press <b>Analyse</b> to run it.</span>"}
        return
    # the same request from the same page while it runs (an upload's repeated change events):
    # it runs once, the repeat waits for it and changes nothing
    with single_flight((sid, str(image), entry.name, str(method), *map(str, options))) as first:
        if not first or _already_shown(SESSIONS.latest(sid), image, entry.name, method, *options):
            yield {}
            return
        yield from run_inspect_ui(image, model_name, method, scale, target, layer, mask, box)




def asked_key(image, model_name, method, *options) -> tuple:
    """The request key (:func:`.analysis.request_key`) of what the page's inputs ask for: the
    model's and method's own names where they are known, as the analysis writes them."""
    try:
        model_name = find_entry(model_name).name
    except AttnvizError:
        model_name = str(model_name)
    try:
        method = V.check_method(method)
    except AttnvizError:
        method = str(method)
    return request_key(image, model_name, method, *options)


def note_request(image, model_name, method, scale, target=None, layer=None, mask=None,
                 box=None) -> None:
    """Every change of the page's inputs, at once and outside the queue: the analysis the page
    now asks for (:data:`.sessions.NEWEST`). An earlier analysis of the page still waiting or
    running, and its chained steps, then give way (:func:`superseded`). No image (the image
    cleared, as an upload first does) asks for nothing."""
    if image is None:
        return
    NEWEST.note(request_session(), asked_key(image, model_name, method, target, layer, mask,
                                             box))


def current(sess) -> bool:
    """Whether ``sess`` is still the analysis its page shows (no analysis that started later
    was drawn since): a chained step of it may write its outputs and the page's state. A
    session outside a page (no owner), or no session, is current."""
    if not isinstance(sess, Session) or sess.owner is None:
        return True
    return NEWEST.current(sess.owner, sess.generation)


def superseded(sess) -> bool:
    """True when this page has asked for another analysis than ``sess`` (a new upload or
    choice, noted at once by :func:`note_request`) or shows a later one: a chained step (kind
    tabs, a slow attribution, scores) of the earlier request need not run (the page's newest
    request will draw its own)."""
    if not isinstance(sess, Session) or sess.owner is None:
        return False
    return NEWEST.superseded(sess.owner, sess.request) or not current(sess)


def _log_stale(what: str, e: BaseException) -> None:
    """A superseded analysis's step failed: its page shows a newer analysis, so the error is
    logged, not shown there."""
    log.warning("%s of a superseded analysis failed (not shown; its page shows a newer "
                "one): %s", what, getattr(e, "message", None) or f"{type(e).__name__}: {e}")


def writes_if_current(step):
    """A step that reads the page's session (its first argument) and writes outputs, maybe the
    state back: its outputs are applied only if the session it used (the ``state`` it returns,
    else the one it read) is still the page's current analysis when it ends. A step of an
    earlier analysis that ends after a later analysis was drawn (the first analysis's scores
    ending after another model's analysis) then changes nothing, instead of drawing its
    results and writing its old session back over the new ones; if it fails then, its error
    is logged, not shown over the newer analysis (a current step's error is raised)."""
    @functools.wraps(step)
    def run(sess, *args, **kwargs):
        try:
            out = step(sess, *args, **kwargs)
        except Exception as e:
            if current(sess):
                raise
            count("stale")
            _log_stale(step.__name__, e)
            return {}
        if out and not current(out.get("state", sess)):
            count("stale")
            return {}
        return out
    return run


@writes_if_current
def run_maps(sess, scale, selected="all") -> dict:
    """``/maps``: every kind tab for the session's analysis."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None or superseded(sess):
        return {}
    count("maps")
    with user_errors("drawing the attention maps"):
        out = kind_views(sess, scale, selected)
        sess.drawn = (scale, selected)
        return out


@writes_if_current
def run_maps_shown(sess, scale, selected="all") -> dict:
    """The browser's kind tabs: every tab's label and count, the open tab's overlays and
    figures; the other tabs are emptied and drawn when opened (:func:`run_tab`)."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None or superseded(sess):
        return {}
    count("maps")
    with user_errors("drawing the attention maps"):
        out = kind_views(sess, scale, selected, only={selected})
        sess.drawn = (scale, selected)
        sess.tabs_drawn = {(scale, selected)}
        return out


def run_maps_once(sess, scale, selected="all") -> dict:
    """The browser's kind tabs after an analysis (:func:`run_maps_shown`): drawn unless already
    drawn for this analysis with this scale and selection (a repeated event changes
    nothing)."""
    if isinstance(sess, Session) and not sess.dropped:
        if sess.drawn == (scale, selected):
            return {}
        sess.drawn = (scale, selected)  # claimed now: a repeated chain that starts meanwhile skips
    return run_maps_shown(sess, scale, selected)


@writes_if_current
def run_tab(sess, scale, key) -> dict:
    """A kind tab opened: its overlays and figures, unless already drawn for this analysis and
    scale."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if not isinstance(sess, Session) or sess.dropped or superseded(sess):
        return {}
    if (scale, key) in sess.tabs_drawn:
        return {}
    sess.tabs_drawn.add((scale, key))  # claimed now: a second click meanwhile changes nothing
    count("tabs")
    with user_errors("drawing the tab"):
        return tab_views(sess, scale, key)


@writes_if_current
def rescale(sess, scale) -> dict:
    """The headline redrawn on another colour scale (per map / shared); like a chained step, a
    redraw of an analysis that a later one replaced while it ran changes nothing."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None or superseded(sess):
        return {}
    with user_errors("redrawing the maps"):
        return headline(sess, scale)


def figure_for_kind(kind: str, output: str):
    """Gallery click -> that map's Plotly figure, as ``{output: figure}``; a click on an
    analysis that a later one replaced while the figure was drawn changes nothing."""
    kinds = (kind,)

    @writes_if_current
    def pick(sess, scale, evt: gr.SelectData) -> dict:
        use(sess)  # this session's analysis was just used (sessions' LRU)
        if sess is None or evt is None or superseded(sess):
            return {}
        recs = [r for r in of_kinds(sess.analysis.maps, kinds) if has_spatial(r)]
        i = evt.index if isinstance(evt.index, int) else 0
        if not 0 <= i < len(recs):
            return {}
        with user_errors("drawing the figure"):
            return {output: record_figure(recs[i], sess, scale)}
    return pick


def choices_for(model_name):
    """The target and layer choices of ``model_name`` ("index: name" for every class, searchable;
    the convolutional stages by path), both cleared."""
    from ..attribution.choice import cam_layers, class_choices
    try:
        model = MODELS.get(model_name).model
    except AttnvizError:
        return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
    return (gr.update(choices=class_choices(model), value=None),
            gr.update(choices=cam_layers(model), value=None))


def pick_class(sess, evt: gr.SelectData):
    """A click on a class of the top 5 -> explain that class."""
    if sess is None or evt is None or not isinstance(evt.value, str):
        return gr.skip()
    names = sess.analysis.classes or []
    if evt.value in names:
        return f"{names.index(evt.value)}: {evt.value}"
    return evt.value


def pick_query(evt: gr.SelectData):
    """Image click -> (x, y) in image pixels."""
    try:
        x, y = evt.index[:2]
        return float(x), float(y)
    except (TypeError, ValueError):
        return gr.skip(), gr.skip()


def run_affinity(sess, x, y, scale, head=None) -> dict:
    """The affinity rows of the query at image pixel (x, y): every affinity overlay with the query
    marked, and the explorer figure of the deepest affinity map. ``head``: the head selector's
    choice for multi-head maps ("mean over heads", "rollout across layers", "head 2")."""
    if superseded(sess):  # the page's state still holds an earlier analysis: query the new one
        sess = SESSIONS.latest(sess.owner) or sess
    return _affinity(sess, x, y, scale, head)


@writes_if_current
def _affinity(sess, x, y, scale, head=None) -> dict:
    """:func:`run_affinity` on the session it queries (its error shown if that session is
    still the page's current one)."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    with user_errors("computing the affinity of the query"):
        if sess is None:
            raise bad_request("Run an analysis first (Analyse, or /inspect), then choose a query "
                              "point.", "No analysis yet")
        h, w = sess.analysis.image.shape[:2]
        try:
            x, y = float(x), float(y)
        except OverflowError:  # an integer beyond any float (10**400)
            raise bad_request(f"The query point lies outside the image ({w} x {h} pixels): "
                              "a coordinate is too large.", "Query outside the image") from None
        except (TypeError, ValueError):
            raise bad_request(f"The query point must be two numbers (x, y) in image pixels, not "
                              f"{limits.echo(x)}, {limits.echo(y)}.") from None
        if not (0 <= x < w and 0 <= y < h) or not np.isfinite([x, y]).all():
            raise bad_request(f"The query ({x:.6g}, {y:.6g}) lies outside the image ({w} x {h} "
                              "pixels).", "Query outside the image")
        recs = V.queried_records(sess.analysis.maps)
        sess.query = (x, y)
        if head is not None:
            if head not in V.head_choices(sess.analysis.maps):
                raise bad_request(f"{head!r} is not a head of {sess.model_name}'s attention; "
                                  f"choose from {V.head_choices(sess.analysis.maps)}.")
            sess.head = head
        if not recs:  # an error, not a warning: API clients are told why too
            raise bad_request(f"{sess.model_name} has no position-affinity module, so there is "
                              "no affinity to query; lite_nonlocal, lite_danet and lite_sagan "
                              "have one.", "No affinity map")
        return {"gal_affinity": affinity_gallery(sess, scale),
                "plot_affinity": record_figure(recs[-1], sess, scale), "state": sess}


@writes_if_current
def run_scores(sess, full: bool = False) -> dict:
    """Pointing game (mask known), deletion / insertion AUC, attention-vs-attribution
    correlation, for the last analysis; computed once per analysis. Deletion / insertion run
    at once for lite models or on a GPU; for a full-size model on a CPU on request (``full``)."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None:
        if full:
            raise bad_request("Run an analysis first.", "No analysis yet")
        return {}
    if superseded(sess):
        return {}
    with user_errors("scoring the maps"), exclusive(sess):  # once per analysis
        update_scores(sess, full)
        return {"scores": scores_table(sess), "state": sess}


def run_scores_full(sess) -> dict:
    """All scores including deletion / insertion AUC, whatever the model's size."""
    return run_scores(sess, full=True)


@writes_if_current
def run_attribute(sess, scale, target=None, layer=None) -> dict:
    """Compute a slow attribution (IG, SmoothGrad, Occlusion, GradientSHAP, Score-CAM,
    Ablation-CAM) for the last analysis in the heavy queue, then redraw the headline. ``target``
    and ``layer`` (optional) are the analysis's own: another class or layer needs a new
    analysis (``/inspect`` with them), whose scores and headline follow it."""
    use(sess)  # this session's analysis was just used (sessions' LRU)
    if sess is None or superseded(sess) or sess.method in sess.analysis.attributions:
        return {}
    with user_errors(f"computing {V.method_name(sess.method)}"):
        from ..attribution.choice import resolve_cam_layer, resolve_target
        model = MODELS.get(sess.model_name).model
        t, lay = resolve_target(model, target), resolve_cam_layer(model, layer)
        if (t is not None and t != sess.analysis.target) or (lay is not None and
                                                              lay != sess.layer):
            raise bad_request(f"This analysis explains class {sess.analysis.target} at layer "
                              f"{sess.layer or 'default'}; run /inspect with target={target!r}"
                              f" and layer={layer!r} to explain those.", "Analyse again")
        add_attribution(sess)
        return {**headline(sess, scale), "state": sess}
