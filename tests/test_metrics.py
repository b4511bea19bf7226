"""Metrics on constructed cases with known answers, and the guarantees of the model-based ones:
the model is left exactly as it was (bit-identical outputs, no hooks, weights untouched)."""
import numpy as np
import pytest
import torch
from torch import nn

import attnviz
from attnviz import metrics as M
from attnviz.capture.recorder import hook_count, intervene
from attnviz.models.resnet import ModelInfo
from attnviz.data.images import preprocess

BOX = (slice(40, 80), slice(30, 70))  # the region the toy model looks at, on its 128 x 128 input


class BoxModel(nn.Module):
    """Two classes; logit 0 = 12 x (the mean of the input inside BOX - 0.8), logit 1 = 0. A map
    equal to BOX is the perfect explanation of class 0."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(12.0))
        self.info = ModelInfo("box", "lite", 128, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def forward(self, x):
        s = (x[:, :, BOX[0], BOX[1]].mean((1, 2, 3)) - 0.8) * self.scale
        return torch.stack([s, torch.zeros_like(s)], 1)


@pytest.fixture(scope="module")
def box_case():
    img = np.full((128, 128, 3), 40, np.uint8)
    img[BOX[0], BOX[1]] = 250  # bright inside the box: class 0 wins
    perfect = np.zeros((128, 128), np.float32)
    perfect[BOX[0], BOX[1]] = 1
    perfect += np.linspace(0, 0.01, 128, dtype=np.float32)[None]  # break ties
    return BoxModel().eval(), img, perfect


# ------------------------------------------------------------------------------ localisation
def test_pointing_game_known_cases():
    mask = np.zeros((40, 60), bool)
    mask[10:20, 10:20] = True
    assert M.pointing_game(mask.astype(float), mask)
    far = np.zeros((40, 60))
    far[30, 50] = 1
    assert not M.pointing_game(far, mask)
    near = np.zeros((40, 60))
    near[22, 15] = 1  # 3 px below the mask
    assert M.pointing_game(near, mask, tolerance=3) and not M.pointing_game(near, mask, 2)
    assert M.pointing_game(torch.from_numpy(mask.astype(np.float32)), torch.from_numpy(mask))


def test_energy_pointing_game_known_cases():
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    assert M.energy_pointing_game(mask.astype(float), mask) == 1.0
    assert M.energy_pointing_game(np.ones((10, 10)), mask) == pytest.approx(0.5)
    m = np.ones((10, 10))
    m[5:] = -3  # negative values do not count
    assert M.energy_pointing_game(m, mask) == 1.0
    assert M.energy_pointing_game(np.zeros((10, 10)), mask) == 0.0


def test_localisation_errors():
    with pytest.raises(M.MetricError, match="mask is"):
        M.pointing_game(np.ones((10, 10)), np.ones((10, 11), bool))
    with pytest.raises(M.MetricError, match="empty"):
        M.energy_pointing_game(np.ones((10, 10)), np.zeros((10, 10), bool))
    with pytest.raises(M.MetricError, match="NaN"):
        M.pointing_game(np.full((10, 10), np.nan), np.ones((10, 10), bool))


# ------------------------------------------------------------------------------ correlation
def test_rank_correlation_known_cases():
    rs = np.random.RandomState(0)
    a = rs.rand(20, 30)
    assert M.rank_correlation(a, a) == pytest.approx(1.0)
    assert M.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert M.rank_correlation(a, a ** 3 + 5) == pytest.approx(1.0)  # monotone: ranks only
    # ties get average ranks: ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]
    x = np.array([[1.0, 2.0, 2.0, 3.0]])
    y = np.array([[1.0, 2.0, 3.0, 4.0]])
    r = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert M.rank_correlation(x, y) == pytest.approx(r)
    assert np.isnan(M.rank_correlation(np.ones((4, 4)), a[:4, :4]))
    # different shapes are averaged down to the smaller one
    big = np.kron(a, np.ones((4, 4)))
    assert M.rank_correlation(big, a) == pytest.approx(1.0)
    assert M.ssim(a, a) == pytest.approx(1.0) and M.ssim(a, -a) < 0.5


# ----------------------------------------------------------------------------- deletion / insertion
@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_deletion_of_a_perfect_map_falls_faster(box_case):
    model, img, perfect = box_case
    inverse = perfect.max() - perfect
    d_good = M.deletion_curve(model, img, perfect, target=0, steps=16)
    d_bad = M.deletion_curve(model, img, inverse, target=0, steps=16)
    assert d_good.auc < d_bad.auc - 0.2
    assert d_good.fractions[0] == 0 and d_good.fractions[-1] == 1 and len(d_good.probs) == 17
    # the first point is the unaltered image, the last the baseline (a zero input: p ~ 0)
    assert d_good.probs[0] > 0.8 and d_good.probs[-1] < 0.01
    i_good = M.insertion_auc(model, img, perfect, target=0, steps=16)
    i_bad = M.insertion_auc(model, img, inverse, target=0, steps=16)
    assert i_good > i_bad + 0.1
    # target None: the predicted class of the image (class 0 here)
    assert M.deletion_curve(model, img, perfect).target == 0


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_deletion_batching_and_map_resolution(box_case):
    model, img, perfect = box_case
    a = M.deletion_auc(model, img, perfect, 0, steps=10, batch_size=3)
    b = M.deletion_auc(model, img, perfect, 0, steps=10, batch_size=64)
    assert a == pytest.approx(b, abs=1e-6)
    # the map may be given at the image's own resolution (here 256 x 256 for a 256 px image)
    big = np.asarray(attnviz.load_image(img).resize((256, 256)))
    big_map = np.kron(perfect, np.ones((2, 2), np.float32))
    assert M.deletion_auc(model, big, big_map, 0, steps=10) == pytest.approx(a, abs=0.02)
    with pytest.raises(M.MetricError, match="expected"):
        M.deletion_auc(model, img, np.ones((10, 10)), 0)
    with pytest.raises(M.MetricError, match="not a class"):
        M.deletion_auc(model, img, perfect, 5)


def test_removals_by_name(box_case):
    """ROAD is the default; the constant fills stay available by name; others are refused."""
    model, img, perfect = box_case
    road = M.deletion_curve(model, img, perfect, 0, steps=8)
    assert road.removal == "road" == M.DEFAULT_REMOVAL
    for name in ("mean", "blur", "black"):
        c = M.deletion_curve(model, img, perfect, 0, steps=8, removal=name)
        assert c.removal == name and 0 <= c.auc <= 1
    # the seeded noise makes a score reproducible, and another seed changes it only a little
    assert M.deletion_auc(model, img, perfect, 0, steps=8) == road.auc
    assert M.deletion_auc(model, img, perfect, 0, steps=8, seed=1) == pytest.approx(road.auc,
                                                                                  abs=0.02)
    with pytest.raises(attnviz.errors.AttnvizError, match="unknown removal"):
        M.deletion_auc(model, img, perfect, 0, removal="purple")
    with pytest.raises(attnviz.errors.AttnvizError, match="unknown removal"):
        M.insertion_auc(model, img, perfect, 0, removal=None)


# ------------------------------------------------------------------------------ randomisation
def test_randomisation_check_leaves_the_original_alone():
    torch.manual_seed(0)
    model = attnviz.create_model("lite_cbam")
    img = (np.random.RandomState(0).rand(96, 96, 3) * 255).astype(np.uint8)
    x, _ = preprocess(model, img)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    rows = M.randomisation_check(model, img, "gradcam")
    assert [r["layer"] for r in rows[1:]] == M.randomisation_units(model)
    assert M.randomisation_units(model) == ["fc", "layer4.0", "layer3.0", "layer2.0",
                                            "layer1.0", "stem"]
    assert rows[0]["spearman"] == 1.0 and rows[0]["step"] == 0
    assert all(set(r) == {"step", "layer", "spearman", "pearson", "ssim"} for r in rows)
    assert abs(rows[-1]["spearman"]) < 0.9  # the map changes once the weights are gone
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert hook_count(model) == 0
    # attention maps: selected by kind; fc does not touch them
    rows = M.randomisation_check(model, img, "spatial")
    assert rows[1]["layer"] == "fc" and rows[1]["spearman"] == pytest.approx(1.0)
    assert rows[-1]["spearman"] < 0.99
    with pytest.raises(M.MetricError, match="spatial layout"):
        M.randomisation_check(model, img, "channel")


# ------------------------------------------------------------------------------ gate ablation
def test_gate_ablation_changes_output_and_restores_model():
    torch.manual_seed(0)
    model = attnviz.create_model("lite_cbam")
    img = (np.random.RandomState(0).rand(96, 96, 3) * 255).astype(np.uint8)
    x, _ = preprocess(model, img)
    with torch.no_grad():
        before = model(x)
    rows = M.gate_ablation(model, img)
    assert [r["tap"] for r in rows] == [n for n, _, _ in attnviz.list_taps(model)]
    assert {"layer", "tap", "block", "kind", "p_before", "p_after", "delta"} <= set(rows[0])
    assert any(abs(r["delta"]) > 1e-5 for r in rows)
    assert rows[0].delta == rows[0]["delta"] and isinstance(rows[0], dict)
    p0 = float(torch.softmax(before, 1)[0].max())
    assert all(r["p_before"] == pytest.approx(p0, abs=1e-5) for r in rows)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # bit-identical
    assert hook_count(model) == 0 and not model.training
    # a batched ablation equals ablating alone through intervene
    r = rows[3]
    with intervene(model, {r["tap"]: lambda t: M.neutral_map(r["kind"], t)}), torch.no_grad():
        alone = float(torch.softmax(model(x), 1)[0, r["target"]])
    assert r["p_after"] == pytest.approx(alone, abs=1e-5)
    # chunking does not change the answer; mean mode and a subset work
    small = M.gate_ablation(model, img, batch_size=2)
    assert [s["p_after"] for s in small] == pytest.approx([r["p_after"] for r in rows], abs=1e-5)
    mean = M.gate_ablation(model, img, mode="mean", taps=[rows[1]["tap"]])
    assert len(mean) == 1 and mean[0]["kind"] == "spatial"
    with pytest.raises(M.MetricError, match="mode"):
        M.gate_ablation(model, img, mode="zero")
    with torch.no_grad():
        assert torch.equal(model(x), before)


@pytest.mark.parametrize("kind,shape", [("channel", (2, 8)), ("spatial", (2, 4, 4)),
                                        ("group", (2, 3, 4, 4)), ("calibration", (2, 3, 4, 4)),
                                        ("kernel", (2, 2, 8)), ("affinity", (2, 6, 5)),
                                        ("channel_affinity", (2, 4, 4))])
def test_neutral_maps(kind, shape):
    t = torch.rand(shape)
    one = M.neutral_map(kind, t, "one")
    mean = M.neutral_map(kind, t, "mean")
    assert one.shape == t.shape == mean.shape
    if kind == "affinity" or kind == "channel_affinity":
        assert torch.allclose(one.sum(-1), torch.ones(shape[:-1]))
    elif kind == "kernel":
        assert torch.allclose(one.sum(1), torch.ones(shape[0], shape[2]))
    else:
        assert torch.equal(one, torch.ones_like(t))
        assert torch.allclose(mean[0], t[0].mean().expand_as(mean[0]))


def test_ablation_of_every_kind_runs():
    for name in ("lite_sk", "lite_sge", "lite_danet", "lite_scnet", "lite_se"):
        model = attnviz.create_model(name)
        rows = M.gate_ablation(model, np.zeros((64, 64, 3), np.uint8))
        assert len(rows) == len(attnviz.list_taps(model)) and hook_count(model) == 0
