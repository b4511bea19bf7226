"""Link scores: hand-computed values, the oracle and the random baseline on several seeds, and a
real model's affinities scored end to end."""
import numpy as np
import pytest
import torch

import attnviz
from attnviz.datasets import make_cued, make_relational
from attnviz.errors import OptionError
from attnviz.models.registry import create_model
from attnviz.scores.links import (
    evaluate_links,
    link_evaluation,
    link_scores,
    oracle_rows,
    pair_scores,
    partner_points,
    pooled_over_seeds,
    public,
    grown,
    query_dependence,
    query_rows,
    random_query_dependence,
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


def test_pair_scores_hand_computed():
    # key cells: query square, partner square, distractor, background
    cov = {"own": np.array([[1, 0, 0, 0.]]), "partner": np.array([[0, 1, 0, 0.]]),
           "distractor": np.array([[0, 0, 1, 0.]])}
    forward = np.array([[0.2, 0.7, 0.05, 0.05]])  # the query reads its partner
    reverse = np.array([[0.1, 0.6, 0.1, 0.2]])  # the partner reads itself, then background
    s = pair_scores(forward, reverse, cov)
    assert s["pointing"][0] == 1 and s["pointing_reverse"][0] == 0
    assert s["pointing_either"][0] == 1 and s["pointing_both"][0] == 0
    assert s["partner_reverse"][0] == pytest.approx(0.1)  # the reverse partner is the query
    assert s["partner_pair"][0] == pytest.approx((0.7 + 0.1) / 2)
    assert s["distractor_pair"][0] == pytest.approx((0.05 + 0.1) / 2)
    s = pair_scores(reverse[:, [1, 0, 2, 3]], forward[:, [1, 0, 2, 3]], cov)  # roles swapped
    assert s["pointing"][0] == 0 and s["pointing_either"][0] == 1
    s = pair_scores(np.array([[0.9, 0, 0.1, 0]]), np.array([[0, 0.9, 0.1, 0]]), cov)  # no link
    assert s["pointing_either"][0] == 0 and s["distractor_pair"][0] == pytest.approx(0.1)


def test_partner_points_are_the_square_centres():
    m = np.zeros((2, 20, 20), bool)
    m[0, 2:6, 10:14] = True  # pixels 2..5: centre 4.0 in the points' convention (pixel edges)
    m[1, 11:20, 0:3] = True
    np.testing.assert_allclose(partner_points(m), [[4, 12], [15.5, 1.5]])
    d = make_relational(20, seed=SEEDS[0], size=96)
    np.testing.assert_allclose(partner_points(d.query_masks), d.query_points, atol=0.75)


@pytest.mark.parametrize("seed", SEEDS)
def test_pair_figures_tell_a_one_way_link_from_none(seed):
    """A hand-made one-way affinity (the square of the lower palette index reads the other, the
    other reads itself; ties: the query reads) scores about 0.5 on single-query pointing but 1 on
    either-way pointing and 0 on both-ways; the oracle scores 1 everywhere; random stays low."""
    d = make_relational(120, seed=seed, size=96)
    grid = (12, 12)
    cov = {k: region_cover(getattr(d, f), grid) for k, f in
           (("partner", "partner_masks"), ("distractor", "distractor_masks"),
            ("own", "query_masks"))}
    q_reads = d.region_colours[:, 0] <= d.region_colours[:, 1]
    # where the query reads, the partner reads itself; elsewhere the query reads itself and the
    # partner reads the query: both rows put all their mass on one square
    on = np.where(q_reads[:, None], cov["partner"], cov["own"])
    s = pair_scores(oracle_rows(on), oracle_rows(on), cov)
    np.testing.assert_array_equal(s["pointing"], q_reads.astype(float))
    # a row wholly on its own region is zero outside it: its maximum there (the first cell) misses
    assert abs(np.nanmean(s["pointing_reverse"]) - np.mean(~q_reads)) < 0.05
    assert 0.3 < np.mean(q_reads) < 0.9
    assert (s["pointing_either"] == 1).all() and np.nanmean(s["pointing_both"]) < 0.05
    o = pair_scores(oracle_rows(cov["partner"]), oracle_rows(cov["own"]), cov)
    assert (o["pointing_either"] == 1).all() and (o["pointing_both"] == 1).all()
    assert np.allclose(o["partner_pair"], 1)
    k = grid[0] * grid[1]
    r = pair_scores(random_rows(120, k, seed), random_rows(120, k, seed + 1), cov)
    assert np.nanmean(r["pointing_either"]) < 0.35 and np.nanmean(r["pointing_both"]) < 0.1
    assert np.nanmean(r["pointing_either"]) >= np.nanmean(r["pointing"])


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
    assert layer["oracle"]["pointing_both"]["mean"] == 1.0
    m = layer["model"]
    assert m["pointing"]["mean"] <= m["pointing_either"]["mean"]
    assert m["pointing_both"]["mean"] <= m["pointing"]["mean"]
    assert layer["model"]["pointing"]["n"] == 40
    pooled = pooled_over_seeds(results)
    assert pooled["n"] == 80 and pooled["layers"]["layer3.1"]["model"]["pointing"]["n"] == 80
    assert "_per_image" not in str(public(results[0]))
    assert model.training  # train mode restored
    # an untrained non-local block reads nearly the same keys from every query (GCNet's finding
    # needs no training here: random features); the random reference reads its own
    qd, rd = m["query_dependence"]["mean"], layer["random"]["query_dependence"]["mean"]
    assert 0 <= qd < rd and "query_dependence" not in layer["oracle"]
    assert "query_dependence" in pooled["layers"]["layer3.1"]["model"]["per_seed"]
    # the colour table: one cell per (partner, distractor) colour pair seen, images add up
    table = pooled["layers"]["layer3.1"]["by_colour"]
    assert sum(n for *_, n in table) == 80 and all(-1 <= v <= 1 for _, _, v, _ in table)
    per = results[0]["layers"]["layer3.1"]["_per_image"]["model"]
    d0 = make_relational(40, seed=SEEDS[0], size=96)
    p0, q0 = d0.region_colours[0, 1], d0.region_colours[0, 2]
    sel = (d0.region_colours[:, 1] == p0) & (d0.region_colours[:, 2] == q0)
    cell = [v for p, q, v, _ in layer["by_colour"] if (p, q) == (p0, q0)][0]
    assert cell == pytest.approx((per["partner"] - per["distractor"])[sel].mean(), abs=1e-3)


def test_query_dependence_hand_computed():
    rows = np.array([[0.5, 0.5, 0, 0], [1, 0, 0, 0], [0, 0, 2, 2]], float)  # unnormalised last
    mean = np.array([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [1, 1, 0, 0]], float)
    np.testing.assert_allclose(query_dependence(rows, mean), [0.0, 0.5, 1.0])
    # random rows against the mean of many: the same value for every seed, well inside (0, 1)
    vals = [random_query_dependence(200, 64, 36, seed=s).mean() for s in SEEDS]
    assert all(0.1 < v < 0.6 for v in vals) and max(vals) - min(vals) < 0.05


def test_link_evaluation_refuses_models_and_data_it_cannot_score():
    with pytest.raises(OptionError, match="no affinity"):
        link_evaluation(create_model("lite_se", num_classes=2), make_relational(4, size=96))
    from attnviz.datasets import make_shapes
    with pytest.raises(OptionError, match="relational"):
        link_evaluation(create_model("lite_nonlocal"), make_shapes(4, size=96))


def test_a_tolerance_counts_the_cells_next_to_an_object():
    partner = np.zeros((1, 16, 16), bool)
    partner[0, 4:8, 4:8] = True  # key cell (1, 1) of a 4x4 grid of 4-px cells
    distractor = np.zeros_like(partner)
    distractor[0, 12:16, 12:16] = True
    own = np.zeros_like(partner)
    own[0, 0:2, 0:2] = True
    row = np.zeros((1, 16))
    row[0, 1 * 4 + 2] = 1.0  # all mass on cell (1, 2), right next to the partner
    strict = link_scores(row, *(region_cover(m, (4, 4)) for m in (partner, distractor, own)))
    near = link_scores(row, *(region_cover(grown(m, 1), (4, 4)) for m in (partner, distractor)),
                       region_cover(own, (4, 4)))
    assert strict["pointing"][0] == 0 and strict["background"][0] == 1
    assert near["pointing"][0] == 1 and near["partner"][0] == 1
    assert grown(partner, 1).sum() == 36 and grown(partner, 0) is partner


@pytest.mark.slow
def test_shipped_block_last_links_the_cue_to_its_shape_on_fresh_seeds():
    """The shipped cued body with the block last, on seeds its card was not scored on: the cue's
    row points at the named shape far above a random row, gives it over 3x the distractor's mass,
    and points better than the same block inside the body (README, "The block last")."""
    from pathlib import Path

    from attnviz.models.checkpoint import load_checkpoint
    from attnviz.models.weights import MODELS_DIR
    seeds = (11, 12, 13)
    out = {}
    for name in ("lite_nonlocal_last_cue", "lite_nonlocal_cue"):
        model = load_checkpoint(Path(MODELS_DIR) / "cue128" / f"{name}.safetensors")
        r = evaluate_links(model, n=60, seeds=seeds, task="cued")
        (layer,) = r["links"]["layers"].values()
        out[name] = layer
    last = out["lite_nonlocal_last_cue"]
    model, rand = last["model"], last["random"]
    assert model["pointing"]["mean"] >= 0.7 and model["pointing"]["mean"] > \
        rand["pointing"]["mean"] + 0.5
    assert model["partner"]["mean"] > 3 * model["distractor"]["mean"]
    assert model["pointing"]["mean"] > out["lite_nonlocal_cue"]["model"]["pointing"]["mean"] + 0.1


def test_ablate_branches_switches_off_each_attention_map_and_leaves_no_hook():
    """scripts/ablate_branches.py finds the modules that compute an attention map (DANet's PAM
    and CAM, the non-local block) and switches them off only while it scores."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "ablate_branches.py"
    spec = importlib.util.spec_from_file_location("ablate_branches", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    found = {name: mod.attention_modules(attnviz.create_model(name, num_classes=3))
             for name in ("lite_danet_last", "lite_pam_last", "lite_nonlocal_last")}
    assert found == {"lite_danet_last": ["head.sa", "head.sc"], "lite_pam_last": ["head.sa"],
                     "lite_nonlocal_last": ["layer3.1"]}
    model = attnviz.create_model("lite_nonlocal_last", num_classes=3).eval()
    with torch.no_grad():  # a non-zero output projection: the block changes its input
        model.layer3[1].W[1].weight.fill_(1.0)
    data = make_cued(8, seed=3, size=128)
    block_in, head_in = [], []
    model.layer3[1].register_forward_pre_hook(lambda _m, i: block_in.append(i[0]))
    model.avgpool.register_forward_pre_hook(lambda _m, i: head_in.append(i[0]))
    for off, same in (([], False), (["layer3.1"], True), ([], False)):
        block_in.clear(), head_in.clear()
        on_acc = mod.accuracy_with_off(model, data, off)
        assert len(on_acc) == 2 and all(0 <= v <= 1 for v in on_acc)
        assert block_in and all(torch.equal(a, b) == same for a, b in zip(block_in, head_in))
    assert len(model.layer3[1]._forward_hooks) == 0  # the script's hook is gone


@pytest.mark.slow
def test_shipped_pam_alone_links_the_cue_where_the_full_danet_head_need_not():
    """The DANet head with the block last: with its channel-attention branch the answer at the
    cue need not come through the spatial affinity (PAM off still answers), and the cue's row
    points at the named shape in about half of the images; with the PAM branch alone the row
    points at it far above a random row and the answer needs PAM (README, "SAGAN and DANet with
    the block last"). Fresh seeds, not the cards'."""
    from pathlib import Path

    from attnviz.models.checkpoint import load_checkpoint
    from attnviz.models.weights import MODELS_DIR
    out = {}
    for name in ("lite_pam_last_cue", "lite_danet_last_cue"):
        model = load_checkpoint(Path(MODELS_DIR) / "cue128" / f"{name}.safetensors")
        r = evaluate_links(model, n=60, seeds=(21, 22, 23), task="cued")
        (layer,) = r["links"]["layers"].values()
        out[name] = layer
    pam, full = out["lite_pam_last_cue"], out["lite_danet_last_cue"]
    assert pam["model"]["pointing"]["mean"] >= 0.75
    assert pam["model"]["pointing"]["mean"] > pam["random"]["pointing"]["mean"] + 0.6
    assert pam["model"]["partner"]["mean"] > 3 * pam["model"]["distractor"]["mean"]
    assert pam["at_query_off"]["mean"] < 0.5  # chance is 1/3: the answer needs PAM
    assert full["at_query_off"]["mean"] > 0.8  # another path: CAM
    assert pam["model"]["pointing"]["mean"] > full["model"]["pointing"]["mean"] + 0.2
