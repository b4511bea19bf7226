"""The relational same/different task: ground truth for every link, the label a function of both
squares, and no single region giving it away."""
import numpy as np
import pytest

from attnviz.datasets import PALETTE, RELATION_CLASSES, make_relational
from attnviz.training.train import TASKS

SEEDS = (11, 12)


def _nearest_palette(pixels):
    d = np.linalg.norm(pixels[:, None, :].astype(float) - PALETTE[None].astype(float), axis=-1)
    return d.argmin(1)


def test_layout_and_determinism():
    d = make_relational(10, seed=3, size=64)
    assert d.images.shape == (10, 64, 64, 3) and d.images.dtype == np.uint8
    for f in ("query_masks", "partner_masks", "distractor_masks", "masks"):
        assert getattr(d, f).shape == (10, 64, 64) and getattr(d, f).dtype == bool
    assert d.query_points.shape == (10, 2) and d.region_colours.shape == (10, 3)
    assert d.classes == RELATION_CLASSES
    e = make_relational(10, seed=3, size=64)
    np.testing.assert_array_equal(d.images, e.images)
    part = make_relational(10, seed=3, size=64, indices=[7, 2])
    np.testing.assert_array_equal(part.images, d.images[[7, 2]])
    np.testing.assert_array_equal(part.partner_masks, d.partner_masks[[7, 2]])
    sub = d.subset([1, 4])
    np.testing.assert_array_equal(sub.distractor_masks, d.distractor_masks[[1, 4]])
    assert not np.array_equal(d.images, make_relational(10, seed=4, size=64).images)
    with pytest.raises(ValueError):
        make_relational(2, size=32)
    assert TASKS["relational"][1] == RELATION_CLASSES


@pytest.fixture(scope="module")
def many():
    return [make_relational(1000, seed=s, size=64) for s in SEEDS]


def test_regions_disjoint_far_apart_and_query_point_inside(many):
    for d in many:
        size = d.images.shape[1]
        assert not (d.query_masks & d.partner_masks).any()
        assert not (d.query_masks & d.distractor_masks).any()
        assert not (d.partner_masks & d.distractor_masks).any()
        for f in ("query_masks", "partner_masks", "distractor_masks"):
            assert getattr(d, f).any(axis=(1, 2)).all(), f
        np.testing.assert_array_equal(d.masks, d.query_masks | d.partner_masks)
        # centres of query and partner at least 0.45 * size apart
        ys, xs = np.mgrid[:size, :size]
        pc = np.stack([(d.partner_masks * ys).sum((1, 2)), (d.partner_masks * xs).sum((1, 2))], 1)
        pc = pc / d.partner_masks.sum((1, 2))[:, None]
        assert (np.linalg.norm(pc - d.query_points, axis=1) >= 0.45 * size - 1).all()
        qy, qx = np.round(d.query_points).astype(int).T
        assert d.query_masks[np.arange(len(qy)), qy, qx].all()


def test_label_is_a_function_of_both_squares_read_from_pixels(many):
    for d in many:
        for r, f in enumerate(("query_masks", "partner_masks", "distractor_masks")):
            m = getattr(d, f)
            mean = np.stack([d.images[i][m[i]].mean(0) for i in range(len(m))])
            np.testing.assert_array_equal(_nearest_palette(mean), d.region_colours[:, r])
        same = d.region_colours[:, 0] == d.region_colours[:, 1]
        np.testing.assert_array_equal(d.labels, np.where(same, 0, 1))
        # the ring really is a distractor: it often shares a square's colour
        ring_copies = (d.region_colours[:, 2] == d.region_colours[:, 0]) | \
                      (d.region_colours[:, 2] == d.region_colours[:, 1])
        assert ring_copies.mean() > 0.5


def _chi2_independence(colour, label, k):
    table = np.zeros((k, 2))
    np.add.at(table, (colour, label), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("region", [0, 1, 2], ids=["query", "partner", "distractor"])
def test_no_single_region_gives_the_label_away(many, region):
    """Each region's colour alone is independent of the label (chi-square, df = 2: 13.82 is the
    0.1% critical value), and the best rule reading one region, fitted on one seed, is at chance
    on the other (within 3 standard errors of 0.5); both squares together give 100%."""
    k = len(PALETTE)
    for d in many:
        assert abs(d.labels.mean() - 0.5) < 3 * 0.5 / np.sqrt(len(d.labels))
        assert _chi2_independence(d.region_colours[:, region], d.labels, k) < 13.82
    fit, test = many
    rule = np.array([np.bincount(fit.labels[fit.region_colours[:, region] == c], minlength=2)
                     .argmax() for c in range(k)])
    acc = (rule[test.region_colours[:, region]] == test.labels).mean()
    assert abs(acc - 0.5) < 3 * 0.5 / np.sqrt(len(test.labels))
    pair = np.where(test.region_colours[:, 0] == test.region_colours[:, 1], 0, 1)
    assert (pair == test.labels).mean() == 1.0


@pytest.mark.slow
def test_train_relational_writes_a_card_that_loads_and_evaluates(tmp_path):
    from attnviz.scores.evaluate import main as evaluate_main
    from attnviz.models.checkpoint import load_checkpoint
    from attnviz.training.train import main as train_main
    train_main(["--model", "lite_sagan", "--task", "relational", "--name", "lite_sagan_rel",
                "--out", str(tmp_path), "--epochs", "1", "--images-per-epoch", "64",
                "--batch-size", "32", "--size", "64", "--val-n", "20", "--threads", "1"])
    import json
    card = json.loads((tmp_path / "lite_sagan_rel.json").read_text())
    assert card["classes"] == RELATION_CLASSES and card["training"]["task"] == "relational"
    assert "--task relational" in card["command"] and card["input_size"] == 64
    model = load_checkpoint(tmp_path / "lite_sagan_rel.safetensors")
    assert model.fc.out_features == 2 and model.info.input_size == 64
    assert evaluate_main(["--task", "relational", "--model", "lite_sagan", "--n", "20",
                          "--models-dir", str(tmp_path), "--write-card"]) == 0
    card = json.loads((tmp_path / "lite_sagan_rel.json").read_text())
    links = card["relational_evaluation"]["links"]["layers"]["layer3.1"]
    assert links["oracle"]["pointing"]["mean"] == 1.0 and links["model"]["pointing"]["n"] == 60


def test_evaluate_relational_without_checkpoints_says_what_to_do(tmp_path, capsys):
    from attnviz.scores.evaluate import main as evaluate_main
    assert evaluate_main(["--task", "relational", "--model", "lite_sagan", "--models-dir",
                          str(tmp_path)]) == 2
    assert "train_relational.sh" in capsys.readouterr().err


def test_load_checkpoint_refuses_missing_files_and_cards(tmp_path):
    import shutil

    from attnviz.errors import WeightsError
    from attnviz.models.checkpoint import load_checkpoint
    from attnviz.models.weights import MODELS_DIR
    with pytest.raises(WeightsError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    shutil.copy(MODELS_DIR / "lite_sagan_rel.safetensors", tmp_path / "x.safetensors")
    with pytest.raises(WeightsError, match="model card"):
        load_checkpoint(tmp_path / "x.safetensors")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(WeightsError, match="model card"):
        load_checkpoint(tmp_path / "x.json".replace(".json", ".safetensors"))
    m = load_checkpoint(MODELS_DIR / "lite_sagan_rel.safetensors")
    assert m.info.classes == RELATION_CLASSES and m.info.name == "lite_sagan_rel"
