"""Link scores: hand-computed values, the oracle and the random baseline on several seeds, and a
real model's affinities scored end to end."""
import numpy as np
import pytest
import torch

from attnviz.datasets import make_relational
from attnviz.errors import OptionError
from attnviz.models.registry import create_model
from attnviz.scores.links import (
    link_evaluation,
    link_scores,
    oracle_rows,
    pooled_over_seeds,
    public,
    query_rows,
    random_rows,
    region_cover,
)
from attnviz.scores.stats import mean_interval

SEEDS = (101, 102, 103)


def test_region_cover_hand_computed():
    m = np.zeros((1, 4, 4), bool)
    m[0, 0:2, 0:1] = True  # half of the top-left 2x2 cell
    m[0, 3, 3] = True  # a quarter of the bottom-right cell
    np.testing.assert_allclose(region_cover(m, (2, 2)), [[0.5, 0, 0, 0.25]])
    # not divisible: area interpolation keeps the covered fraction
    m6 = np.zeros((1, 6, 6), bool)
    m6[0, :3, :3] = True
    c = region_cover(m6, (2, 2))
    np.testing.assert_allclose(c, [[1, 0, 0, 0]], atol=1e-6)


def test_query_rows_pick_the_cell_holding_the_point():
    np.testing.assert_array_equal(query_rows(np.array([[0, 0], [95, 95], [50, 10]]), (96, 96),
                                             (12, 12)), [0, 143, 6 * 12 + 1])


def test_link_scores_hand_computed():
    # four key cells: own, partner, distractor, background
    own = np.array([[1, 0, 0, 0.]])
    partner = np.array([[0, 0.3, 0, 0]])
    distractor = np.array([[0, 0, 0.5, 0]])
    rows = np.array([[0.5, 0.2, 0.1, 0.2]])
    s = link_scores(rows, partner, distractor, own)
    np.testing.assert_allclose([s["own"][0], s["partner"][0], s["distractor"][0],
                                s["background"][0]], [0.5, 0.2, 0.1, 0.2])
    # the maximum outside the own cell: partner and background tie at 0.2, argmax takes the first
    assert s["pointing"][0] == 1.0
    s = link_scores(np.array([[0.9, 0.01, 0.06, 0.03]]), partner, distractor, own)
    assert s["pointing"][0] == 0.0 and s["distractor"][0] == pytest.approx(0.06)
    # rows are renormalised; a cell touched by own and partner counts as own
    s = link_scores(np.array([[2, 2, 0, 0.]]), np.array([[0.1, 0.3, 0, 0]]), distractor, own)
    assert s["own"][0] == pytest.approx(0.5) and s["partner"][0] == pytest.approx(0.5)
    with pytest.raises(OptionError):
        link_scores(rows, partner[:, :3], distractor, own)


def test_mean_interval_hand_computed():
    r = mean_interval([1, 2, 3, np.nan])
    assert r["mean"] == 2 and r["n"] == 3
    assert r["hi"] - 2 == pytest.approx(1.959964 * 1 / np.sqrt(3), abs=1e-4)
    assert mean_interval([])["mean"] is None


@pytest.mark.parametrize("grid", [(6, 6), (12, 12)])
def test_oracle_and_random_baseline_on_several_seeds(grid):
    for seed in SEEDS:
        d = make_relational(150, seed=seed, size=96)
        cov = [region_cover(getattr(d, f), grid) for f in
               ("partner_masks", "distractor_masks", "query_masks")]
        o = link_scores(oracle_rows(cov[0]), *cov)
        assert (o["pointing"] == 1).all() and np.allclose(o["partner"], 1)
        assert np.allclose(o["distractor"], 0)
        r = link_scores(random_rows(150, grid[0] * grid[1], seed), *cov)
        # random pointing matches its expectation: partner cells / cells outside the own region
        own = cov[2] > 0
        expect = ((cov[0] > 0) & ~own).sum(1) / (~own).sum(1)
        assert abs(np.nanmean(r["pointing"]) - expect.mean()) < 4 * 0.5 / np.sqrt(150)
        assert np.nanmean(r["pointing"]) < 0.3
        np.testing.assert_allclose(r["partner"] + r["distractor"] + r["own"] + r["background"], 1)


def test_link_evaluation_on_a_real_model_and_pooling():
    torch.manual_seed(0)
    model = create_model("lite_nonlocal", num_classes=2).train()
    results = [link_evaluation(model, make_relational(40, seed=s, size=96), batch_size=20, seed=s)
               for s in SEEDS[:2]]
    layer = results[0]["layers"]["layer3.1"]
    assert layer["block"] == "nonlocal" and layer["key_hw"] == [6, 6]
    assert layer["oracle"]["pointing"]["mean"] == 1.0
    assert layer["model"]["pointing"]["n"] == 40
    pooled = pooled_over_seeds(results)
    assert pooled["n"] == 80 and pooled["layers"]["layer3.1"]["model"]["pointing"]["n"] == 80
    assert "_per_image" not in str(public(results[0]))
    assert model.training  # train mode restored


def test_link_evaluation_refuses_models_and_data_it_cannot_score():
    with pytest.raises(OptionError, match="no affinity"):
        link_evaluation(create_model("lite_se", num_classes=2), make_relational(4, size=96))
    from attnviz.datasets import make_shapes
    with pytest.raises(OptionError, match="relational"):
        link_evaluation(create_model("lite_nonlocal"), make_shapes(4, size=96))
