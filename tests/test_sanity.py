"""The randomisation test's verdict (Adebayo et al. 2018): known verdicts on constructed rows,
and the shipped model's Grad-CAM and attention maps pass it."""
import math

import pytest

import attnviz
from attnviz.datasets import make_shapes
from seeds import seeds as test_seeds
from attnviz.errors import AttnvizError
from attnviz.scores.sanity import format_sanity, sanity_check, sanity_verdict


def _rows(values):
    return [{"step": 0, "layer": "(none: original weights)", "spearman": 1.0}] + [
        {"step": i, "layer": f"l{i}", "spearman": v} for i, v in enumerate(values, 1)]


def test_verdicts_on_constructed_rows():
    v = sanity_verdict(_rows([0.9, 0.6, 0.2, 0.1]))
    assert v.passes and v.first_changed == "l3" and v.final_spearman == 0.1
    assert [r.changed for r in v.layers] == [False, False, False, True, True]
    stuck = sanity_verdict(_rows([0.99, 0.97, 0.95]))
    assert not stuck.passes and stuck.first_changed is None and "fails" in stuck.verdict
    # |rho| is what counts (Adebayo et al.): a map that only flips sign has not changed
    assert not sanity_verdict(_rows([-0.9])).passes
    # a constant map (NaN correlation) has changed; a threshold moves the verdict
    assert sanity_verdict(_rows([0.9, math.nan])).passes
    assert sanity_verdict(_rows([0.7]), threshold=0.8).passes
    assert not sanity_verdict(_rows([0.7])).passes
    with pytest.raises(AttnvizError):
        sanity_verdict([])
    with pytest.raises(AttnvizError, match="threshold"):
        sanity_verdict(_rows([0.1]), threshold=0)


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_the_trained_model_passes_for_gradcam_and_its_attention():
    model = attnviz.create_model("lite_cbam", pretrained=True)
    d = make_shapes(2, seed=test_seeds(1)[0], size=128)  # ATTNVIZ_FRESH_SEEDS=1: a fresh one
    r = sanity_check(model, list(d.images), targets=[int(t) for t in d.labels])
    assert list(r) == ["gradcam", "spatial"]  # Grad-CAM and each spatial kind of the model
    for method, v in r.items():
        assert v.images == 2 and len(v.final_spearman_per_image) == 2
        assert v.layers[0].spearman == 1.0 and not v.layers[0].changed
        assert [x.layer for x in v.layers[1:]] == attnviz.metrics.randomisation_units(model)
        assert v.passes, (method, v.layers)
    # the CBAM gates sit in the blocks: randomising fc leaves them exactly as they were
    assert r["spatial"].layers[1].spearman == pytest.approx(1.0)
    text = format_sanity(r)
    assert "gradcam" in text and "spatial" in text and "pass" in text
