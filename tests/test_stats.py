"""Dataset-level attention statistics against hand-computed values on small batches, and the
batched pass over real models."""
import numpy as np
import pytest
import torch

from attnviz.datasets import make_shapes
from attnviz.errors import OptionError
from attnviz.models.registry import create_model
from attnviz.scores.stats import (
    class_means,
    class_specificity,
    csv_tables,
    dataset_stats,
    large_kernel_weight,
    object_concentration,
    object_scale,
    slope_interval,
)


def test_class_specificity_hand_computed():
    # two classes, one channel: values 0, 2 (class 0) and 4, 6 (class 1): mean 3, total SS 20,
    # class means 1 and 5, between SS 2*4 + 2*4 = 16 -> 0.8
    g = np.array([[0.], [2], [4], [6]])
    y = np.array([0, 0, 1, 1])
    assert class_specificity(g, y) == pytest.approx(0.8)
    np.testing.assert_allclose(class_means(g, y, 3)[:2], [[1], [5]])
    assert np.isnan(class_means(g, y, 3)[2]).all()
    # gates that do not depend on the class: 0; gates fixed by the class: 1
    assert class_specificity(np.array([[1., 2], [3, 4], [1, 2], [3, 4]]), y) == 0.0
    assert class_specificity(np.array([[1., 1], [1, 1], [2, 0], [2, 0]]), y) == pytest.approx(1.0)


def test_slope_interval_hand_computed():
    x = np.array([0., 1, 2, 3])
    y = np.array([1., 3, 5, 7.5])
    f = slope_interval(x, y)
    # slope = Sxy / Sxx = (1.5*3.125... ) by hand: xbar 1.5, ybar 4.125, Sxx 5, Sxy 10.75
    assert f["slope"] == pytest.approx(10.75 / 5)
    a = 4.125 - 2.15 * 1.5
    sse = sum((yi - a - 2.15 * xi) ** 2 for xi, yi in zip(x, y))
    se = np.sqrt(sse / 2 / 5)
    assert f["hi"] - f["slope"] == pytest.approx(1.959964 * se, abs=1e-5)
    assert f["n"] == 4 and f["r"] > 0.99
    assert slope_interval([1, 1, 1], [1, 2, 3])["slope"] is None


def test_kernel_and_group_statistics_hand_computed():
    k = np.zeros((2, 2, 3))
    k[0, 1] = [0.2, 0.4, 0.6]
    k[1, 1] = [1, 1, 1]
    np.testing.assert_allclose(large_kernel_weight(k), [0.4, 1.0])
    # 2x2 map, object = top-left quarter of a 4x4 image; factors 3 on the object, 1 elsewhere:
    # share 3/6 = 0.5, area 0.25 -> concentration 2; a uniform map gives 1
    f = np.ones((2, 1, 2, 2))
    f[0, 0, 0, 0] = 3
    m = np.zeros((2, 4, 4), bool)
    m[:, :2, :2] = True
    np.testing.assert_allclose(object_concentration(f, m), [2.0, 1.0])
    assert np.isnan(object_concentration(f, np.zeros((2, 4, 4), bool))).all()
    d = make_shapes(5, seed=1, size=64)
    s = object_scale(d)
    b = d.boxes
    np.testing.assert_array_equal(s, np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) + 1)


def test_dataset_stats_matches_a_hand_loop_on_real_models():
    d = make_shapes(12, seed=4, size=64)
    torch.manual_seed(0)
    se = create_model("lite_se")
    r = dataset_stats(se, d, batch_size=5)
    assert r["n"] == 12 and len(r["channel"]) == 4 and not r["kernel"]
    # the same numbers from one forward pass by hand
    from attnviz.capture.recorder import capture
    from attnviz.training.train import to_tensor
    with torch.no_grad(), capture(se, kinds=["channel"]) as rec:
        se(to_tensor(d.images, se.info.mean, se.info.std))
    first = next(iter(rec))
    g = first.tensor.numpy()
    e = r["channel"][first.layer]
    assert e["specificity"] == pytest.approx(class_specificity(g, d.labels), abs=1e-4)
    np.testing.assert_allclose(np.nan_to_num(e["class_means"]),
                               np.nan_to_num(class_means(g, d.labels, 6)), atol=1e-4)
    sk = dataset_stats(create_model("lite_sk"), d, batch_size=6)
    assert len(sk["kernel"]) == 4
    lay = next(iter(sk["kernel"].values()))
    assert lay["fit"]["n"] == 12 and len(lay["large_weight"]) == 12
    sge = dataset_stats(create_model("lite_sge"), d, batch_size=6)
    assert [e["depth"] for e in sge["group"].values()] == [0, 1, 2, 3]
    tables = csv_tables(r) | csv_tables(sk) | csv_tables(sge)
    assert set(tables) == {"channel_gates.csv", "class_specificity.csv", "kernel_vs_scale.csv",
                           "kernel_slope.csv", "group_concentration.csv"}
    assert len(tables["kernel_vs_scale.csv"]) == 1 + 4 * 12
    with pytest.raises(OptionError):
        dataset_stats(se, d.subset([0, 1]))


def test_findings_pool_the_per_seed_statistics():
    from attnviz.tools.stats_report import findings, load_model, load_source
    f = findings("lite_se", n=12, seeds=(5, 6), batch_size=6)
    m = load_model("lite_se")
    per = [dataset_stats(m, load_source("synthetic", 12, s, 128))["channel"]["layer4.0.se"]
           ["specificity"] for s in (5, 6)]
    got = f["class_specificity"]["layer4.0.se"]["over_seeds"]
    assert got["mean"] == pytest.approx(np.mean(per), abs=1e-4) and got["n"] == 2
