"""The stale-state race of the Inspect tab's chained steps, on a real server: the scores step
of a session's first analysis starts, another model's analysis is drawn while it computes,
and it ends after. Its table and its old session must not be written back over the new
analysis (app.inspect_handlers.writes_if_current): through gradio_client (the interleaving
made certain: the second analysis runs while the first's scores step is seen running) and in
the browser (the sequence a person makes: another model chosen, the image uploaded and
Analyse pressed while the page's first analysis is still being scored)."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow  # a server (and a browser)

from test_browser_serving import settled, work  # noqa: E402

TIMEOUT = 120_000


def _running(job, limit: float = 60.0) -> None:
    """Wait until a submitted gradio_client job is being processed (not waiting in the queue)."""
    from gradio_client.utils import Status
    t0 = time.time()
    while job.status().code != Status.PROCESSING:
        assert not job.done() and time.time() - t0 < limit, job.status()
        time.sleep(0.05)


def test_stale_scores_step_writes_nothing_back_api(app_url, example_paths):
    from gradio_client import Client, handle_file
    client = Client(app_url, verbose=False)
    star = handle_file(str(example_paths["star"]))
    client.predict(star, "lite_cbam", "Grad-CAM", "per map", api_name="/inspect")
    before = work(app_url).get("stale", 0)
    job = client.submit(api_name="/scores")  # the first analysis's scores: seconds on a CPU
    _running(job)
    # another model's analysis, drawn while those scores compute
    client.predict(star, "lite_nonlocal", "Grad-CAM", "per map", api_name="/inspect")
    assert not job.done(), "the scores ended before the second analysis: no race to check"
    stale = job.result(timeout=300)
    assert "CBAM" not in str(stale)  # no table of the first analysis came back
    # the session holds the second analysis: its headline is the non-local map's, and its
    # scores are the non-local model's
    _att, _attr, details, _gal, _legend = client.predict("per map", api_name="/rescale")
    assert "non-local" in str(details) and "CBAM" not in str(details), details
    maps = {str(r[1]) for r in client.predict(api_name="/scores")["data"]}
    assert any("non-local" in m for m in maps) and not any("CBAM" in m for m in maps), maps
    assert work(app_url).get("stale", 0) == before + 1  # the stale step's write was refused


@pytest.mark.browser
def test_switching_model_while_the_first_analysis_is_scored(browser, app_url, example_paths):
    """The sequence of test_browser's first test before it waited for the first analysis's
    scores (it failed about 2 times in 3 on a fresh server): the Scores table must end as the
    second model's, also once every chained step has ended."""
    from app_fixtures import open_app
    from test_browser import choose
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        # the page's first analysis (lite_cbam) drawn; its scores are not waited for
        open_app(pg, app_url, "predicted", timeout=TIMEOUT)
        pending = "computing the scores" in pg.locator("#av-scores").inner_text()
        choose(pg, "av-model", "lite_nonlocal")
        pg.set_input_files("#av-image input[type=file]", str(example_paths["star"]))
        pg.click("#av-analyse")
        pg.wait_for_function("() => document.querySelector('#av-scores').innerText"
                             ".includes('non-local')", timeout=TIMEOUT)
        settled(app_url, quiet=4.0, limit=240.0)  # every chained step has ended
        table = pg.locator("#av-scores").inner_text()
        assert "non-local" in table and "CBAM" not in table, (pending, table)
        assert "lite_nonlocal" in pg.locator("#av-status").inner_text()
        assert not pg.errors, pg.errors
    finally:
        pg.close()
