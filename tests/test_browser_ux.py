"""What users met (issue 21), in headless Chromium at 1280x800, 1920x1080 and 390x844: a live
training progress bar (epoch, loss, time left); the badge and tabs follow a model switch at once;
titles sit above the maps, never over them; the Compare table fits four models; the sanity
strip's captions sit under thumbnails that carry a colour bar; a click on the image brings the
affinity result into view and marks the query on the headline; the kinds note and the Scores
table are whole on a phone. Screenshots go to test-artifacts/."""
from __future__ import annotations

import re

import pytest

from app_fixtures import ARTIFACTS, TIMEOUT, open_app, wait_scored
from test_browser import choose, open_tab, wait_images
from test_browser_layout import SIZES, check_tiles

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser, pytest.mark.slow]

# a block's title against its images: the title must not overlap any of them
TITLE_CLEAR = """(sel) => [...document.querySelectorAll(sel)].filter(b => b.offsetParent !== null)
  .map(b => { const l = b.querySelector('label[data-testid=block-label]');
    if (!l) return null;
    const lb = l.getBoundingClientRect();
    const over = [...b.querySelectorAll('img')].map(i => i.getBoundingClientRect())
      .filter(ib => ib.width > 0 && lb.left < ib.right - 1 && ib.left < lb.right - 1 &&
                    lb.top < ib.bottom - 1 && ib.top < lb.bottom - 1);
    return {id: b.id, title: l.innerText, overlaps: over.length,
            imgs: b.querySelectorAll('img').length}; }).filter(x => x)"""

# a table's header words are never broken and no column is cut
TABLE_FITS = """(sel) => { const t = document.querySelector(sel);
  const ctx = document.createElement('canvas').getContext('2d');
  const heads = [...t.querySelectorAll('thead th')].filter(th => th.offsetParent !== null)
    .map(th => { const st = getComputedStyle(th); ctx.font = st.font;
      const words = th.innerText.trim().split(/\\s+/);
      return {text: th.innerText.replace(/\\n/g, ' '),
              need: Math.max(...words.map(w => ctx.measureText(w).width)),
              have: th.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight)}; });
  // (the table's hidden sizing rows measure the widest content: not shown, not counted)
  const scrollers = [...t.querySelectorAll('*')].filter(e => !e.closest('.sizing-body') &&
    e.scrollWidth > e.clientWidth + 2
    && ['auto', 'scroll', 'hidden'].includes(getComputedStyle(e).overflowX));
  const box = t.getBoundingClientRect();
  const cut = [...t.querySelectorAll('thead th, [role=gridcell]')].filter(c => c.offsetParent !== null &&
    c.getBoundingClientRect().right > box.right + 1).length;
  return {heads, scrollers: scrollers.map(e => e.tagName + '.' + [...e.classList].join('.') + ' ' + e.scrollWidth + '/' + e.clientWidth + ' ' + e.innerText.slice(0, 30)), cut}; }"""


# every word of a table's shown cells fits its cell's width
WORDS_FIT = """(sel) => [...document.querySelectorAll(sel + ' [role=gridcell]')].filter(td =>
    td.offsetParent !== null && td.getBoundingClientRect().width > 0 && td.innerText.trim() &&
    getComputedStyle(td).display !== 'none').map(td => {
    const st = getComputedStyle(td), ctx = document.createElement('canvas').getContext('2d');
    const inner = td.querySelector('span') || td;
    ctx.font = getComputedStyle(inner).font;
    const words = td.innerText.trim().split(/\\s+/);
    return {text: td.innerText.slice(0, 40), need: Math.max(...words.map(w => ctx.measureText(w).width)),
            have: td.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight)};
})"""


def page(browser, app_url, device="laptop"):
    """A page of ``device``'s size on the first screen's analysis, scores included (a later
    switch must not race its chain)."""
    w, h = SIZES[device]
    return open_app(browser.new_page(viewport={"width": w, "height": h}), app_url, "scored")


