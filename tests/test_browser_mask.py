"""The Inspect tab's own-mask upload in headless Chromium: a mask that cannot be used (a text file
named .png, a PNG cut short, a mask of another size) gives exactly one message, is taken out of
the mask box (no broken image left there) while the image stays, and the next valid mask is used
(the analysis scored against it). And a click in a kind tab's gallery draws that map's figure
(the figure's handler takes the click's event data through the guard that drops a superseded
analysis's figure)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app_fixtures import ARTIFACTS, EXAMPLES, TIMEOUT, open_app, wait_drawn
from test_browser import open_tab
from test_browser_layout import ERRORS_SHOWN, IMAGE_BOX

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow, pytest.mark.browser]  # a server and a browser

# the natural width of every image in the mask's box (0: a broken image)
MASK_BOX = "() => [...document.querySelectorAll('#av-mask img')].map(i => i.naturalWidth)"
NOT_STALE = "() => !document.getElementById('av-right').classList.contains('av-stale')"


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    d = tmp_path_factory.mktemp("masks")
    out = {"text": d / "notes.png", "cut": d / "cut.png", "small": d / "small.png"}
    out["text"].write_text("this is not an image")
    whole = d / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), np.uint8)).save(whole)
    out["cut"].write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(out["small"])  # not the image's size
    return out


def test_a_refused_mask_is_taken_out_of_its_box(browser, app_url, masks):
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(pg, app_url, "drawn", name="star.png")
        pg.locator("#av-choices").get_by_text("Class, layer, your own mask").first.click()
        pg.wait_for_selector("#av-mask input[type=file]", state="attached", timeout=TIMEOUT)
        for what, words in (("text", "not an image"), ("cut", "truncated"),
                            ("small", "the size of the image")):
            pg.set_input_files("#av-mask input[type=file]", str(masks[what]))
            pg.wait_for_selector("#av-status .av-error", timeout=TIMEOUT)
            pg.wait_for_function(NOT_STALE, timeout=TIMEOUT)
            pg.wait_for_timeout(1500)  # anything else that would appear has appeared
            shown = pg.evaluate(ERRORS_SHOWN)
            assert shown["pills"] + shown["toasts"] + len(shown["banners"]) == 1, (what, shown)
            banner = shown["banners"][0]
            assert "mask" in banner.lower() and words in banner, (what, banner)
            assert pg.evaluate(MASK_BOX) == [], what  # emptied: nothing broken in it
            assert pg.locator("#av-mask input[type=file]").count() == 1  # ready for another
            image = pg.evaluate(IMAGE_BOX)  # the image itself stays
            assert image and all(w > 0 for w in image), (what, image)
            pg.screenshot(path=str(ARTIFACTS / f"bad_mask_{what}.png"), full_page=True)
        # the next valid mask is used: the analysis is scored against it, the message gone
        pg.set_input_files("#av-mask input[type=file]", str(EXAMPLES / "star_mask.png"))
        pg.wait_for_function("() => document.querySelector('#av-status').innerText"
                             ".includes('scored against your mask')", timeout=TIMEOUT)
        wait_drawn(pg, "star.png")
        assert pg.locator("#av-status .av-error").count() == 0
        assert pg.evaluate(MASK_BOX) and all(w > 0 for w in pg.evaluate(MASK_BOX))
        assert not pg.errors, pg.errors
    finally:
        pg.close()


PLOT_TITLE = ("() => { const t = document.querySelector('#av-plot-spatial .gtitle');"
              " return t ? t.textContent : null; }")


def test_a_gallery_click_draws_that_maps_figure(browser, app_url):
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(pg, app_url, "drawn", name="star.png")
        open_tab(pg, "#av-kind-tabs", "Spatial")
        tiles = pg.locator("#av-gal-spatial .thumbnail-item")
        tiles.nth(1).wait_for(timeout=TIMEOUT)
        pg.wait_for_selector("#av-plot-spatial .js-plotly-plot", timeout=TIMEOUT)
        tiles.first.click()
        pg.wait_for_timeout(3000)  # its figure drawn (maybe the one already shown)
        first = pg.evaluate(PLOT_TITLE)
        tiles.last.click()  # another layer's map: its figure replaces the first
        pg.wait_for_function(f"(t) => ({PLOT_TITLE})() !== t", arg=first, timeout=TIMEOUT)
        titles = [first, pg.evaluate(PLOT_TITLE)]
        assert titles[0] and titles[1] and titles[0] != titles[1], titles
        assert not pg.errors, pg.errors
    finally:
        pg.close()
