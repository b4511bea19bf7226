"""Mode restoration: every library function that runs a model in eval mode gives each module back
its own train/eval flag (a model training with a frozen BatchNorm comes back with the BatchNorm
still frozen and every other module still training), and no batch-norm statistic moves."""
import numpy as np
import pytest
import torch
from torch import nn

import attnviz
from attnviz import metrics
from attnviz.scores.evaluate import evaluate


def _mixed_model():
    """lite_cbam training, with the stem's and layer1's BatchNorms frozen in eval mode."""
    model = attnviz.create_model("lite_cbam")
    model.train()
    frozen = [m for n, m in model.named_modules()
              if isinstance(m, nn.BatchNorm2d) and n.startswith(("stem", "layer1"))]
    assert frozen and len(frozen) < sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for m in frozen:
        m.eval()
    return model


def _state(model):
    modes = {n: m.training for n, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    return modes, stats


def _assert_same(model, before):
    modes, stats = _state(model)
    assert modes == before[0], "every module keeps its own train/eval flag"
    assert len(set(modes.values())) == 2, "the model is still mixed"
    for k, v in stats.items():
        torch.testing.assert_close(v, before[1][k], msg=f"{k} moved")


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def test_eval_mode_restores_each_module():
    model = _mixed_model()
    before = _state(model)
    with metrics.eval_mode(model):
        assert not any(m.training for m in model.modules())
    _assert_same(model, before)
    with pytest.raises(RuntimeError), metrics.eval_mode(model):  # also after an exception
        raise RuntimeError("boom")
    _assert_same(model, before)


@pytest.mark.parametrize("run", [
    lambda m, img: metrics.deletion_auc(m, img, np.random.default_rng(0).random((64, 64)),
                                        steps=2),
    lambda m, img: metrics.gate_ablation(m, img),
    lambda m, img: metrics.randomisation_check(m, img, "spatial"),
    lambda m, img: evaluate(m, n=4, batch_size=4),
], ids=["deletion", "gate_ablation", "randomisation", "evaluate"])
def test_library_functions_restore_a_mixed_mode_model(run, image):
    model = _mixed_model()
    before = _state(model)
    run(model, image)
    _assert_same(model, before)
