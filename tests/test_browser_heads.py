"""A hybrid network served with ``--model`` (examples/hybrid_vit_net.py: coordinate attention,
a MobileViT block, a fused global stage; it does not import attnviz), in headless Chromium:
its multi-head maps are in the Affinity tab, the head selector switches between the mean over
heads, one head and attention rollout across layers, and the overlays and the figure follow."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("playwright.sync_api")

from app_fixtures import ARTIFACTS, ROOT, TIMEOUT, open_app, serve_app  # noqa: E402
from test_browser import captions, choose, open_tab, wait_images  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

EXAMPLE = ROOT / "examples" / "hybrid_vit_net.py"


@pytest.fixture(scope="module")
def hybrid_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hybrid")
    with serve_app(tmp, ["--model", f"hybrid={EXAMPLE}", "--input-size", "128"]) as (url, _):
        yield url


def _captions_with(pg, elem_id, text):
    pg.wait_for_function(
        "([id, t]) => [...document.querySelectorAll('#' + id + ' .caption-label')]"
        ".some(c => c.innerText.includes(t))", arg=[elem_id, text], timeout=TIMEOUT)
    return captions(pg, elem_id)


def _pick_head(pg, choice):
    box = pg.locator("#av-head input").first
    box.click()
    pg.locator("ul[role=listbox] li", has_text=choice).first.click()
    pg.keyboard.press("Escape")


def test_multi_head_maps_head_selector_and_rollout(browser, hybrid_url, example_paths):
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        open_app(pg, hybrid_url)
        choose(pg, "av-model", "hybrid")
        pg.set_input_files("#av-image input[type=file]", str(example_paths["star"]))
        # a full-size model is analysed on Analyse only: wait for the hint the new image and
        # model give, so the analysis is not cleared by it afterwards
        pg.wait_for_function("() => document.querySelector('#av-status').innerText"
                             ".includes('press Analyse')", timeout=TIMEOUT)
        time.sleep(1.0)
        pg.click("#av-analyse")
        _captions_with(pg, "av-gal-all", "directional gate")
        pg.wait_for_function("() => document.querySelector('#av-kinds').innerText"
                             ".includes('Affinity (3)')", timeout=TIMEOUT)

        open_tab(pg, "#av-kind-tabs", "Affinity")
        caps = _captions_with(pg, "av-gal-affinity", "mean of 4 heads")
        assert sum("multi-head attention" in c for c in caps) == 3, caps
        assert any(c.startswith("transformer.0") for c in caps), caps
        pg.wait_for_selector("#av-plot-affinity .js-plotly-plot", timeout=TIMEOUT)
        assert "mean of 4 heads" in pg.locator("#av-plot-affinity .gtitle").first.text_content()

        _pick_head(pg, "head 2")
        caps = _captions_with(pg, "av-gal-affinity", "head 2 of 4")
        assert sum("head 2 of 4" in c for c in caps) == 3, caps
        pg.wait_for_function("() => document.querySelector('#av-plot-affinity .gtitle')"
                             ".textContent.includes('head 2 of 4')", timeout=TIMEOUT)

        _pick_head(pg, "rollout across layers")
        caps = _captions_with(pg, "av-gal-affinity", "attention rollout across 3 layers")
        wait_images(pg, "#av-gal-affinity img", 4)
        assert len(caps) == 4, caps
        time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "inspect_heads.png"), full_page=True)
        assert not pg.errors, pg.errors
    finally:
        pg.close()