@pytest.mark.parametrize("device", list(SIZES))
def test_titles_kinds_note_and_scores_fit(browser, app_url, device):
    """Titles above the headline images and the galleries; the "Attention in this model" note
    not broken inside a word; the Scores table whole on the page (no box scrolling inside it,
    no cut "(random ...)" values); under the shared scale the captions name both ranges."""
    pg = page(browser, app_url, device)
    try:
        pg.locator("#av-gal-all").scroll_into_view_if_needed()  # the tiles load lazily
        wait_images(pg, "#av-gal-all img", 2)
        for t in pg.evaluate(TITLE_CLEAR, "#av-head-att, #av-head-attr, #av-gal-all"):
            assert t["overlaps"] == 0, (device, t)
        note = pg.evaluate("""() => { const b = document.querySelector('#av-kinds strong') ||
            document.querySelector('#av-kinds b');
            const r = document.createRange(); r.selectNodeContents(b);
            const lines = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
            const words = b.innerText.trim().split(/\\s+/).length;
            return {text: b.innerText, lines: lines.size, words}; }""")
        assert note["text"].startswith("Attention in this model"), note
        assert note["lines"] <= note["words"] - 1, (device, note)  # no word broken in two
        pg.locator("#av-scores").scroll_into_view_if_needed()
        sc = pg.evaluate("""() => { const t = document.querySelector('#av-scores');
            const inner = [...t.querySelectorAll('*')].filter(e => e.scrollHeight >
                e.clientHeight + 2 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY));
            const box = t.getBoundingClientRect();
            const refs = [...t.querySelectorAll('[role=gridcell]')]
              .filter(td => td.innerText.includes('(random'))
              .map(td => { const b = td.getBoundingClientRect();
                return {text: td.innerText, inside: b.top >= box.top - 1 && b.bottom <= box.bottom + 1,
                        cut: td.scrollHeight > td.clientHeight + 2}; });
            return {inner: inner.length, refs}; }""")
        assert sc["inner"] == 0, (device, sc)
        # no word of a score, map or value broken across lines (one letter a line on a phone)
        for c in pg.evaluate(WORDS_FIT, "#av-scores"):
            assert c["need"] <= c["have"] + 1, (device, c)
        # deletion and insertion AUC of the attribution, and of the oracle (the example's mask
        # is known), each beside its random reference, whole and inside the table
        assert len(sc["refs"]) == 4 and all(r["inside"] and not r["cut"] for r in sc["refs"]), sc
        pg.locator("#av-scale label", has_text="shared").first.click()
        pg.wait_for_function("() => [...document.querySelectorAll('#av-gal-all .caption-label')]"
                             ".some(c => c.innerText.includes('shared'))", timeout=TIMEOUT)
        caps = pg.locator("#av-gal-all .caption-label").all_inner_texts()
        maps = [c for c in caps if "CBAM" in c]
        assert maps and all(re.search(r"own .+ · shared ", c) for c in maps), caps
        pg.screenshot(path=str(ARTIFACTS / f"ux_inspect_{device}.png"), full_page=True)
        assert not pg.errors, pg.errors
    finally:
        pg.close()


def test_model_switch_updates_badge_and_tabs_at_once(browser, app_url):
    pg = page(browser, app_url)
    try:
        assert "trained on shapes" in pg.locator("#av-badge").inner_text()
        choose(pg, "av-model", "seresnet50")
        pg.wait_for_function("() => document.querySelector('#av-badge').innerText"
                             ".includes('random weights')", timeout=5000)
        assert "seresnet50" in pg.locator("#av-badge").inner_text()
        pg.wait_for_function("() => document.querySelector('#av-status').innerText"
                             ".includes('press Analyse')", timeout=TIMEOUT)
        tabs = pg.locator("#av-kind-tabs button[role=tab]").all_inner_texts()
        assert not any(re.search(r"· \d+$", t) for t in tabs), tabs  # no stale counts
        assert pg.locator("#av-gal-all img").count() == 0
        choose(pg, "av-model", "cbam_resnet50")
        pg.wait_for_function("() => document.querySelector('#av-badge').innerText"
                             ".includes('cbam_resnet50')", timeout=5000)
        assert "seresnet50" not in pg.locator("#av-badge").inner_text()
        assert not pg.errors, pg.errors
    finally:
        pg.close()


