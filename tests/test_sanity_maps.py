"""metrics.randomisation_check returns the maps it compared (return_maps=True): their
similarities are the rows', "attention" averages every spatial map, on_step sees each unit and
can stop the check; the old keyword ``method`` still selects the source."""
import numpy as np
import pytest

import attnviz
from attnviz import metrics


@pytest.fixture(scope="module")
def setup():
    model = attnviz.create_model("lite_cbam")
    img = np.random.default_rng(5).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return model, img


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_maps_match_rows(setup):
    model, img = setup
    seen = []
    rows, maps = metrics.randomisation_check(model, img, "attention", return_maps=True,
                                             on_step=lambda step, unit: seen.append(unit))
    assert len(maps) == len(rows) and seen == [r["layer"] for r in rows[1:]]
    S = model.info.input_size
    assert all(m.shape == (S, S) for m in maps)
    for r, m in zip(rows, maps):
        assert r["spearman"] == pytest.approx(metrics.rank_correlation(maps[0], m))
        assert r["ssim"] == pytest.approx(metrics.ssim(maps[0], m))
    # "attention" is the mean of every spatial kind's maps: here CBAM's spatial gates
    from attnviz.data.images import Preprocess, preprocess
    x, _ = preprocess(model, img)
    assert maps[0] == pytest.approx(metrics.map_source("spatial", 0, {})(
        model, x, Preprocess((S, S), S)))
    assert rows == metrics.randomisation_check(model, img, method="attention")


def test_on_step_stops(setup):
    model, img = setup

    class Stop(Exception):
        pass

    def stop(step, unit):
        if step == 2:
            raise Stop
    with pytest.raises(Stop):
        metrics.randomisation_check(model, img, "gradcam", on_step=stop)
