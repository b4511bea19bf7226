"""The serving path in headless Chromium: one upload runs one analysis (the server counts its
analyses and chained steps; /health's ``work``). No timings are asserted here (the benchmark
measures them)."""
from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

from app_fixtures import call_raw  # noqa: E402

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
        pg.goto(app_url, timeout=TIMEOUT)
        pg.wait_for_selector("#av-analyse", timeout=TIMEOUT)
        pg.wait_for_function("() => document.querySelector('#av-top5') && "
                             "/\\d+%/.test(document.querySelector('#av-top5').innerText)",
                             timeout=TIMEOUT)
        # the first screen's analysis has run to its end (its scores are on the page)
        pg.wait_for_function("() => document.querySelector('#av-scores') && "
                             "document.querySelector('#av-scores').innerText.includes('AUC')",
                             timeout=TIMEOUT)
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
