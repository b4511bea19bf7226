"""A page's analyses in the order they started (app.sessions.NewestRequests.show / current and
the generation each analysis takes when it starts): a chained step (scores, kind tabs, a tab)
of an earlier analysis that ends after a later analysis was drawn writes nothing back -- not
its outputs, not its old session into the page's state -- while the page's current analysis,
including a re-analysis from a click in the top 5 (a class chosen), writes its own. Real
analyses of real models through the app's handlers, in a request context of one page; no
server."""
from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import pytest

pytest.importorskip("gradio")

from attnviz.app import sessions  # noqa: E402
from attnviz.app.analysis import analyse, work  # noqa: E402
from attnviz.app.inspect_handlers import (current, figure_for_kind, note_request,  # noqa: E402
                                          rescale, run_inspect_auto, run_inspect_ui,
                                          run_maps_shown, run_scores, run_tab)
from attnviz.app.sessions import NEWEST, SESSIONS, NewestRequests, next_generation  # noqa: E402

STAR = "assets/examples/star.png"
FULL = "seresnet50"  # full-size: on a CPU its scores skip deletion / insertion (milliseconds)
LITE = "lite_cbam"


@pytest.fixture
def page():
    """A request context of one new page (its Gradio session id); its state forgotten after."""
    from gradio.context import LocalContext
    sid = f"page-{uuid.uuid4().hex}"
    token = LocalContext.request.set(SimpleNamespace(session_hash=sid))
    try:
        yield sid
    finally:
        LocalContext.request.reset(token)
        SESSIONS.free(owner=sid)
        NEWEST.forget(sid)


def drawn(gen) -> dict:
    """The first step a browser analysis (a generator of {name: value}) draws."""
    return next(gen)


def stale_count() -> int:
    return work().get("stale", 0)


def test_show_and_current_follow_the_order_analyses_started():
    n = NewestRequests()
    g1, g2, g3 = next_generation(), next_generation(), next_generation()
    assert g1 < g2 < g3
    assert n.current("page", g1)  # nothing shown yet: no step is refused
    assert n.show("page", g2) and n.current("page", g2) and not n.current("page", g1)
    assert not n.show("page", g1)  # started before the one shown, ended after: gives way
    assert n.current("page", g2) and not n.current("page", g1)
    assert n.show("page", g3) and not n.current("page", g2) and n.current("page", g3)
    assert n.show("other page", g1) and n.current("other page", g1)  # pages are separate
    assert n.show(None, g1) and n.current(None, g1)  # outside a page: always
    n.forget("page")
    assert n.current("page", g1)


def test_shown_pages_are_bounded():
    n = NewestRequests(max_pages=3)
    for i in range(10):
        n.show(f"p{i}", next_generation())
    assert len(n._shown) == 3


def test_stale_scores_step_writes_nothing_back(page):
    """The reported race: the page's first analysis's scores step starts while it is current,
    another model's analysis is drawn while it computes, and it ends after: its table and its
    old session must not be written over the new analysis (it returns no update)."""
    a = drawn(run_inspect_ui(STAR, FULL, "gradcam", "per map"))["state"]
    assert a.owner == page and current(a)

    def scores_while(during):
        """run_scores(a) held after its start (on the session's own lock) while ``during``
        runs: the interleaving of the race, made deterministic."""
        got = {}
        with sessions.exclusive(a):
            t = threading.Thread(target=lambda: got.update(out=run_scores(a)))
            t.start()
            during()
        t.join(60)
        assert not t.is_alive()
        return got["out"]

    applied = scores_while(lambda: None)  # nothing newer drawn: the current step writes
    assert set(applied) == {"scores", "state"} and applied["state"] is a
    assert "pointing game" in set(applied["scores"]["score"])
    before = stale_count()
    news = {}
    stale = scores_while(lambda: news.update(drawn(run_inspect_ui(STAR, LITE, "gradcam",
                                                                  "per map"))))
    b = news["state"]
    assert stale == {} and stale_count() == before + 1  # refused when it ended
    assert b.generation > a.generation and current(b) and not current(a)
    assert SESSIONS.latest(page) is b


def test_analysis_that_started_first_and_ends_last_gives_way(page):
    """An analysis that started before the one the page shows and ends after it is not
    drawn and does not replace the page's session in the store."""
    older = next_generation()
    b = drawn(run_inspect_ui(STAR, LITE, "gradcam", "per map"))["state"]
    late = analyse(STAR, LITE, "gradcam", target="1", generation=older)
    assert not NEWEST.show(page, late.generation)
    assert SESSIONS.latest(page) is b and current(b) and not current(late)


