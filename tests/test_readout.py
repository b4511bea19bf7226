"""The answer read at a query point (attnviz.models.readout) and the cued task's training with it:
the cell logits are the pooled head's per-cell share, the hook is gone afterwards (also after an
error), points map to the right cell through a flip, and the trainer records the query accuracy."""
import numpy as np
import pytest
import torch

from attnviz.data.cued import make_cued
from attnviz.errors import AttnvizError
from attnviz.models.readout import has_cell_readout, logits_at, query_cells
from attnviz.models.registry import create_model
from attnviz.training.train import _augment, _flipped_points, accuracy, train


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("lite_nonlocal", num_classes=3).eval()


def test_cell_logits_are_the_pooled_heads_share(model):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 64, 64)
    pts = torch.tensor([[3.0, 60.0], [33.0, 17.0], [63.9, 0.0]])
    with torch.no_grad():
        logits, at_q = logits_at(model, x, pts)
        f = model.forward_features(x)
        np.testing.assert_allclose(logits, model(x), atol=1e-5)
        # the image's logits are the mean of every cell's logits (fc is linear)
        cells = model.fc(f.permute(0, 2, 3, 1))
        np.testing.assert_allclose(cells.mean((1, 2)), logits, atol=1e-4)
    assert f.shape[-2:] == (8, 8)
    for b, (r, c) in enumerate([(0, 7), (4, 2), (7, 0)]):
        np.testing.assert_allclose(at_q[b], cells[b, r, c], atol=1e-5)
    assert not model.avgpool._forward_pre_hooks and has_cell_readout(model)


def test_hook_removed_after_an_error_and_models_without_a_cell_readout(model):
    class Boom(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        logits_at(model, torch.zeros(1, 3, 64, 64), [[1.0, 1.0]], net=Boom())
    assert not model.avgpool._forward_pre_hooks
    with pytest.raises(TypeError, match="avgpool"):
        logits_at(torch.nn.Linear(2, 2), torch.zeros(1, 2), [[0.0, 0.0]])


def test_points_follow_the_flip_to_the_mirrored_cell():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 128, (200, 2))
    pts = pts[np.abs(pts[:, 1] / 16 - np.round(pts[:, 1] / 16)) > 0.05]  # off cell borders
    g = torch.Generator().manual_seed(0)
    x, flip = _augment(torch.zeros(len(pts), 3, 128, 128), g)
    assert 0 < int(flip.sum()) < len(pts)
    cy0, cx0 = query_cells(torch.as_tensor(pts), (128, 128), (8, 8))
    cy1, cx1 = query_cells(_flipped_points(pts, flip, 128), (128, 128), (8, 8))
    assert torch.equal(cy0, cy1)
    assert torch.equal(cx1, torch.where(flip, 7 - cx0, cx0))


def test_a_query_loss_needs_a_relational_task(tmp_path):
    with pytest.raises(AttnvizError, match="query"):
        train("lite_nonlocal", tmp_path, task="shapes", query_loss=1.0, epochs=1,
              images_per_epoch=32, batch_size=32)
    with pytest.raises(AttnvizError, match="0 or more"):
        train("lite_nonlocal", tmp_path, task="cued", query_loss=-1.0, epochs=1,
              images_per_epoch=32, batch_size=32)
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_a_negative_link_tolerance_is_refused(model):
    from attnviz.errors import OptionError
    from attnviz.scores.links import evaluate_links
    with pytest.raises(OptionError, match="0 or more pixels"):
        evaluate_links(model, n=4, seeds=(1,), task="cued", tolerance_px=-3)


@pytest.mark.slow
def test_cued_training_reads_the_answer_at_the_cue(tmp_path):
    card = train("lite_nonlocal", tmp_path, task="cued", epochs=2, images_per_epoch=64,
                 batch_size=32, size=64, val_n=40, progress=lambda _p: None)
    assert card["training"]["query_loss"] == 1.0  # the cued task's own weight
    for h in card["history"]:
        assert 0 <= h["val_acc_at_query"] <= 1 and np.isfinite(h["loss"])
    from attnviz.models.checkpoint import load_checkpoint
    m = load_checkpoint(tmp_path / "lite_nonlocal.safetensors")
    val = make_cued(40, seed=500_000, size=64)
    assert accuracy(m, val, at_query=True) == pytest.approx(card["history"][-1]
                                                            ["val_acc_at_query"])
    # the link scores read the answer at the query too, and with the module switched off
    from attnviz.scores.links import evaluate_links, format_links
    r = evaluate_links(m, n=20, seeds=(7, 8), task="cued")
    per = [accuracy(m, make_cued(20, seed=s, size=64), at_query=True) for s in (7, 8)]
    assert r["accuracy_at_query_per_seed"] == pytest.approx(per, abs=1e-4)
    (e,) = r["links"]["layers"].values()
    assert 0 <= e["at_query_off"]["mean"] <= 1 and "read at the query" in format_links(r)
    plain = train("lite_nonlocal", tmp_path / "plain", task="cued", epochs=1,
                  images_per_epoch=32, batch_size=32, size=64, val_n=20, query_loss=0,
                  progress=lambda _p: None)
    assert plain["training"]["query_loss"] == 0 and "val_acc_at_query" not in plain["history"][0]
