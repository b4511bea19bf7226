"""The app in headless Chromium (Debian's /usr/bin/chromium through Playwright; never
`playwright install`): upload an image, analyse, click the image to drive the affinity explorer,
compare two models, ablate; the expected images and Plotly plots must be on the page.
Screenshots go to test-artifacts/ (the Inspect one is copied to assets/screenshot_inspect.png).
"""
from __future__ import annotations

import re
import shutil
import time

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow, pytest.mark.browser]  # a server and a browser

from app_fixtures import ARTIFACTS, ROOT, TIMEOUT, open_app  # noqa: E402


@pytest.fixture(scope="module")
def page(browser, app_url):
    pg = open_app(browser.new_page(viewport={"width": 1280, "height": 800}), app_url)
    yield pg
    pg.close()


def choose(pg, elem_id: str, value: str):
    """Pick ``value`` in a Gradio dropdown."""
    box = pg.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    pg.locator("ul[role=listbox] li", has_text=value).first.wait_for(timeout=TIMEOUT)
    box.press("Enter")  # selects the first option matching what was typed
    pg.keyboard.press("Escape")
    box.blur()


def wait_images(pg, selector: str, n: int = 1):
    pg.wait_for_function(
        "([s, n]) => [...document.querySelectorAll(s)].filter(i => i.complete && "
        "i.naturalWidth > 0).length >= n", arg=[selector, n], timeout=TIMEOUT)


def captions(pg, elem_id: str) -> list[str]:
    return pg.locator(f"#{elem_id} .caption-label").all_inner_texts()


def open_tab(pg, container: str, label_start: str):
    pg.locator(f"{container} button[role=tab]", has_text=label_start).first.click()


def test_inspect_affinity_compare_ablate(page, example_paths):
    pg = page
    # the page's own first analysis (lite_cbam) scored before the switch: this test checks the
    # switch; switching while those scores compute (the stale-write race) is test_browser_race's
    pg.wait_for_function("document.querySelector('#av-scores') && "
                         "document.querySelector('#av-scores').innerText.includes('AUC')",
                         timeout=TIMEOUT)
    choose(pg, "av-model", "lite_nonlocal")
    pg.set_input_files("#av-image input[type=file]", str(example_paths["star"]))
    pg.click("#av-analyse")
    # the page opens on an analysis of the example with the default model: wait for this one
    pg.wait_for_function("() => [...document.querySelectorAll('#av-gal-all .caption-label')]"
                         ".some(c => c.innerText.includes('non-local affinity'))",
                         timeout=TIMEOUT)
    wait_images(pg, "#av-gal-all img", 2)
    wait_images(pg, "#av-head-att img")
    wait_images(pg, "#av-head-attr img")
    assert "star" in pg.locator("#av-top5").inner_text().lower() or \
        re.search(r"\d+%", pg.locator("#av-top5").inner_text())
    caps = captions(pg, "av-gal-all")
    assert any("non-local affinity" in c for c in caps), caps
    assert any(c.startswith("Grad-CAM") for c in caps), caps
    pg.wait_for_function("document.querySelector('#av-scores') && "
                         "document.querySelector('#av-scores').innerText.includes('AUC')",
                         timeout=TIMEOUT)
    # the scores are this analysis's (lite_nonlocal), not those of the page's first analysis
    # (lite_cbam), whose chained steps may end later: they must not draw over the new one
    pg.wait_for_function("document.querySelector('#av-scores').innerText.includes('non-local')",
                         timeout=TIMEOUT)
    assert "CBAM" not in pg.locator("#av-scores").inner_text()

    # affinity explorer: click the input image, the overlays follow the query
    open_tab(pg, "#av-kind-tabs", "Affinity")
    pg.wait_for_selector("#av-plot-affinity .js-plotly-plot", timeout=TIMEOUT)
    img = pg.locator("#av-image img").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    nat = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    # drawn centred, downscaled to fit but never upscaled (what Gradio's click handler assumes)
    s = min(box["width"] / nat[0], box["height"] / nat[1], 1.0)
    ox = box["x"] + (box["width"] - nat[0] * s) / 2
    oy = box["y"] + (box["height"] - nat[1] * s) / 2
    want = (30, 90)
    pg.mouse.click(ox + (want[0] + 0.5) * s, oy + (want[1] + 0.5) * s)
    pg.wait_for_function(
        "() => [...document.querySelectorAll('#av-gal-affinity .caption-label')]"
        ".some(c => /query \\(\\d+, \\d+\\)/.test(c.innerText) && "
        "!c.innerText.includes('query (64, 64)'))", timeout=TIMEOUT)
    cap = captions(pg, "av-gal-affinity")[0]
    x, y = map(int, re.search(r"query \((\d+), (\d+)\)", cap).groups())
    assert abs(x - want[0]) <= 2 and abs(y - want[1]) <= 2, cap
    title = pg.locator("#av-plot-affinity .gtitle").first.text_content()
    assert f"({x}, {y})" in title, title
    assert pg.locator("#av-plot-affinity .js-plotly-plot").count() == 1
    time.sleep(0.5)
    shot = ARTIFACTS / "inspect.png"
    pg.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, ROOT / "assets" / "screenshot_inspect.png")

    # compare two models on the same image
    open_tab(pg, "#av-tabs", "Compare")
    wait_images(pg, "#av-cmp-image img")
    pg.locator("#av-cmp-models .remove-all").first.click()  # clear the default pair
    choose(pg, "av-cmp-models", "lite_cbam")
    choose(pg, "av-cmp-models", "lite_nonlocal")
    pg.click("#av-cmp-run")
    wait_images(pg, "#av-cmp-att-0 img")
    wait_images(pg, "#av-cmp-att-1 img")
    wait_images(pg, "#av-cmp-attr-1 img")
    assert pg.locator("#av-cmp-att-2 img").count() == 0
    heads = [pg.locator(f"#av-cmp-head-{i}").inner_text() for i in range(2)]
    assert all("%" in h for h in heads), heads
    pg.wait_for_function("() => { const t = document.querySelector('#av-cmp-table').innerText;"
                         " return t.includes('lite_cbam') && t.includes('lite_nonlocal'); }",
                         timeout=TIMEOUT)
    pg.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    # gate ablation: a bar chart
    open_tab(pg, "#av-tabs", "Experiment")
    pg.click("#av-ablate")
    pg.wait_for_selector("#av-abl-plot .js-plotly-plot", timeout=TIMEOUT)
    assert pg.locator("#av-abl-plot .js-plotly-plot .bars path").count() >= 1  # one per module
    assert "neutralised one at a time" in pg.locator("#av-tabs").inner_text()
    pg.screenshot(path=str(ARTIFACTS / "experiment.png"), full_page=True)
    assert not pg.errors, pg.errors