def test_affinity_click_marks_the_query_and_comes_into_view(browser, app_url):
    pg = page(browser, app_url)
    try:
        choose(pg, "av-model", "lite_nonlocal")
        wait_scored(pg)
        pg.wait_for_function("() => document.querySelector('#av-head-att label').innerText"
                             ".includes('non-local')", timeout=TIMEOUT)
        open_tab(pg, "#av-kind-tabs", "Affinity")
        wait_images(pg, "#av-gal-affinity img")
        pg.evaluate("() => window.scrollTo(0, 0)")
        img = pg.locator("#av-image img").first
        box = img.bounding_box()
        pg.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
        pg.wait_for_function("() => document.querySelector('#av-head-att label').innerText"
                             ".includes('query') && !document.querySelector('#av-head-att "
                             "label').innerText.includes('query (64, 64)')", timeout=TIMEOUT)
        head = pg.locator("#av-head-att label").inner_text()
        cap = pg.locator("#av-gal-affinity .caption-label").first.inner_text()
        q = re.search(r"query \((\d+), (\d+)\)", head).groups()
        assert f"query ({q[0]}, {q[1]})" in cap, (head, cap)
        pg.wait_for_timeout(500)
        seen = pg.evaluate("() => { const b = document.getElementById('av-gal-affinity')"
                           ".getBoundingClientRect(); return b.top < innerHeight && b.bottom > 0 "
                           "&& b.top >= -1; }")
        assert seen
        pg.screenshot(path=str(ARTIFACTS / "ux_affinity.png"))
        assert not pg.errors, pg.errors
    finally:
        pg.close()


def test_compare_four_models_fits_a_laptop(browser, app_url):
    pg = page(browser, app_url)
    try:
        open_tab(pg, "#av-tabs", "Compare")
        wait_images(pg, "#av-cmp-image img")
        pg.locator("#av-cmp-models .remove-all").first.click()
        for m in ("lite_cbam", "lite_danet", "lite_se", "lite_sge"):
            choose(pg, "av-cmp-models", m)
        pg.click("#av-cmp-run")
        wait_images(pg, "#av-cmp-attr-3 img")
        pg.wait_for_function("() => document.querySelector('#av-cmp-table').innerText"
                             ".includes('lite_sge')", timeout=TIMEOUT)
        fit = pg.evaluate(TABLE_FITS, "#av-cmp-table")
        for h in fit["heads"]:
            assert h["need"] <= h["have"] + 1, h
        assert fit["scrollers"] == [] and fit["cut"] == 0, fit
        for t in pg.evaluate(TITLE_CLEAR, ".av-fill"):
            assert t["overlaps"] == 0, t
        pg.screenshot(path=str(ARTIFACTS / "ux_compare.png"), full_page=True)
        assert not pg.errors, pg.errors
    finally:
        pg.close()


def test_sanity_strip_captions_under_thumbnails_with_a_colour_bar(browser, app_url):
    pg = page(browser, app_url)
    try:
        open_tab(pg, "#av-tabs", "Experiment")
        pg.get_by_text("Sanity check: cascading randomisation").first.click()
        pg.get_by_role("button", name="Randomise layer by layer").click()
        pg.wait_for_selector("#av-san-strip img", timeout=TIMEOUT)
        tiles = check_tiles(pg, "#av-san-strip", "sanity")  # captions under whole images
        assert len(tiles) >= 4 and all("Spearman" in t["caption"] for t in tiles)
        assert all(t["natural"] < 0.95 for t in tiles), tiles  # taller than wide: a colour bar
        for t in pg.evaluate(TITLE_CLEAR, "#av-san-strip"):
            assert t["overlaps"] == 0, t
        pg.screenshot(path=str(ARTIFACTS / "ux_sanity.png"), full_page=True)
        assert not pg.errors, pg.errors
    finally:
        pg.close()