def test_reanalysis_from_a_click_writes_and_the_earlier_one_does_not(page):
    """A click in the top 5 chooses a class: the page notes it and re-analyses (the target's
    change event); that analysis gets its own generation and its chained steps write, the
    earlier analysis's steps that end now write nothing."""
    b = drawn(run_inspect_auto(STAR, LITE, "gradcam", "per map"))["state"]
    assert current(b)
    assert run_maps_shown(b, "per map")  # the current analysis's step draws
    target = f"1: {b.analysis.classes[1]}"  # what pick_class puts in the box
    note_request(STAR, LITE, "gradcam", "per map", target)
    c = drawn(run_inspect_auto(STAR, LITE, "gradcam", "per map", target, sess=b))["state"]
    assert c is not b and c.generation > b.generation and c.analysis.target == 1
    assert current(c) and not current(b)
    before = stale_count()
    assert run_maps_shown(c, "per map")  # the click's analysis's chained step draws
    assert run_maps_shown(b, "all") == {} and run_tab(b, "per map", "channel") == {}
    assert run_scores(b) == {}  # the earlier analysis's steps write nothing
    # a repeated change event of the click asks for what is shown: nothing runs again
    assert drawn(run_inspect_auto(STAR, LITE, "gradcam", "per map", target, sess=c)) == {}
    assert stale_count() == before  # refused at their start, not computed


def test_an_analysis_the_store_gave_way_for_is_not_drawn(page, monkeypatch):
    """A starts, then B (another model); while B runs the page asks for A's inputs again. B ends
    first and is stored but not drawn (no longer asked for); A ends last: the store keeps B, the
    later-started one, so A must not be drawn either (the page would show an analysis the store
    does not hold: uncounted memory, never freed). The page's pending re-analysis of A's inputs
    then draws a new, stored analysis."""
    import attnviz.app.inspect_handlers as handlers
    real, gate = handlers.analyse, threading.Event()

    def held_back(image, model_name, *args, **kwargs):  # the real analysis, A's held back
        if model_name == LITE:
            gate.wait(60)
        out = real(image, model_name, *args, **kwargs)
        if model_name == "lite_se":
            note_request(STAR, LITE, "gradcam", "per map")  # the page asks for A's again
        return out

    monkeypatch.setattr(handlers, "analyse", held_back)
    from gradio.context import LocalContext
    ctx = LocalContext.request.get()
    note_request(STAR, LITE, "gradcam", "per map")
    steps_a = []

    def run_a():
        LocalContext.request.set(ctx)
        steps_a.extend(run_inspect_ui(STAR, LITE, "gradcam", "per map"))

    t = threading.Thread(target=run_a)
    t.start()
    time.sleep(0.3)  # A has taken its generation and waits in its analysis
    note_request(STAR, "lite_se", "gradcam", "per map")
    assert list(run_inspect_ui(STAR, "lite_se", "gradcam", "per map")) == [{}]  # B: not drawn
    b = SESSIONS.latest(page)
    assert b is not None and b.model_name == "lite_se"
    gate.set()
    t.join(60)
    assert steps_a == [{}]  # A gave way in the store: not drawn
    assert SESSIONS.latest(page) is b
    monkeypatch.setattr(handlers, "analyse", real)
    c = drawn(run_inspect_auto(STAR, LITE, "gradcam", "per map"))["state"]
    assert c.model_name == LITE and SESSIONS.latest(page) is c and current(c)


def scores_held(sess, during):
    """run_scores(sess) started (it waits on the session's own lock) while ``during`` runs:
    ("returned", its outputs) or ("raised", the exception it let out)."""
    got = {}

    def step():
        try:
            got["returned"] = run_scores(sess)
        except Exception as e:  # noqa: BLE001 - what reaches Gradio is what the test checks
            got["raised"] = e

    with sessions.exclusive(sess):
        t = threading.Thread(target=step)
        t.start()
        time.sleep(0.3)  # the step has passed its superseded check and waits on the lock
        during()
    t.join(60)
    assert not t.is_alive() and len(got) == 1, got
    return next(iter(got.items()))


def test_a_stale_steps_error_is_logged_not_shown(page, caplog):
    """A chained step fails (its analysis was freed while it waited): the page's current
    analysis's step shows its error; a step of an analysis superseded meanwhile lets no error
    out (the page shows the newer analysis) and logs it instead."""
    import gradio as gr
    a = drawn(run_inspect_ui(STAR, LITE, "gradcam", "per map"))["state"]
    how, err = scores_held(a, lambda: SESSIONS.free(sess=a))  # current: the error is shown
    assert how == "raised" and isinstance(err, gr.Error), (how, err)
    assert "freed" in err.message and "Analyse" in err.message
    b = drawn(run_inspect_ui(STAR, LITE, "gradcam", "per map"))["state"]
    before = stale_count()
    news = {}

    def superseded_then_freed():
        SESSIONS.free(sess=b)
        news.update(drawn(run_inspect_ui(STAR, "lite_se", "gradcam", "per map")))

    with caplog.at_level("WARNING", logger="attnviz.app"):
        how, out = scores_held(b, superseded_then_freed)
    assert (how, out) == ("returned", {})  # nothing written, no error
    assert stale_count() == before + 1  # refused when it failed, not at its start
    logged = [r.getMessage() for r in caplog.records if r.name == "attnviz.app"]
    assert any("superseded" in m and "freed" in m for m in logged), logged
    c = news["state"]
    assert current(c) and SESSIONS.latest(page) is c and not c.dropped


