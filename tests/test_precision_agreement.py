"""attnviz.scores.precision: two analyses of one image compared (the app's AMP decision)."""
from __future__ import annotations

import copy

import numpy as np
import torch

import attnviz
from attnviz.scores.precision import precision_agreement


def _analysis(seed=0):
    torch.manual_seed(seed)
    model = attnviz.create_model("lite_cbam").eval()
    img = (np.random.default_rng(seed).random((64, 64, 3)) * 255).astype(np.uint8)
    return attnviz.inspect(model, img, attributions=("gradcam",))


def test_identical_analyses_agree_exactly():
    a = _analysis()
    check = precision_agreement(a, copy.deepcopy(a))
    assert check["same_top1"] and check["max_prob_diff"] == 0
    assert check["min_spearman"] > 0.999 and check["exact_enough"]


def test_scrambled_maps_or_probabilities_disagree():
    a = _analysis()
    b = copy.deepcopy(a)
    for r in b.maps:  # reverse every map: ranks anti-correlated
        r.tensor = torch.flip(r.tensor, dims=(-1, -2))
    g = b.attributions["gradcam"]
    g.map = np.ascontiguousarray(g.map[::-1, ::-1])
    check = precision_agreement(a, b)
    assert check["min_spearman"] < 0.98 and not check["exact_enough"]
    c = copy.deepcopy(a)
    c.probs = np.roll(np.asarray(a.probs), 1)
    check = precision_agreement(a, c)
    assert check["max_prob_diff"] > 0.01 and not check["exact_enough"]
