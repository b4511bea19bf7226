"""The Statistics tab in headless Chromium: the relational links view draws the affinity with
the partner and the distractor outlined (legend entries on a real Plotly plot)."""
from __future__ import annotations

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 90_000


def test_links_view_outlines_partner_and_distractor(browser, app_url):
    from app_fixtures import open_app
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        open_app(pg, app_url, timeout=TIMEOUT)
        pg.locator("#av-tabs button[role=tab]", has_text="Statistics").first.click()
        pg.click("#av-links-run")
        pg.wait_for_selector("#av-links-fig .js-plotly-plot", timeout=TIMEOUT)
        legend = pg.locator("#av-links-fig .legend").first.text_content()
        assert "partner" in legend and "distractor" in legend
        assert not pg.errors, pg.errors
    finally:
        pg.close()
