"""The Statistics tab through a real server and gradio_client: dataset statistics of a shipped
model, the relational links view, and clear refusals."""
import pytest
from app_fixtures import serve_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stats_client(tmp_path_factory):
    from gradio_client import Client
    with serve_app(tmp_path_factory.mktemp("stats_app")) as (url, _proc):
        yield Client(url, verbose=False)


def test_stats_tab_computes_the_papers_statistics(stats_client):
    md, gates, kernel, group = stats_client.predict("lite_se", 40, api_name="/stats")
    assert "class-specificity" in md and "layer4.0.se" in md
    assert gates is not None and kernel is None and group is None


def test_links_view_outlines_the_partner(stats_client):
    md, fig, table = stats_client.predict("lite_sagan_rel", 2, api_name="/links")
    assert "lite_sagan_rel" in md
    names = [t.get("name") for t in __import__("json").loads(fig["plot"])["data"]]
    assert "partner" in names and "distractor" in names
    assert table["headers"][1] == "link pointing" and len(table["data"]) == 4


def test_links_view_offers_the_128_px_models(stats_client):
    md, fig, table = stats_client.predict("rel128/lite_sagan_rel", 1, api_name="/links")
    assert "rel128/lite_sagan_rel" in md and "1.0" in md  # its card's accuracy at 128 px
    names = [t.get("name") for t in __import__("json").loads(fig["plot"])["data"]]
    assert "partner" in names and "distractor" in names
    md, fig, table = stats_client.predict("rel128/lite_resnet_rel", 1, api_name="/links")
    assert "control" in md and fig is None  # the plain CNN: no affinity


@pytest.mark.parametrize("name", ["cue128/lite_nonlocal_cue", "cue128/lite_nonlocal_last_cue",
                                  "cue128/lite_pam_last_cue"])
def test_links_view_shows_a_cued_model_on_its_own_task(stats_client, name):
    from attnviz.app.examples import RELATIONAL_COUNT, RELATIONAL_SEED
    from attnviz.data.cued import make_cued
    md, fig, table = stats_client.predict(name, 3, api_name="/links")
    d = make_cued(RELATIONAL_COUNT, seed=RELATIONAL_SEED, size=128, indices=[3])
    # the cued example (not a same/different one), its answer read at the cue too
    assert f"true **{d.classes[int(d.labels[0])]}**" in md and "read at the cue" in md
    names = [t.get("name") for t in __import__("json").loads(fig["plot"])["data"]]
    assert "partner" in names and "distractor" in names and len(table["data"]) == 4


def test_stats_tab_refuses_bad_input(stats_client):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="20 to 1000"):
        stats_client.predict("lite_se", 5, api_name="/stats")
    with pytest.raises(AppError, match="not one of the choices|Unknown relational model"):
        stats_client.predict("../../etc/passwd", 1, api_name="/links")