def test_a_superseded_failing_analysis_shows_no_error(page, tmp_path, caplog):
    """An analysis of a bad file fails after the page asked for another image: no error over
    the page (logged instead); the same failure while it is the page's newest request is
    shown, once, in the status line, and the file is taken out of the image box; a refused
    mask is taken out of the mask box (the image stays), and Analyse then runs without it."""
    bad = tmp_path / "broken.png"
    bad.write_text("this is not an image")
    note_request(str(bad), LITE, "gradcam", "per map")
    note_request(STAR, LITE, "gradcam", "per map")  # another upload, while it runs
    with caplog.at_level("WARNING", logger="attnviz.app"):
        assert list(run_inspect_ui(str(bad), LITE, "gradcam", "per map")) == [{}]
    assert any("superseded" in r.getMessage() for r in caplog.records), caplog.records
    note_request(str(bad), LITE, "gradcam", "per map")  # the page asks for it again
    steps = list(run_inspect_ui(str(bad), LITE, "gradcam", "per map"))
    assert len(steps) == 1 and "not an image" in steps[0]["status"], steps
    assert steps[0]["state"] is None and steps[0]["top5"] is None  # the old results cleared
    assert "image" in steps[0] and steps[0]["image"] is None  # the refused file taken out
    # a refused mask says so, is taken out of its box and leaves the image in its box
    note_request(STAR, LITE, "gradcam", "per map", None, None, str(bad))
    steps = list(run_inspect_ui(STAR, LITE, "gradcam", "per map", mask=str(bad)))
    assert len(steps) == 1 and "av-error" in steps[0]["status"], steps
    assert "Cannot use this mask" in steps[0]["status"] and "not an image" in steps[0]["status"]
    assert "image" not in steps[0] and steps[0]["mask"] is None
    # the box emptied, the page asks for the analysis without it: Analyse draws it
    steps = list(run_inspect_ui(STAR, LITE, "gradcam", "per map"))
    assert steps and steps[0]["state"] is not None and "av-ok" in steps[0]["status"], steps


def held_back(monkeypatch, name: str, step, during):
    """``step()`` run while the app function ``name`` it calls (inspect_handlers.<name>) is held
    back once it has computed, and ``during`` runs meanwhile: the interleaving of a slow step
    and a newer analysis, made deterministic. Returns the step's outputs."""
    import attnviz.app.inspect_handlers as handlers
    real = getattr(handlers, name)
    computed, gate, got = threading.Event(), threading.Event(), {}

    def held(*args, **kwargs):
        out = real(*args, **kwargs)
        computed.set()
        gate.wait(60)
        return out

    monkeypatch.setattr(handlers, name, held)
    t = threading.Thread(target=lambda: got.update(out=step()))
    t.start()
    try:
        assert computed.wait(120), "the step never computed"
        during()
    finally:
        gate.set()
        t.join(60)
        monkeypatch.setattr(handlers, name, real)
    assert not t.is_alive() and "out" in got, got
    return got["out"]


def test_a_slow_rescale_of_an_older_analysis_writes_nothing(page, monkeypatch):
    """The colour scale switched: the redraw of the page's analysis writes its headline; a
    redraw of the older analysis that ends after another model's analysis was drawn writes
    nothing over it, and one that starts after is refused at once."""
    a = drawn(run_inspect_ui(STAR, LITE, "gradcam", "per map"))["state"]
    out = rescale(a, "shared")  # current: its headline is drawn
    assert {"head_att", "head_attr", "gal_all", "legend"} <= set(out)
    before, news = stale_count(), {}
    out = held_back(monkeypatch, "headline", lambda: rescale(a, "per map"),
                    lambda: news.update(drawn(run_inspect_ui(STAR, "lite_se", "gradcam",
                                                             "per map"))))
    b = news["state"]
    assert out == {} and stale_count() == before + 1  # refused when it ended
    assert current(b) and not current(a)
    assert rescale(a, "shared") == {} and stale_count() == before + 1  # refused at its start
    assert "head_att" in rescale(b, "shared")  # the newer analysis's own redraw writes


def test_a_slow_gallery_click_of_an_older_analysis_writes_nothing(page, monkeypatch):
    """A click in a kind tab's gallery draws that map's figure; the figure of the older
    analysis that ends after another model's analysis was drawn is not written over it."""
    import gradio as gr
    from attnviz.capture.maps import has_spatial
    a = drawn(run_inspect_ui(STAR, LITE, "gradcam", "per map"))["state"]
    kind = next(r.kind for r in a.analysis.maps if has_spatial(r))
    pick = figure_for_kind(kind, "plot")
    click = gr.SelectData(None, {"index": 0, "value": None, "selected": True})
    fig = pick(a, "per map", click)
    assert set(fig) == {"plot"} and fig["plot"] is not None  # current: its figure is drawn
    before, news = stale_count(), {}
    out = held_back(monkeypatch, "record_figure", lambda: pick(a, "per map", click),
                    lambda: news.update(drawn(run_inspect_ui(STAR, "lite_se", "gradcam",
                                                             "per map"))))
    b = news["state"]
    assert out == {} and stale_count() == before + 1  # refused when it ended
    assert current(b) and pick(a, "shared", click) == {}  # refused at its start
