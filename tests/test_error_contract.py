"""One error contract: an invalid target, layer, kind or option raises the same attnviz.errors
exception from explain, inspect and metrics (and capture), with the cause chained where there is
one; each path is exercised on a real lite model."""
import numpy as np
import pytest
import torch

import attnviz
from attnviz import metrics
from attnviz.capture.recorder import capture, intervene
from attnviz.errors import (CaptureError, ExplainError, ImageError, InspectError, LayerError,
                            MetricError, OptionError, TargetError, UnknownKindError,
                            UnknownOptionError, check_target)
from attnviz.attribution.explain import explain


@pytest.fixture(scope="module")
def model():
    return attnviz.create_model("lite_cbam")


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def analysis(model, image):
    return attnviz.inspect(model, image, attributions=())


def _raises(cls, fn, *args, chained=False, **kw):
    with pytest.raises(cls) as e:
        fn(*args, **kw)
    assert isinstance(e.value, OptionError) and isinstance(e.value, ValueError)
    if chained:
        assert e.value.__cause__ is not None, "the underlying cause is chained"
    return e.value


def test_the_shared_classes_are_every_entry_points_error():
    for cls in (TargetError, LayerError, UnknownKindError, UnknownOptionError):
        for family in (CaptureError, ExplainError, InspectError, MetricError):
            assert issubclass(cls, family)
    import sys
    assert sys.modules["attnviz.explain"].ExplainError is ExplainError
    assert sys.modules["attnviz.inspect"].InspectError is InspectError
    assert metrics.MetricError is MetricError


def test_check_target():
    assert check_target(3, 6) == 3 and check_target(np.int64(2), 6) == 2
    assert check_target(1.0, 6) == 1
    for bad in (6, -1, 1.5, "two", None):
        _raises(TargetError, check_target, bad, 6)
    assert _raises(TargetError, check_target, "two", 6, chained=True)


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_invalid_target_everywhere(model, image, analysis):
    n = 6
    m = np.ones(image.shape[:2], np.float32)
    # explain: out of range through Captum (the IndexError chained), negative, not an integer
    for method in ("gradcam", "saliency"):
        err = _raises(TargetError, explain, model, image, method, target=n, chained=True)
        assert "not a class" in str(err)
        _raises(TargetError, explain, model, image, method, target=-1)
    _raises(TargetError, explain, model, image, "gradcam", target="cat", chained=True)
    # inspect: with and without a Grad-CAM pass
    _raises(TargetError, attnviz.inspect, model, image, target=n)
    _raises(TargetError, attnviz.inspect, model, image, attributions=(), target=n)
    _raises(TargetError, attnviz.inspect, model, image, attributions=(), target="cat",
            chained=True)
    # metrics
    _raises(TargetError, metrics.deletion_auc, model, image, m, target=n, steps=2)
    _raises(TargetError, metrics.insertion_auc, model, image, m, target=-3, steps=2)
    _raises(TargetError, metrics.gate_ablation, model, image, target=n)
    _raises(TargetError, metrics.randomisation_check, model, image, "spatial", target=n)


def test_invalid_layer_everywhere(model, image, analysis):
    _raises(LayerError, explain, model, image, "gradcam", layer="layer9", chained=True)
    _raises(LayerError, attnviz.inspect, model, image,
            explain_opts={"gradcam": {"layer": "layer9"}}, chained=True)
    _raises(LayerError, attnviz.inspect, model, image, attributions=(),
            capture_opts={"layers": "layer9"})
    _raises(LayerError, analysis.record, "layer9.cbam")
    _raises(LayerError, metrics.gate_ablation, model, image, taps=["layer9.cbam.tap"])
    _raises(LayerError, metrics.randomisation_check, model, image, "layer9.*")
    with pytest.raises(LayerError), capture(model, layers="layer9"):
        pass
    with pytest.raises(LayerError), intervene(model, {"layer9.tap": lambda t: t}):
        pass


def test_invalid_kind_everywhere(model, image):
    _raises(UnknownKindError, attnviz.inspect, model, image, attributions=(),
            capture_opts={"kinds": "gates"}, chained=True)
    _raises(UnknownKindError, metrics.neutral_map, "gates", torch.ones(1, 4), chained=True)
    with pytest.raises(UnknownKindError), capture(model, kinds=["spatial", "gates"]):
        pass
    from attnviz import kinds
    _raises(UnknownKindError, kinds.get, "gates", chained=True)


def test_invalid_option_everywhere(model, image):
    m = np.ones(image.shape[:2], np.float32)
    _raises(UnknownOptionError, explain, model, image, "nonsense")
    _raises(UnknownOptionError, explain, model, image, "gradcam", n_stepz=3)
    _raises(UnknownOptionError, explain, model, image, "integrated_gradients", baseline="grey",
            n_steps=2)
    _raises(UnknownOptionError, attnviz.inspect, model, image, attributions=("nonsense",))
    _raises(UnknownOptionError, attnviz.inspect, model, image, scores={"stepz": 2})
    _raises(UnknownOptionError, attnviz.inspect, model, image, attributions=(),
            capture_opts={"max_querys": 4})
    for fn in (explain, attnviz.inspect, metrics.gate_ablation):  # preprocess's own error
        with pytest.raises(ImageError, match="preprocessing mode"):
            fn(model, image, **{"image_mode" if fn is metrics.gate_ablation else "mode": "zoom"})
    _raises(UnknownOptionError, metrics.gate_ablation, model, image, mode="zero")
    _raises(UnknownOptionError, metrics.deletion_auc, model, image, m, removal="grey", steps=2)
    _raises(UnknownOptionError, metrics.randomisation_check, model, image, "gradcam", n_stepz=2)