def _bottom(pg, selector: str) -> float:
    box = pg.locator(selector).first.bounding_box()
    return box["y"] + box["height"]


@pytest.mark.parametrize("device", ["laptop", "phone"])
def test_first_screen(browser, app_url, device):
    """The page opens on an analysis of an example; on a laptop (1280x800) the whole left column
    (image, examples, model, attribution, Analyse) and the headline row fit the first screen; on
    a phone the image, the model and Analyse do."""
    size = {"laptop": (1280, 800), "phone": (390, 844)}[device]
    pg = browser.new_page(viewport={"width": size[0], "height": size[1]})
    try:
        open_app(pg, app_url, "predicted")
        wait_images(pg, "#av-head-att img")
        wait_images(pg, "#av-examples img", 6)
        for sel in ("#av-image", "#av-examples", "#av-model", "#av-method", "#av-analyse"):
            assert _bottom(pg, sel) <= size[1], (device, sel, _bottom(pg, sel))
        if device == "laptop":
            for sel in ("#av-top5", "#av-head-att", "#av-head-attr", "#av-agreement"):
                assert _bottom(pg, sel) <= size[1], (sel, _bottom(pg, sel))
        pg.screenshot(path=str(ARTIFACTS / f"first_screen_{device}.png"))
    finally:
        pg.close()


def test_export_in_the_browser(page, tmp_path):
    """After the analyses above, the Export tab packs the last one into a zip that downloads."""
    import zipfile
    pg = page
    open_tab(pg, "#av-tabs", "Export")
    pg.click("#av-export")
    link = pg.locator("#av-export-file a[download$='.zip']").first
    link.wait_for(timeout=TIMEOUT)
    assert "overlays" in pg.locator("#av-tabs").inner_text()
    with pg.expect_download(timeout=TIMEOUT) as dl:
        link.click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert {"scores.json", "maps.npz", "image.png"} <= set(names), names
    assert any(n.startswith("overlays/") and n.endswith(".png") for n in names), names
    assert any(n.startswith("figures/") and n.endswith(".html") for n in names), names
    pg.screenshot(path=str(ARTIFACTS / "export.png"), full_page=True)
    assert not pg.errors, pg.errors
