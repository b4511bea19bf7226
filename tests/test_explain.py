"""Attributions equal a direct Captum call for the same inputs, maps come back at the image's
resolution, no hook is left behind, the model's mode is untouched, and threads sharing a model
are serialised by the per-model lock."""
import threading

import numpy as np
import pytest
import torch
from captum.attr import (GradientShap, GuidedGradCam, IntegratedGradients, LayerGradCam,
                         NoiseTunnel, Occlusion, Saliency)

import attnviz
from attnviz.capture.recorder import hook_count
from attnviz.attribution.explain import (CAPTUM_METHODS, Attribution, ExplainError, Explainer,
                                         explain, model_lock)
from attnviz.data.images import make_baseline, preprocess


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return attnviz.create_model("lite_cbam")


@pytest.fixture(scope="module")
def image():
    rs = np.random.RandomState(1)
    img = (rs.rand(12, 18, 3) * 255).astype(np.uint8)
    return np.asarray(attnviz.load_image(img).resize((150, 100)))  # smooth-ish, 150 x 100


# small settings so the suite stays fast; the defaults are exercised in test_maps_every_method
FAST = {"integrated_gradients": {"n_steps": 8, "internal_batch_size": 8},
        "smoothgrad": {"nt_samples": 3, "stdevs": 0.3},
        "occlusion": {"window": 32, "stride": 32},
        "gradient_shap": {"n_samples": 4, "stdevs": 0.1}}


def _direct(model, method, x, target):
    """The same attribution written straight against Captum."""
    xr = x.clone().requires_grad_(True)
    if method == "gradcam":
        return LayerGradCam(model, model.layer4).attribute(xr, target=target)
    if method == "guided_gradcam":
        return GuidedGradCam(model, model.layer4).attribute(xr, target=target)
    if method == "saliency":
        return Saliency(model).attribute(xr, target=target)
    if method == "integrated_gradients":
        return IntegratedGradients(model).attribute(
            xr, baselines=make_baseline(x, "black"), target=target, n_steps=8,
            internal_batch_size=8)
    if method == "smoothgrad":
        torch.manual_seed(0)
        return NoiseTunnel(Saliency(model)).attribute(xr, nt_type="smoothgrad", nt_samples=3,
                                                      nt_samples_batch_size=8, stdevs=0.3,
                                                      target=target)
    if method == "occlusion":
        return Occlusion(model).attribute(xr, sliding_window_shapes=(3, 32, 32),
                                          strides=(3, 32, 32), baselines=torch.zeros_like(x),
                                          target=target, perturbations_per_eval=16)
    torch.manual_seed(0)
    np.random.seed(0)  # Captum's GradientShap picks baselines with numpy
    base = torch.cat([make_baseline(x, "black"), make_baseline(x, "noise"),
                      make_baseline(x, "mean")])
    return GradientShap(model).attribute(xr, baselines=base, n_samples=4, stdevs=0.1,
                                         target=target)


@pytest.mark.parametrize("method", [  # integrated gradients (5 s): the full tier
    pytest.param(m, marks=pytest.mark.slow) if m == "integrated_gradients" else m
    for m in CAPTUM_METHODS])
def test_equals_direct_captum_call(model, image, method):
    x, _ = preprocess(model, image)
    target = 3
    att = explain(model, image, method, target=target, **FAST.get(method, {}))
    ref = _direct(model, method, x, target).detach()
    assert isinstance(att, Attribution) and att.method == method and att.target == target
    assert att.raw.shape == ref.shape
    torch.testing.assert_close(att.raw, ref, rtol=1e-5, atol=1e-7)
    assert att.map.shape == (100, 150) and att.map.dtype == np.float32
    assert np.isfinite(att.map).all() and att.map.min() >= 0
    assert hook_count(model) == 0


def test_maps_follow_the_definition(model, image):
    x, pre = preprocess(model, image)
    cam = explain(model, image, "gradcam", target=1)
    expect = pre.to_image(cam.raw[0].clamp_min(0).sum(0))
    np.testing.assert_allclose(cam.map, expect, rtol=1e-6, atol=1e-9)
    sal = explain(model, image, "saliency", target=1)
    np.testing.assert_allclose(sal.map, pre.to_image(sal.raw[0].abs().sum(0)), rtol=1e-6)
    assert cam.layer == "layer4" and sal.layer is None


