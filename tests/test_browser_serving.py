"""The serving path in headless Chromium: one upload runs one analysis (the server counts its
analyses and chained steps; /health's ``work``). No timings are asserted here (the benchmark
measures them)."""
from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

from app_fixtures import ROOT, call_raw, open_app, serve_app  # noqa: E402

TIMEOUT = 60_000


def work(url) -> dict:
    kind, text = call_raw(url, "health", [])
    assert kind == "complete", text
    line = next(x for x in text.splitlines() if x.startswith("data:"))
    return json.loads(line[5:])[0]["work"]


def settled(url, quiet: float = 3.0, limit: float = 60.0) -> dict:
    """The work counts once nothing has changed for ``quiet`` seconds."""
    last, since, t0 = work(url), time.time(), time.time()
    while time.time() - t0 < limit:
        time.sleep(0.5)
        now = work(url)
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            return now
    return last


@pytest.mark.parametrize("image", ["circle", "triangle"])
def test_one_upload_runs_one_analysis(browser, app_url, example_paths, tmp_path, image):
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        # the first screen's analysis has run to its end (its scores are on the page)
        open_app(pg, app_url, "scored", timeout=TIMEOUT)
        before = settled(app_url)
        # a file the page has not seen (its bytes differ from every example's)
        from PIL import Image
        path = tmp_path / f"upload_{image}.png"
        Image.open(example_paths[image]).convert("RGB").rotate(90).save(path)
        pg.set_input_files("#av-image input[type=file]", str(path))
        pg.wait_for_function("(name) => document.querySelector('#av-status') && "
                             "document.querySelector('#av-status').innerText.includes(name)",
                             arg=path.name, timeout=TIMEOUT)
        after = settled(app_url)
        ran = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        assert ran.get("analyses") == 1, ran
        assert ran.get("maps", 0) <= 1 and ran.get("scores", 0) <= 1, ran
    finally:
        pg.close()


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory):
    """A server that runs one analysis at a time (ATTNVIZ_ANALYSES=1)."""
    with serve_app(tmp_path_factory.mktemp("one_at_a_time"),
                   env={"ATTNVIZ_ANALYSES": "1"}) as (url, _):
        yield url


def test_a_second_upload_supersedes_the_first(browser, one_at_a_time, example_paths, tmp_path):
    """Upload A, then B while A's analysis still waits: A's analysis and its chained steps
    do nothing (the server counts it superseded), the page ends with B's results, B's chained
    steps run once. A's analysis is held in the queue by full-size analyses from an API
    client (one analysis at a time, seconds of them), so B is chosen while A waits."""
    from gradio_client import Client, handle_file
    from PIL import Image
    url = one_at_a_time
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(pg, url, "scored", timeout=TIMEOUT)  # the first screen's analysis, scored
        paths = {}
        for name, src in (("a", "circle"), ("b", "triangle")):
            paths[name] = tmp_path / f"upload_{name}.png"
            Image.open(example_paths[src]).convert("RGB").rotate(90).save(paths[name])
        api = Client(url, verbose=False)
        api.predict(handle_file(str(ROOT / "assets/examples/star.png")), "cbam_resnet50",
                    api_name="/inspect")  # built and warm
        before = settled(url)
        blockers = [api.submit(handle_file(str(ROOT / "assets/examples/star.png")),
                               "cbam_resnet50", api_name="/inspect") for _ in range(8)]
        time.sleep(0.5)  # the first of them runs, the others wait
        pg.set_input_files("#av-image input[type=file]", str(paths["a"]))
        time.sleep(0.5)  # A's change event has reached the server and waits behind them
        pg.set_input_files("#av-image input[type=file]", str(paths["b"]))
        for job in blockers:
            job.result(timeout=120)
        pg.wait_for_function("(name) => document.querySelector('#av-status') && "
                             "document.querySelector('#av-status').innerText.includes(name)",
                             arg=paths["b"].name, timeout=TIMEOUT)
        after = settled(url)
        ran = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        assert ran.get("superseded", 0) >= 1, ran  # A's analysis gave way to B's
        # the blockers' and B's (and A's, had it started before B was chosen: it drew nothing)
        assert ran.get("analyses") in (len(blockers) + 1, len(blockers) + 2), ran
        assert ran.get("maps") == 1 and ran.get("scores") == 1, ran  # B's chained steps only
        status = pg.inner_text("#av-status")
        assert paths["b"].name in status and paths["a"].name not in status
        pg.wait_for_function("() => /AUC/.test(document.querySelector('#av-scores').innerText)",
                             timeout=TIMEOUT)
    finally:
        pg.close()


def test_a_kind_tab_is_drawn_when_opened(browser, app_url):
    """After an analysis only the open tab's overlays are drawn; a kind tab is drawn when it is
    first opened (its tiles are this analysis's), and not again when reopened."""
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(pg, app_url, "scored", timeout=TIMEOUT)  # the first screen's analysis, scored
        before = settled(app_url)
        assert pg.locator("#av-gal-spatial img").count() == 0  # not drawn yet
        pg.locator("#av-kind-tabs button[role=tab]", has_text="Spatial").first.click()
        pg.wait_for_function("() => [...document.querySelectorAll('#av-gal-spatial "
                             ".caption-label')].some(c => c.innerText.includes('CBAM spatial'))",
                             timeout=TIMEOUT)
        pg.locator("#av-kind-tabs button[role=tab]", has_text="All maps").first.click()
        pg.locator("#av-kind-tabs button[role=tab]", has_text="Spatial").first.click()
        after = settled(app_url)
        ran = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        assert ran.get("tabs") == 1 and not ran.get("analyses"), ran
        caps = pg.locator("#av-gal-spatial .caption-label").all_inner_texts()
        assert len(caps) == 4 and all("CBAM spatial" in c for c in caps), caps
    finally:
        pg.close()
