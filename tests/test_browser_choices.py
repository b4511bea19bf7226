"""The researcher's controls in headless Chromium: explain a second class (a click in the top 5),
at a second layer (the layer list), and score against an uploaded mask."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

from app_fixtures import TIMEOUT, open_app
from test_browser import choose


SCORES_TIMEOUT = 4 * TIMEOUT  # two scorings on a loaded CPU


def wait_text(pg, selector: str, text: str, timeout: float = TIMEOUT):
    pg.wait_for_function("([s, t]) => { const e = document.querySelector(s); "
                         "return e && e.innerText.includes(t); }", arg=[selector, text],
                         timeout=timeout)


def test_second_class_second_layer_own_mask(browser, app_url, example_paths, tmp_path):
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        open_app(pg, app_url)
        choose(pg, "av-model", "lite_cbam")
        choose(pg, "av-method", "LayerCAM")
        wait_text(pg, "#av-agreement", "LayerCAM")
        wait_text(pg, "#av-agreement", "at layer4")  # the default layer, named
        # a click on the runner-up in the top 5 explains that class
        second = pg.locator("#av-top5 button.confidence-set").nth(1)
        name = second.locator("dt").inner_text().strip()
        first = pg.locator("#av-top5 button.confidence-set").nth(0).locator("dt").inner_text()
        assert name and name != first.strip()
        second.click()
        wait_text(pg, "#av-agreement", f"for class '{name}'")
        assert name in pg.locator("#av-target input").first.input_value()
        # a second layer from the list of the model's stages
        choose(pg, "av-layer", "layer3")
        wait_text(pg, "#av-agreement", "at layer3")
        wait_text(pg, "#av-agreement", f"for class '{name}'")  # the class stays chosen
        # the user's own mask (the image's size, white = object) scores every map
        w, h = Image.open(example_paths["star"]).size
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2] = 255
        Image.fromarray(mask).save(tmp_path / "mask.png")
        pg.set_input_files("#av-mask input[type=file]", str(tmp_path / "mask.png"))
        wait_text(pg, "#av-status", "scored against your mask")
        # this analysis's own scores (its attribution's rows): the page's first analysis's
        # scores may still be computing (they write nothing over the later analyses, but hold
        # a scores slot until they end), so these can come a scoring later
        wait_text(pg, "#av-scores", "pointing game", SCORES_TIMEOUT)
        wait_text(pg, "#av-scores", "LayerCAM")
        wait_text(pg, "#av-agreement", "at layer3")
        pg.screenshot(path=str(tmp_path / "choices.png"))
        assert not pg.errors, pg.errors
    finally:
        pg.close()
