"""The Inspect affinity explorer outlines a relational example's partner and distractor (the
Statistics tab's library function, render.stats_figures.outline_regions), and nothing on an image
without that ground truth."""
import numpy as np
import pytest

from attnviz.app.examples import (RELATIONAL_COUNT, RELATIONAL_SEED, ensure_examples,
                                  ensure_relational_examples, known_links)
from attnviz.data.images import load_image
from attnviz.data.relational import make_relational

REGIONS = ("partner", "distractor", "query's own region")


@pytest.mark.parametrize("size", [64, 128])
def test_known_links_is_the_generators_ground_truth(size):
    d = make_relational(RELATIONAL_COUNT, seed=RELATIONAL_SEED, size=size)
    for i in (0, 17, RELATIONAL_COUNT - 1):
        k = known_links(d.images[i])
        np.testing.assert_array_equal(k["regions"]["partner"], d.partner_masks[i])
        np.testing.assert_array_equal(k["regions"]["distractor"], d.distractor_masks[i])
        np.testing.assert_array_equal(k["regions"]["query's own region"], d.query_masks[i])
        assert k["query_xy"] == pytest.approx(d.query_points[i][::-1])
    # another seed's image, one changed pixel, a shapes example, a non-square image: unknown
    assert known_links(make_relational(1, seed=RELATIONAL_SEED + 1, size=size).images[0]) is None
    changed = d.images[3].copy()
    changed[0, 0, 0] ^= 1
    assert known_links(changed) is None
    assert known_links(np.asarray(load_image(ensure_examples()[0]))) is None
    assert known_links(np.zeros((size, size + 1, 3), np.uint8)) is None


def test_the_shipped_relational_examples_are_known():
    paths = ensure_relational_examples()
    assert [p.stem for p in paths] == ["relational_same", "relational_different"]
    for p in paths:
        k = known_links(np.asarray(load_image(p)))
        assert k is not None and all(k["regions"][r].any() for r in REGIONS)


def _outline_traces(fig) -> dict:
    return {t.name: t for t in fig.data if t.name in REGIONS}


@pytest.mark.slow  # two analyses of a real model (about 5 s on one core)
def test_inspect_explorer_outlines_a_relational_example_and_not_a_photo(tmp_path):
    from attnviz.app.analysis import analyse
    from attnviz.app.inspect_handlers import run_affinity
    path = ensure_relational_examples()[1]
    truth = known_links(np.asarray(load_image(path)))
    sess = analyse(str(path), "lite_sagan", "gradcam")
    assert sess.query == pytest.approx(truth["query_xy"])  # the query starts on the query square
    x, y = sess.query
    out = run_affinity(sess, x, y, "per map")
    fig = out["plot_affinity"]
    traces = _outline_traces(fig)
    assert set(traces) == set(REGIONS)
    assert traces["distractor"].line.dash == "dash"
    # the partner's outline lies where the partner is: its box on the key grid (cell centres at
    # integers), within half a cell
    rec = [r for r in sess.analysis.maps if r.kind == "affinity"][-1]
    gh, gw = rec.meta["key_hw"]
    ys, xs = np.nonzero(truth["regions"]["partner"])
    px = np.array([v for v in traces["partner"].x if v is not None])
    py = np.array([v for v in traces["partner"].y if v is not None])
    h, w = truth["regions"]["partner"].shape
    assert abs(px.min() - ((xs.min() + 0.5) / w * gw - 0.5)) < 0.5
    assert abs(px.max() - ((xs.max() + 0.5) / w * gw - 0.5)) < 0.5
    assert abs(py.min() - ((ys.min() + 0.5) / h * gh - 0.5)) < 0.5
    assert abs(py.max() - ((ys.max() + 0.5) / h * gh - 0.5)) < 0.5
    # a photo-like image of a relational example's size, and a shapes example: no ground truth
    # of links, no outline
    from PIL import Image
    rng = np.random.default_rng(5)
    photo = tmp_path / "photo.png"
    smooth = np.kron(rng.integers(0, 256, (16, 16, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(photo)
    star = next(p for p in ensure_examples() if p.stem == "star")
    for other in (photo, star):
        plain = analyse(str(other), "lite_sagan", "gradcam")
        assert plain.links is None
        fig = run_affinity(plain, 60, 60, "per map")["plot_affinity"]
        assert not _outline_traces(fig) and any(t.name == "query" for t in fig.data)
