"""The cued relational task: a small cue's colour names which of two far-apart shapes to classify.
Ground truth for every link read back from the pixels, the label a function of the cue and the
shapes together, and no single region giving it away."""
import json

import numpy as np
import pytest

from attnviz.data.cued import CUE_PALETTE, CUED_CLASSES, make_cued
from attnviz.data.link_tasks import LINK_TASKS
from attnviz.training.train import TASKS

SEEDS = (21, 22)
N = 600


def _colour_of(img, m):
    mean = img[m].astype(float).mean(0)
    return int(np.linalg.norm(CUE_PALETTE.astype(float) - mean, axis=1).argmin())


def _class_of(m):
    """Read a shape's class from its mask alone: area over the squared largest distance from the
    centroid is pi for a disc, 2 for a square and about 1.3 for an equilateral triangle, whatever
    the rotation."""
    ys, xs = np.nonzero(m)
    r2 = ((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max()
    ratio = len(ys) / r2
    return 0 if ratio > 2.6 else (2 if ratio > 1.65 else 1)


def test_layout_determinism_and_the_task_spec():
    d = make_cued(8, seed=3, size=96)
    assert d.images.shape == (8, 96, 96, 3) and d.images.dtype == np.uint8
    for f in ("query_masks", "partner_masks", "distractor_masks", "masks"):
        assert getattr(d, f).shape == (8, 96, 96) and getattr(d, f).dtype == bool
    assert d.classes == CUED_CLASSES and d.query_points.shape == (8, 2)
    np.testing.assert_array_equal(d.images, make_cued(8, seed=3, size=96).images)
    part = make_cued(8, seed=3, size=96, indices=[5, 1])
    np.testing.assert_array_equal(part.images, d.images[[5, 1]])
    np.testing.assert_array_equal(part.partner_masks, d.partner_masks[[5, 1]])
    assert not np.array_equal(d.images, make_cued(8, seed=4, size=96).images)
    with pytest.raises(ValueError):
        make_cued(2, size=48)
    spec = LINK_TASKS["cued"]
    assert spec.make is make_cued and spec.suffix == "_cue" and TASKS["cued"][1] == CUED_CLASSES


@pytest.fixture(scope="module")
def many():
    return [make_cued(N, seed=s) for s in SEEDS]


def test_regions_disjoint_cue_far_from_both_shapes(many):
    for d in many:
        size = d.images.shape[1]
        q, p, r = d.query_masks, d.partner_masks, d.distractor_masks
        assert not (q & p).any() and not (q & r).any() and not (p & r).any()
        assert q.any((1, 2)).all() and p.any((1, 2)).all() and r.any((1, 2)).all()
        np.testing.assert_array_equal(d.masks, q | p)
        ys, xs = np.mgrid[:size, :size]
        for m in (p, r):
            c = np.stack([(m * ys).sum((1, 2)), (m * xs).sum((1, 2))], 1) / m.sum((1, 2))[:, None]
            assert (np.linalg.norm(c - d.query_points, axis=1) >= 0.45 * size).all()
        qy, qx = np.round(d.query_points).astype(int).T
        assert q[np.arange(len(qy)), qy, qx].all()
        assert q.sum((1, 2)).max() < p.sum((1, 2)).min()  # the cue is the small one


def test_label_is_the_class_of_the_shape_the_cue_names_read_from_pixels(many):
    for d in many:
        for i in range(len(d.labels)):
            img = d.images[i]
            rim = d.query_masks[i] & (img.min(-1) < 235)  # the cue without its white centre
            cue, part, dist = (_colour_of(img, m) for m in
                               (rim, d.partner_masks[i], d.distractor_masks[i]))
            assert cue == part != dist
            assert _class_of(d.partner_masks[i]) == d.labels[i]
            assert _class_of(d.distractor_masks[i]) != d.labels[i]
            np.testing.assert_array_equal(d.region_colours[i], (cue, part, dist))


def _chi2(a, b, ka, kb):
    t = np.zeros((ka, kb))
    np.add.at(t, (a, b), 1)
    e = t.sum(1, keepdims=True) * t.sum(0, keepdims=True) / t.sum()
    keep = e > 0
    return float(((t - e)[keep] ** 2 / e[keep]).sum())


def test_no_single_region_gives_the_label_away(many):
    """The cue's colour is independent of the label (chi-square, df = 6: 22.46 is the 0.1%
    critical value). A shape picked without the cue (the left one) gives the label half the time
    at best: the best rule reading its colour and class, fitted on one seed, scores within 3
    standard errors of 1/2 on the other; so do the two shapes together. The cue with the shapes
    gives it always."""
    k, c = len(CUE_PALETTE), len(CUED_CLASSES)
    for d in many:
        assert _chi2(d.region_colours[:, 0], d.labels, k, c) < 22.46
        assert np.bincount(d.labels, minlength=c).min() > len(d.labels) / c * 0.8

    def left_right(d):
        xs = np.arange(d.images.shape[2])
        px = (d.partner_masks.sum(1) * xs).sum(1) / d.partner_masks.sum((1, 2))
        dx = (d.distractor_masks.sum(1) * xs).sum(1) / d.distractor_masks.sum((1, 2))
        left = np.where(px < dx, d.labels, [_class_of(m) for m in d.distractor_masks])
        right = np.where(px < dx, [_class_of(m) for m in d.distractor_masks], d.labels)
        lc = np.where(px < dx, d.region_colours[:, 1], d.region_colours[:, 2])
        return left, right, lc

    fit, test = many
    fl, fr, fc = left_right(fit)
    tl, tr, tc = left_right(test)
    se = 3 * np.sqrt(0.25 / N)
    one = np.zeros((k, c), int)  # rule: (left colour, left class) -> label
    for colour in range(k):
        for cls in range(c):
            sel = (fc == colour) & (fl == cls)
            one[colour, cls] = np.bincount(fit.labels[sel], minlength=c).argmax() if sel.any() \
                else cls
    assert (one[tc, tl] == test.labels).mean() < 0.5 + se
    two = np.zeros((c, c), int)  # rule: (left class, right class) -> label
    for a in range(c):
        for b in range(c):
            sel = (fl == a) & (fr == b)
            two[a, b] = np.bincount(fit.labels[sel], minlength=c).argmax() if sel.any() else a
    assert (two[tl, tr] == test.labels).mean() < 0.5 + se
    named = np.where(tc == test.region_colours[:, 0], tl, tr)  # the cue names one of the shapes
    assert (named == test.labels).all()


@pytest.mark.slow
def test_train_cued_writes_a_card_that_loads_and_evaluates(tmp_path):
    from attnviz.models.checkpoint import load_checkpoint
    from attnviz.scores.evaluate import main as evaluate_main
    from attnviz.training.train import main as train_main
    train_main(["--model", "lite_nonlocal", "--task", "cued", "--name", "lite_nonlocal_cue",
                "--out", str(tmp_path), "--epochs", "1", "--images-per-epoch", "64",
                "--batch-size", "32", "--size", "64", "--val-n", "20", "--threads", "1"])
    card = json.loads((tmp_path / "lite_nonlocal_cue.json").read_text())
    assert card["classes"] == CUED_CLASSES and card["training"]["task"] == "cued"
    model = load_checkpoint(tmp_path / "lite_nonlocal_cue.safetensors")
    assert model.fc.out_features == 3
    assert evaluate_main(["--task", "cued", "--model", "lite_nonlocal", "--n", "20",
                          "--models-dir", str(tmp_path), "--write-card"]) == 0
    card = json.loads((tmp_path / "lite_nonlocal_cue.json").read_text())
    r = card["relational_evaluation"]
    assert r["task"] == "cued"
    (e,) = r["links"]["layers"].values()
    assert e["oracle"]["pointing"]["mean"] == 1.0 and e["model"]["pointing"]["n"] == 60
    assert evaluate_main(["--task", "cued", "--model", "lite_nonlocal", "--n", "20",
                          "--models-dir", str(tmp_path), "--write-card",
                          "--link-tolerance", "8"]) == 0
    card = json.loads((tmp_path / "lite_nonlocal_cue.json").read_text())
    near = card["relational_evaluation_within_8px"]
    assert near["link_tolerance_px"] == 8 and card["relational_evaluation"] == r  # kept
    (e8,) = near["links"]["layers"].values()
    assert e8["oracle"]["pointing"]["mean"] == 1.0
    # grown regions take mass from the background, never give it back
    assert e8["model"]["background"]["mean"] <= e["model"]["background"]["mean"] + 1e-9
    assert evaluate_main(["--task", "cued", "--model", "lite_sagan", "--models-dir",
                          str(tmp_path)]) == 2