def test_training_shows_epoch_loss_and_time_left(browser, app_url):
    """Train: a live progress bar (not a zero-height box behind the History table)."""
    pg = page(browser, app_url)
    try:
        open_tab(pg, "#av-tabs", "Experiment")
        pg.get_by_text("Train a lite model").first.click()
        pg.locator("#av-train").scroll_into_view_if_needed()
        pg.get_by_label("Name of the new model").fill("progress_seen")
        epochs = pg.get_by_label("Epochs").first
        epochs.fill("3")
        epochs.press("Enter")
        pg.click("#av-train")
        pg.wait_for_function(
            "() => [...document.querySelectorAll('#av-tabs .progress-level')].some(e => "
            "e.offsetParent !== null && /left/.test(e.innerText))", timeout=TIMEOUT)
        bar = pg.evaluate("""() => { const e = [...document.querySelectorAll(
            '#av-tabs .progress-level')].find(e => e.offsetParent !== null);
            const b = e.getBoundingClientRect(), fill = e.querySelector('.progress-level-inner,'
              + ' .progress-bar'); const f = fill && fill.getBoundingClientRect();
            return {text: e.innerText, h: b.height, w: b.width, top: b.top, bottom: b.bottom,
                    fill: f ? f.width : null, vh: innerHeight}; }""")
        assert re.search(r"epoch \d+/3 · loss [\d.]+ · (about \d+ (s|min) left|estimating)",
                         bar["text"]), bar
        assert bar["h"] >= 20 and bar["w"] >= 200, bar  # not a zero-height box
        pg.locator("#av-train-note").scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "ux_training.png"))
        pg.click("#av-train-stop")
        pg.wait_for_selector("#av-train-stop", state="hidden", timeout=TIMEOUT)
        assert not pg.errors, pg.errors
    finally:
        pg.close()


def test_your_model_in_experiment_evaluate(browser, tmp_path):
    """With --model (no --weights): the badge says the weights are the file's own, without a ✓;
    Evaluate preselects the model with "zip of class folders", and Evaluate without a zip says
    so on one pill (beside Gradio's toast of the same message; no "ImageNet model" error)."""
    from app_fixtures import ROOT, serve_app
    from test_browser_layout import ERRORS_SHOWN
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"label {i}" for i in range(10)) + "\n")
    args = ["--model", f"mine={ROOT / 'examples' / 'paper_style_net.py'}", "--labels",
            str(labels), "--input-size", "96"]
    with serve_app(tmp_path, args) as (url, _proc):
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            open_app(pg, url)
            pg.wait_for_function("() => document.querySelector('#av-badge') && document"
                                 ".querySelector('#av-badge').innerText.includes('your model')",
                                 timeout=TIMEOUT)
            badge = pg.locator("#av-badge").inner_text()
            assert "file's own code" in badge and "✓" not in badge, badge
            open_tab(pg, "#av-tabs", "Experiment")
            pg.get_by_text("Evaluate a model").first.click()
            assert pg.locator("#av-eval-model input").input_value().startswith("mine")
            assert pg.locator("#av-eval-data input:checked").get_attribute("value") == \
                "zip of class folders"
            pg.click("#av-eval-run")
            pg.wait_for_function("() => document.body.innerText.includes('Upload a .zip')",
                                 timeout=TIMEOUT)
            pg.wait_for_timeout(1500)  # anything else that would appear has appeared
            shown = pg.evaluate(ERRORS_SHOWN)
            assert shown["pills"] == 1 and shown["toasts"] <= 1, shown
            assert "ImageNet" not in pg.locator("#av-tabs").inner_text()
            pg.screenshot(path=str(ARTIFACTS / "ux_your_model_evaluate.png"), full_page=True)
        finally:
            pg.close()