def test_target_none_is_the_predicted_class(model, image):
    x, _ = preprocess(model, image)
    with torch.no_grad():
        pred = int(model(x).argmax())
    for method in ("gradcam", "saliency", "integrated_gradients"):
        a = explain(model, image, method, **FAST.get(method, {}))
        b = explain(model, image, method, target=pred, **FAST.get(method, {}))
        assert a.target == b.target == pred
        torch.testing.assert_close(a.raw, b.raw)


def test_gradcam_other_layers_and_batches(model, image):
    x, _ = preprocess(model, image)
    a = explain(model, image, "gradcam", target=0, layer="layer3")
    assert a.layer == "layer3" and a.map.shape == (100, 150)
    exp = Explainer(model, "gradcam", layer=model.layer1)
    assert exp.layer_name == "layer1"
    raw = exp.attribute(torch.cat([x, x.flip(-1)]), target=[0, 2])
    assert raw.shape == (2, 1, 32, 32)
    torch.testing.assert_close(raw[:1], exp.attribute(x, target=0))


def test_explain_leaves_model_state_alone(model, image):
    model.train()
    try:
        explain(model, image, "gradcam", target=0)
        assert model.training
    finally:
        model.eval()
    explain(model, image, "guided_gradcam", target=0)
    assert not model.training and hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())  # no gradients left on weights


def test_bad_options(model, image):
    with pytest.raises(ExplainError, match="unknown attribution method"):
        explain(model, image, "lime")
    with pytest.raises(ExplainError, match="no layer"):
        explain(model, image, "gradcam", layer="layer9")
    with pytest.raises(ExplainError, match="unknown baseline"):
        explain(model, image, "integrated_gradients", baseline="purple", n_steps=2)
    with pytest.raises(ExplainError, match="unknown option"):
        explain(model, image, "saliency", n_steps=3)
    with pytest.raises(ExplainError, match="not a class"):
        explain(model, image, "gradcam", target=99)
    assert hook_count(model) == 0


def test_aliases(model, image):
    a = explain(model, image, "Grad-CAM", target=0)
    b = explain(model, image, "ig", target=0, n_steps=4)
    assert a.method == "gradcam" and b.method == "integrated_gradients"


def test_threads_share_a_model_safely(model, image):
    x, _ = preprocess(model, image)
    ref = {m: explain(model, image, m, target=2).raw for m in ("gradcam", "guided_gradcam")}
    errors, results = [], []

    def work(i):
        try:
            for _ in range(6):
                m = ("gradcam", "guided_gradcam")[i % 2]
                results.append((m, explain(model, image, m, target=2).raw))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(results) == 24
    for m, raw in results:
        torch.testing.assert_close(raw, ref[m])
    assert hook_count(model) == 0


def test_model_lock_is_per_model_and_reentrant(model):
    other = attnviz.create_model("lite_se")
    assert model_lock(model) is model_lock(model)
    assert model_lock(model) is not model_lock(other)
    with model_lock(model), model_lock(model):
        pass


def test_gradcam_builds_no_graph_before_its_layer(model, image):
    """The pass before the Grad-CAM layer runs without autograd (its gradient never reaches
    there), the layer's output onwards with it, and the map equals Captum's on a full graph."""
    seen = {}
    h1 = model.layer2.register_forward_hook(
        lambda m, a, out: seen.__setitem__("before", out.requires_grad))
    h2 = model.fc.register_forward_hook(
        lambda m, a, out: seen.__setitem__("after", out.requires_grad))
    try:
        a = explain(model, image, "gradcam", target=1)
    finally:
        h1.remove()
        h2.remove()
    assert seen == {"before": False, "after": True}
    x, _ = preprocess(model, image)
    direct = LayerGradCam(model, model.layer4).attribute(x.clone().requires_grad_(True), target=1)
    torch.testing.assert_close(a.raw, direct.detach())
    # a forward pass of another context through the same layer keeps its own grad mode
    with torch.no_grad():
        assert not model(x).requires_grad
    assert hook_count(model) == 0
