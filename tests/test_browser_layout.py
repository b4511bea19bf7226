"""The Inspect tab's layout in headless Chromium at a laptop (1280x800), a wide screen
(1920x1080) and a phone (390x844), for square, portrait and landscape uploads: every gallery tile
shows its whole image, its colour bar and its caption inside the tile; labels and dropdown
choices fit their boxes; the results are marked stale while an analysis runs; a bad upload gives
exactly one error message, clears the old results and is taken out of the image box (no broken
image left there). Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app_fixtures import ARTIFACTS, TIMEOUT, open_app, wait_drawn
from test_browser import choose, open_tab

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow, pytest.mark.browser]  # a server and a browser

SIZES = {"laptop": (1280, 800), "wide": (1920, 1080), "phone": (390, 844)}
SHAPES = {"square": (300, 300), "portrait": (600, 400), "landscape": (360, 720)}  # (h, w)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """{shape: path} of photos that are none of the synthetic examples."""
    d = tmp_path_factory.mktemp("pictures")
    out = {}
    for name, (h, w) in SHAPES.items():
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 255 // w, y * 255 // h, (x + y) * 120 // (w + h) + 60], -1)
        img = img.astype(np.uint8)
        img[h // 3:h // 2, w // 3:w // 2] = (250, 240, 40)
        out[name] = d / f"{name}.jpg"
        Image.fromarray(img).save(out[name])
    bad = d / "broken.png"
    bad.write_text("this is not an image")
    out["bad"] = bad
    whole = d / "whole.png"  # a PNG cut short: the browser may draw its top, attnviz refuses it
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)).save(whole)
    out["truncated"] = d / "truncated.png"
    out["truncated"].write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    return out


TILE_CHECK = """(sel) => [...document.querySelectorAll(sel + ' .thumbnail-item')].map(t => {
    const tb = t.getBoundingClientRect(), img = t.querySelector('img'),
          cap = t.querySelector('.caption-label');
    const ib = img.getBoundingClientRect(), cb = cap.getBoundingClientRect();
    const inside = b => b.left >= tb.left - 1 && b.right <= tb.right + 1 && b.top >= tb.top - 1
                        && b.bottom <= tb.bottom + 1 && b.width > 0 && b.height > 0;
    return {caption: cap.innerText, imgInside: inside(ib), capInside: inside(cb),
            capCut: cap.scrollWidth > cap.clientWidth + 1 || cap.scrollHeight > cap.clientHeight + 1,
            shown: ib.width / ib.height, natural: img.naturalWidth / img.naturalHeight,
            fit: getComputedStyle(img).objectFit,
            inPage: tb.left >= 0 && tb.right <= document.documentElement.clientWidth + 1,
            visible: getComputedStyle(cap).visibility !== 'hidden' &&
                     parseFloat(getComputedStyle(cap).opacity) > 0.9};
})"""


def check_tiles(pg, sel: str, where: str):
    pg.locator(sel).scroll_into_view_if_needed()  # the tiles load lazily
    pg.wait_for_function("(s) => [...document.querySelectorAll(s + ' img')].every("
                         "i => i.complete && i.naturalWidth > 0)", arg=sel, timeout=TIMEOUT)
    tiles = pg.evaluate(TILE_CHECK, sel)
    assert tiles, (where, sel)
    for t in tiles:
        ok = t["imgInside"] and t["capInside"] and not t["capCut"] and t["inPage"] \
            and t["visible"]
        assert ok, (where, t)
        # the whole image, its colour bar included, is drawn: no cropping (its box has the
        # image's shape, or the image is fit inside it)
        assert t["fit"] == "contain" or abs(t["shown"] - t["natural"]) < 0.03 * t["natural"], \
            (where, t)
    return tiles


# the width each of these labels or inputs needs against the width it has
FITS = """(sels) => sels.flatMap(sel => [...document.querySelectorAll(sel)].map(e => [sel, e]))
    .filter(([s, e]) => e.offsetParent !== null).map(([s, e]) => ({sel: s,
    text: (e.value || e.innerText || '').slice(0, 60), need: e.scrollWidth, have: e.clientWidth}))"""
# the widest choice of a dropdown against its input's text box
CHOICES_FIT = """(id) => {
    const comp = window.gradio_config.components.find(c => c.props.elem_id === id);
    const input = document.querySelector('#' + id + ' input');
    const st = getComputedStyle(input), ctx = document.createElement('canvas').getContext('2d');
    ctx.font = st.font;
    const icon = document.querySelector('#' + id + ' .icon-wrap').getBoundingClientRect();
    const box = input.getBoundingClientRect();  // the arrow is drawn over the input's right end
    const room = Math.min(box.right - parseFloat(st.paddingRight), icon.left) - box.left
                 - parseFloat(st.paddingLeft);
    const labels = comp.props.choices.map(c => Array.isArray(c) ? c[0] : c);
    return labels.map(l => ({label: l, need: ctx.measureText(l).width, room}));
}"""


# every word of a Scores value cell fits its column (no word broken, none one letter a line)
VALUES_FIT = """() => [...document.querySelectorAll('#av-scores tbody tr')].filter(
    tr => tr.getBoundingClientRect().height > 0 && tr.innerText.trim()).map(tr => {
    const td = tr.querySelectorAll('td')[2], st = getComputedStyle(td);
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = st.font;
    const words = td.innerText.trim().split(/\\s+/);
    return {text: td.innerText, need: Math.max(...words.map(w => ctx.measureText(w).width)),
            have: td.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight)};
})"""


def check_fits(pg, where: str):
    for item in pg.evaluate(FITS, ["#av-head-att label[data-testid=block-label]",
                                   "#av-head-attr label[data-testid=block-label]",
                                   "#av-model input", "#av-method input",
                                   "#av-agreement"]):
        assert item["need"] <= item["have"] + 1, (where, item)
    for id_ in ("av-model", "av-method"):
        for c in pg.evaluate(CHOICES_FIT, id_):
            assert c["need"] <= c["room"] + 1, (where, id_, c)
    for c in pg.evaluate(VALUES_FIT):
        assert c["need"] <= c["have"] + 1, (where, c)


@pytest.mark.parametrize("device", list(SIZES))
def test_tiles_and_labels_fit(browser, app_url, pictures, device):
    w, h = SIZES[device]
    pg = browser.new_page(viewport={"width": w, "height": h})
    try:
        open_app(pg, app_url, "drawn")  # the first screen: an analysed example
        for shape in SHAPES:
            pg.set_input_files("#av-image input[type=file]", str(pictures[shape]))
            wait_drawn(pg, f"{shape}.jpg")
            pg.wait_for_function("() => document.querySelector('#av-scores').innerText"
                                 ".includes('AUC')", timeout=TIMEOUT)
            tiles = check_tiles(pg, "#av-gal-all", f"{device}/{shape}")
            assert any(t["caption"].startswith("Grad-CAM") for t in tiles)
            check_fits(pg, f"{device}/{shape}")
            # a lite model on a photo says it only knows the synthetic shapes
            assert "knows only" in pg.locator("#av-agreement").inner_text()
            pg.screenshot(path=str(ARTIFACTS / f"layout_{device}_{shape}.png"), full_page=True)
        if device == "laptop":  # the affinity overlay too, on a portrait photo
            choose(pg, "av-model", "lite_nonlocal")
            wait_drawn(pg, "landscape.jpg")
            open_tab(pg, "#av-kind-tabs", "Affinity")
            pg.wait_for_selector("#av-gal-affinity img", timeout=TIMEOUT)
            check_tiles(pg, "#av-gal-affinity", "affinity")
        assert not pg.errors, pg.errors
    finally:
        pg.close()


ERRORS_SHOWN = """() => {
    const vis = e => e.offsetParent !== null && e.getBoundingClientRect().height > 0;
    const pills = [...document.querySelectorAll('[data-testid=status-tracker]')]
        .filter(e => vis(e) && /\\bError\\b/.test(e.innerText));
    const toasts = [...document.querySelectorAll('.toast-body')].filter(vis);
    const banners = [...document.querySelectorAll('.av-error')].filter(vis);
    return {pills: pills.length, toasts: toasts.length, banners: banners.map(b => b.innerText)};
}"""


# the natural width of every image in the Image input's box (0: a broken image)
IMAGE_BOX = "() => [...document.querySelectorAll('#av-image img')].map(i => i.naturalWidth)"


def test_stale_marked_and_one_error_for_a_bad_upload(browser, app_url, pictures):
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(pg, app_url, "drawn")
        # record whether the results were marked stale between the click and the new results
        pg.evaluate("""() => { window.avSeen = [];
            new MutationObserver(() => {
                const r = document.getElementById('av-right');
                if (r.classList.contains('av-stale')) {
                    const box = document.getElementById('av-scores-box');
                    window.avSeen.push([parseFloat(getComputedStyle(box).opacity),
                                        getComputedStyle(r, '::before').content]);
                }
            }).observe(document.getElementById('av-right'), {attributes: true}); }""")
        pg.click("#av-analyse")
        pg.wait_for_function("() => window.avSeen.length > 0", timeout=TIMEOUT)
        wait_drawn(pg, ".png")
        seen = pg.evaluate("() => window.avSeen")
        assert min(o for o, _ in seen) < 0.6, seen  # greyed while stale
        assert any("Analysing" in c for _, c in seen), seen  # under a busy sign
        # a bad upload (a text file named .png, a PNG cut short): one message, the previous
        # results cleared, the file taken out of the image box (no broken image left there)
        for bad in ("bad", "truncated"):
            pg.set_input_files("#av-image input[type=file]", str(pictures[bad]))
            pg.wait_for_selector("#av-status .av-error", timeout=TIMEOUT)
            pg.wait_for_function("() => !document.getElementById('av-right').classList"
                                 ".contains('av-stale')", timeout=TIMEOUT)
            pg.wait_for_timeout(1500)  # anything else that would appear has appeared
            shown = pg.evaluate(ERRORS_SHOWN)
            assert shown["pills"] + shown["toasts"] + len(shown["banners"]) == 1, (bad, shown)
            assert "not an image" in shown["banners"][0].lower(), (bad, shown)
            assert pg.locator("#av-gal-all img").count() == 0
            assert pg.locator("#av-top5 .output-class").count() == 0
            assert pg.evaluate(IMAGE_BOX) == [], bad  # emptied: nothing broken in it
            assert pg.locator("#av-image input[type=file]").count() == 1  # ready for another
            pg.screenshot(path=str(ARTIFACTS / f"bad_upload_{bad}.png"), full_page=True)
        # and another upload is analysed (the message gone)
        pg.set_input_files("#av-image input[type=file]", str(pictures["square"]))
        wait_drawn(pg, "square.jpg")
        assert pg.locator("#av-status .av-error").count() == 0
        assert pg.evaluate(IMAGE_BOX) and all(w > 0 for w in pg.evaluate(IMAGE_BOX))
    finally:
        pg.close()


def test_training_shows_one_progress_bar_and_stops(browser, app_url, runs_dir):
    """Train: disabled while it runs, one progress bar, Stop ends it and nothing is saved."""
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(pg, app_url)
        open_tab(pg, "#av-tabs", "Experiment")
        pg.get_by_text("Train a lite model").first.click()
        pg.locator("#av-train").scroll_into_view_if_needed()
        name = "stopped_in_the_browser"
        pg.get_by_label("Name of the new model").fill(name)
        epochs = pg.get_by_label("Epochs").first  # the slider's number box
        epochs.fill("20")
        epochs.press("Enter")
        pg.click("#av-train")
        pg.wait_for_selector("#av-train-stop", state="visible", timeout=TIMEOUT)
        assert pg.locator("#av-train").is_disabled()
        pg.wait_for_function(
            "() => [...document.querySelectorAll('#av-tabs .progress-level')].filter("
            "e => e.offsetParent !== null).length > 0", timeout=TIMEOUT)
        bars = pg.evaluate("() => [...document.querySelectorAll('#av-tabs .progress-level')]"
                           ".filter(e => e.offsetParent !== null).length")
        assert bars == 1, bars
        pg.click("#av-train-stop")
        pg.wait_for_selector("#av-train-stop", state="hidden", timeout=TIMEOUT)
        assert pg.locator("#av-train").is_enabled()
        assert "Stopped" in pg.locator("#av-tabs").inner_text()
        pg.wait_for_timeout(3000)  # the job stops at its next step
        assert not list(runs_dir.rglob(f"{name}*.safetensors"))
    finally:
        pg.close()
