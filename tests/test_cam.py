"""The CAM family (attnviz.attribution.cam): each method against its paper's formula computed
independently on small tensors, the family's invariants, batching, hooks, errors, and parity with
pytorch-grad-cam (its pipeline re-written in pgc_reference.py; the package itself when importable)
and with TorchCAM (the real package) on the shipped models."""
from collections import OrderedDict

import numpy as np
import pgc_reference
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnviz
from attnviz.attribution import cam as C
from attnviz.errors import LayerError, TargetError, UnknownOptionError
from attnviz.attribution.explain import Explainer
from attnviz.data.images import preprocess

GRADIENT = ("gradcam++", "xgradcam", "layercam", "hirescam")
SEEDS = (0, 1, 2)


def tiny(seed=0, gap=False):
    """body -> (B, 5, 4, 4) on an 8 px input; head: a conv and tanh then a linear layer (the
    gradient at the body varies over positions), or (gap) global average pool + linear."""
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU())
    if gap:
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    else:
        head = nn.Sequential(nn.Conv2d(5, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                             nn.Linear(64, 3))
    return nn.Sequential(OrderedDict(body=body, head=head)).eval()


def acts_grads(model, x, t):
    """A at the body and dy_t/dA, by autograd on the split model (no hooks)."""
    a = model.body(x).detach().requires_grad_(True)
    y = model.head(a)
    (g,) = torch.autograd.grad(y[torch.arange(len(t)), t].sum(), a)
    return a.detach().double().numpy(), g.double().numpy(), y.detach()


def paper(method, a, g):
    """The papers' formulas, by explicit loops over images, channels and positions."""
    b, k, h, w = a.shape
    out = np.zeros((b, h, w))
    for n in range(b):
        for c in range(k):
            s = a[n, c].sum()
            if method == "gradcam++":
                wk = 0.0
                for i in range(h):
                    for j in range(w):
                        gij = g[n, c, i, j]
                        if gij != 0:
                            alpha = gij ** 2 / (2 * gij ** 2 + s * gij ** 3 + 1e-6)
                            wk += alpha * max(gij, 0.0)
                out[n] += wk * a[n, c]
            elif method == "xgradcam":
                wk = sum(g[n, c, i, j] * a[n, c, i, j] / (s + 1e-7)
                         for i in range(h) for j in range(w))
                out[n] += wk * a[n, c]
            elif method == "layercam":
                out[n] += np.maximum(g[n, c], 0) * a[n, c]
            elif method == "hirescam":
                out[n] += g[n, c] * a[n, c]
    return out


def run(model, method, x, target=None, layer="body", **opts):
    return C.CamMethod(model, method, model.get_submodule(layer), layer).attribute(
        x, target, **opts)


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


# ------------------------------------------------------------------------- formulas
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", GRADIENT)
def test_gradient_methods_equal_their_formulas(method, seed):
    model = tiny(seed)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([0, 2])
    raw, tgt, _ = run(model, method, x, t)
    a, g, _ = acts_grads(model, x, t)
    assert raw.shape == (2, 1, 4, 4) and tgt.tolist() == [0, 2]
    assert np.abs(g).std() > 0 and np.ptp(g, axis=(2, 3)).max() > 1e-4  # varies over positions
    np.testing.assert_allclose(raw[:, 0].double().numpy(), paper(method, a, g), rtol=1e-4,
                               atol=1e-6)
    assert no_hooks(model)


@pytest.mark.parametrize("seed", SEEDS)
def test_scorecam_equals_its_formula(seed):
    model = tiny(seed)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([1, 0])
    raw, _, _ = run(model, "scorecam", x, t, batch_size=3)  # chunks of 3 over 5 channels
    a = model.body(x).detach()
    expect = torch.zeros(2, 4, 4)
    for n in range(2):
        scores = []
        for c in range(5):  # one forward per channel: the input masked by the channel's map
            up = F.interpolate(a[n:n + 1, c:c + 1], size=(8, 8), mode="bilinear",
                               align_corners=True)[0, 0]
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            with torch.no_grad():
                scores.append(float(model(x[n:n + 1] * mask)[0, t[n]]))
        w = torch.softmax(torch.tensor(scores), 0)
        expect[n] = sum(w[c] * a[n, c] for c in range(5))
    torch.testing.assert_close(raw[:, 0], expect, rtol=1e-5, atol=1e-6)
    assert no_hooks(model)


@pytest.mark.parametrize("seed", SEEDS)
def test_ablationcam_equals_its_formula(seed):
    model = tiny(seed)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([2, 1])
    method = C.CamMethod(model, "ablationcam", model.body, "body")
    raw, _, _ = method.attribute(x, t, batch_size=2)
    assert method._broadcast_ok is True  # a sequential network: the part before the layer ran once
    a = model.body(x).detach()
    with torch.no_grad():
        y = model.head(a)[torch.arange(2), t]
        expect = torch.zeros(2, 4, 4)
        for n in range(2):
            for c in range(5):
                ablated = a[n:n + 1].clone()
                ablated[:, c] = 0
                yk = model.head(ablated)[0, t[n]]
                expect[n] += (y[n] - yk) / y[n] * a[n, c]
    torch.testing.assert_close(raw[:, 0], expect, rtol=1e-4, atol=1e-6)


def test_ablationcam_falls_back_when_the_network_mixes_the_batch():
    model = tiny(0)

    class Reads(nn.Module):  # the head needs the input's batch size: broadcasting fails
        def __init__(self):
            super().__init__()
            self.body, self.head = model.body, model.head

        def forward(self, x):
            a = self.body(x)
            return self.head(a) + x.reshape(a.shape[0], -1)[:, :3]

    net = Reads().eval()
    x = torch.randn(1, 3, 8, 8)
    method = C.CamMethod(net, "ablationcam", net.body, "body")
    raw, _, _ = method.attribute(x, 0, batch_size=2)
    assert method._broadcast_ok is False  # x.reshape(2, -1) of a 1-image batch: caught
    a = net.body(x).detach()
    with torch.no_grad():
        y = net(x)[0, 0]
        expect = torch.zeros(4, 4)
        for c in range(5):
            ablated = a.clone()
            ablated[:, c] = 0
            expect += (y - (model.head(ablated)[0, 0] + x.reshape(1, -1)[0, 0])) / y * a[0, c]
    torch.testing.assert_close(raw[0, 0], expect, rtol=1e-4, atol=1e-6)
    assert no_hooks(net)


@pytest.mark.parametrize("seed", SEEDS)
def test_eigencam_is_the_first_principal_component(seed):
    model = tiny(seed)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    raw, _, _ = run(model, "eigencam", x)
    a = model.body(x).detach().double().numpy()
    for n in range(2):
        m = a[n].reshape(5, -1).T
        m = m - m.mean(0)
        _, _, vt = np.linalg.svd(m)
        proj = m @ vt[0]
        if abs(proj.min()) > abs(proj.max()):
            proj = -proj  # the sign rule: the largest magnitude is positive
        np.testing.assert_allclose(raw[n, 0].double().numpy().ravel(), proj, rtol=1e-3,
                                   atol=1e-5)


def test_eigencam_needs_no_target_no_gradient_no_classifier():
    torch.manual_seed(0)
    backbone = tiny(0).body  # outputs a feature map, not logits
    x = torch.randn(2, 3, 8, 8)
    raw, tgt, logits = C.CamMethod(backbone, "eigencam", backbone[2], "2").attribute(x)
    assert raw.shape == (2, 1, 4, 4) and tgt is None and logits is None
    # tokens (B, N, C) on a square grid, with a class token in front
    tok = nn.Sequential(nn.Flatten(2), nn.Identity())

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Identity()

        def forward(self, x):
            seq = tok(x).transpose(1, 2)  # (B, 64, 3)
            return self.embed(torch.cat([seq.mean(1, keepdim=True), seq], 1))

    net = Tokens()
    raw, _, _ = C.CamMethod(net, "eigencam", net.embed, "embed").attribute(x)
    assert raw.shape == (2, 1, 8, 8)
    torch.testing.assert_close(raw, C.eigencam(x))
    with torch.no_grad():
        assert not raw.requires_grad


# ------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("seed", SEEDS)
def test_invariants_at_a_global_average_pooled_layer(seed):
    """The gradient at the last layer before GAP + linear is constant over positions (W_ck / hw):
    there Grad-CAM = XGrad-CAM = HiResCAM, and LayerCAM = Grad-CAM on the channels with a positive
    gradient (its positive part, weighted per position)."""
    model = tiny(seed, gap=True)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([0, 1, 2])
    a, g, _ = acts_grads(model, x, t)
    assert np.allclose(g, g[:, :, :1, :1])  # constant over positions
    at, gt = torch.from_numpy(a), torch.from_numpy(g)
    gradcam = C.weighted_sum(at, C.gradcam_weights(at, gt))[:, 0]
    for method in ("xgradcam", "hirescam"):
        torch.testing.assert_close(run(model, method, x, t)[0][:, 0].double(), gradcam,
                                   rtol=1e-4, atol=1e-6)
    positive = C.weighted_sum(at, C.gradcam_weights(at, gt).clamp_min(0))[:, 0]
    torch.testing.assert_close(run(model, "layercam", x, t)[0][:, 0].double(), positive,
                               rtol=1e-4, atol=1e-6)
    assert (gt < 0).any() and (gt > 0).any()  # both signs occur: the clamp matters


def test_gradcampp_equals_gradcam_when_the_gradient_is_constant_over_positions():
    """With G constant over positions alpha is constant too and w_k = hw relu(g_k) / (2 + S_k g_k)
    (S_k = sum_ab A_k): when every S_k g_k is the same and g > 0, Grad-CAM++ is Grad-CAM times a
    constant. With negative gradients, Grad-CAM++ drops those channels (relu), Grad-CAM does not."""
    gen = torch.Generator().manual_seed(0)
    g = (torch.rand(2, 6, generator=gen) + 0.1)[..., None, None].expand(2, 6, 5, 5).double()
    a = torch.rand(2, 6, 5, 5, generator=gen).double()
    a = a / a.sum((2, 3), keepdim=True) * (0.7 / g[..., :1, :1])  # S_k g_k = 0.7 for every k
    pp = C.weighted_sum(a, C.gradcampp_weights(a, g, eps=0))
    gc = C.weighted_sum(a, C.gradcam_weights(a, g))
    torch.testing.assert_close(pp, gc * 25 / 2.7)
    w = C.gradcampp_weights(a, -g, eps=0)
    assert torch.equal(w, torch.zeros_like(w))


def test_hirescam_sums_to_the_first_order_change():
    model = tiny(1)
    x = torch.randn(2, 3, 8, 8)
    raw, _, _ = run(model, "hirescam", x, 1)
    a, g, _ = acts_grads(model, x, torch.tensor([1, 1]))
    np.testing.assert_allclose(raw.double().sum((1, 2, 3)).numpy(), (a * g).sum((1, 2, 3)),
                               rtol=1e-4)


# ------------------------------------------------------------------------- batching, state
@pytest.mark.parametrize("method", list(C.CAMS))
def test_a_batch_equals_the_images_one_by_one(method):
    model = tiny(2)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    t = [2, 0, 1]
    raw, tgt, _ = run(model, method, x, t, **({"batch_size": 2} if method in (
        "scorecam", "ablationcam") else {}))
    for i in range(3):
        one, _, _ = run(model, method, x[i:i + 1], t[i])
        torch.testing.assert_close(raw[i:i + 1], one, rtol=1e-4, atol=1e-6)
    if method != "eigencam":
        assert tgt.tolist() == t


@pytest.mark.parametrize("method", list(C.CAMS))
def test_predicted_class_by_default_and_state_kept(method):
    model = tiny(0)
    model.train()  # no batch norm: train mode changes nothing but must be left as found
    x = torch.randn(2, 3, 8, 8)
    raw, tgt, logits = run(model, method, x)
    assert model.training and no_hooks(model)
    assert tgt.tolist() == logits.argmax(1).tolist()
    assert all(p.grad is None for p in model.parameters())
    assert not raw.requires_grad


def test_bad_requests_are_refused_with_a_message():
    model = tiny(0)
    x = torch.randn(1, 3, 8, 8)
    for bad in (3, -1, 1.5, [0, 1]):
        with pytest.raises((TargetError, attnviz.errors.ExplainError)):
            run(model, "gradcam++", x, bad)
    with pytest.raises(TargetError):
        run(model, "scorecam", x, 7)
    with pytest.raises(LayerError, match="not a .*map"):
        run(model, "layercam", x, 0, layer="head.3")
    with pytest.raises(LayerError):
        run(model, "eigencam", x, layer="head.3")
    with pytest.raises(UnknownOptionError):
        run(model, "scorecam", x, 0, batch_size=0)
    with pytest.raises(UnknownOptionError):
        run(model, "hirescam", x, 0, n_steps=3)
    with pytest.raises(UnknownOptionError):
        C.CamMethod(model, "fullgrad", model.body)
    shared = nn.ReLU()
    twice = nn.Sequential(nn.Conv2d(3, 3, 1), shared, shared, nn.Flatten(), nn.Linear(192, 2))
    with pytest.raises(LayerError, match="2 times"):
        C.CamMethod(twice, "gradcam++", shared, "1").attribute(x)
    assert no_hooks(model) and no_hooks(twice)


def test_names_and_aliases():
    for alias, name in (("Grad-CAM++", "gradcam++"), ("gradcampp", "gradcam++"),
                        ("x-gradcam", "xgradcam"), ("score-cam", "scorecam"),
                        ("Ablation-CAM", "ablationcam"), ("eigen_cam", "eigencam"),
                        ("LayerCAM", "layercam"), ("HiRes-CAM", "hirescam")):
        assert C.cam_name(alias) == name
    assert C.cam_name("gradcam") is None


# ------------------------------------------------------------------------- parity on real models
def pearson(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


def ours_at_input(raw, size):
    return F.interpolate(raw.clamp_min(0).float(), size=size, mode="bilinear",
                         align_corners=False)[:, 0].numpy()


CHEAP = ("gradcam++", "xgradcam", "layercam", "hirescam", "eigencam")


def parity(model_name, layers, methods=tuple(C.CAMS), images=("star.png", "ring.png")):
    model = attnviz.create_model(model_name, pretrained=True)
    x = torch.cat([preprocess(model, f"assets/examples/{f}")[0] for f in images])
    with torch.no_grad():
        logits = model(x)
    out = {}
    for layer in layers:
        mod = model.get_submodule(layer)
        for targets in (logits.argmax(1), logits.argsort(1)[:, -2]):  # predicted, runner-up
            for method in methods:
                raw, _, _ = C.CamMethod(model, method, mod, layer).attribute(x, targets)
                ours = ours_at_input(raw, x.shape[-2:])
                refs = [pgc_reference.cam(model, mod, x, method, targets.tolist(), sign)
                        for sign in ((1, -1) if method == "eigencam" else (1,))]
                out[(layer, int(targets[0]), method)] = min(
                    max(pearson(ours[i], ref[i]) for ref in refs) for i in range(len(x)))
    return out


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_parity_with_pytorch_grad_cam_lite_cbam():
    """Pearson >= 0.98 against pytorch-grad-cam's map (its pipeline, pgc_reference.py) on the
    same layer and target: the Grad-CAM layer, top-1 and runner-up class. EigenCAM up to the
    SVD's sign, which pytorch-grad-cam leaves to LAPACK. (Score-CAM and Ablation-CAM, which take
    a forward pass per channel, and a second layer, in the slow tests.)"""
    res = parity("lite_cbam", ("layer4",), CHEAP, ("star.png",))
    bad = {k: round(v, 4) for k, v in res.items() if not v >= 0.98}
    assert not bad, bad


@pytest.mark.slow
def test_parity_with_pytorch_grad_cam_lite_cbam_every_method():
    res = parity("lite_cbam", ("layer4", "layer3"))
    bad = {k: round(v, 4) for k, v in res.items() if not v >= 0.98}
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lite_resnet", "lite_se", "lite_sk", "lite_sge", "lite_danet",
                                  "lite_nonlocal", "lite_sagan", "lite_scnet"])
def test_parity_with_pytorch_grad_cam_every_shipped_model(name):
    model = attnviz.create_model(name, pretrained=True)
    from attnviz.capture.discover import cam_layer_of
    res = parity(name, (cam_layer_of(model),))
    bad = {k: round(v, 4) for k, v in res.items() if not v >= 0.98}
    assert not bad, bad


@pytest.mark.parametrize("methods", [("gradcam++", "xgradcam", "layercam"), pytest.param(
    ("scorecam",), marks=pytest.mark.slow)])
def test_parity_with_torchcam(methods):
    """TorchCAM itself (pure torch, installed from requirements-dev.txt)."""
    tc = pytest.importorskip("torchcam.methods", reason="torchcam is not installed")
    model = attnviz.create_model("lite_cbam", pretrained=True)
    x, _ = preprocess(model, "assets/examples/cross.png")
    with torch.no_grad():
        cls = int(model(x).argsort(1)[0, -2])  # the runner-up: not what the model sees first
    peers = {"gradcam++": tc.GradCAMpp, "xgradcam": tc.XGradCAM, "layercam": tc.LayerCAM,
             "scorecam": tc.ScoreCAM}
    for method in methods:
        peer = peers[method]
        with peer(model, "layer4", input_shape=tuple(x.shape[1:])) as extractor:
            scores = model(x)
            theirs = extractor(class_idx=cls, scores=scores)[0][0]
        raw, _, _ = C.CamMethod(model, method, model.layer4, "layer4").attribute(x, cls)
        assert pearson(raw.clamp_min(0)[0, 0].numpy(), theirs.detach().numpy()) >= 0.98, method
    assert no_hooks(model)


LITE = ["lite_cbam", "lite_resnet", "lite_se", "lite_sk", "lite_sge", "lite_danet",
        "lite_nonlocal", "lite_sagan", "lite_scnet"]


@pytest.mark.parametrize("name", ["lite_cbam"] + [pytest.param(n, marks=pytest.mark.slow)
                                                  for n in LITE[1:]])
def test_parity_with_the_real_pytorch_grad_cam(name):
    """pytorch_grad_cam itself, where it imports (it needs torchvision, scipy, scikit-learn and
    ttach): every method on the default layer, the prediction and the runner-up, two images."""
    pgc = pgc_reference.real()
    if pgc is None:
        pytest.skip("pytorch_grad_cam is not importable here (it imports torchvision, scipy, "
                    "scikit-learn and ttach); pgc_reference.py follows its code instead")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from attnviz.capture.discover import cam_layer_of
    model = attnviz.create_model(name, pretrained=True)
    layer = cam_layer_of(model)
    mod = model.get_submodule(layer)
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    classes = {"gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
               "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM, "scorecam": pgc.ScoreCAM,
               "ablationcam": pgc.AblationCAM}
    bad = {}
    for image in ("star.png", "ring.png"):
        x, _ = preprocess(model, f"assets/examples/{image}")
        with torch.no_grad():
            order = model(x).argsort(1)[0]
        for target in (int(order[-1]), int(order[-2])):
            for method, cls in classes.items():
                with cls(model=model, target_layers=[mod]) as peer:
                    theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(target)])
                raw, _, _ = C.CamMethod(model, method, mod, layer).attribute(x, target)
                r = pearson(ours_at_input(raw, x.shape[-2:]), theirs)
                if not r >= 0.98:
                    bad[(image, target, method)] = round(r, 4)
        # EigenCAM: its projection (the function EigenCAM calls), up to the SVD's sign, which
        # it takes from LAPACK (its map is then the ReLU of either half)
        raw, _, _ = C.CamMethod(model, "eigencam", mod, layer).attribute(x)
        acts = {}
        handle = mod.register_forward_hook(lambda m, i, o, acts=acts: acts.__setitem__(
            "a", o.detach()))
        with torch.no_grad():
            model(x)
        handle.remove()
        r = abs(pearson(raw[0, 0].numpy(), get_2d_projection(acts["a"].numpy())[0]))
        if not r >= 0.98:
            bad[(image, "eigencam")] = round(r, 4)
    model.eval()  # pytorch-grad-cam sets eval itself; the model was in eval already
    assert not bad, bad


# ------------------------------------------------------------------------- through attnviz.explain
@pytest.mark.parametrize("alias", ["Grad-CAM++", "x-gradcam", "layercam", "hirescam", "score-cam",
                                   "ablation_cam", "eigencam"])
def test_explain_takes_every_cam_method(alias):
    model = attnviz.create_model("lite_se", pretrained=True)
    img = np.asarray(__import__("PIL.Image").Image.open("assets/examples/star.png").convert("RGB"))
    img = img[:100, :90]  # not square, not the input size: the map comes back at this size
    att = attnviz.explain(model, img, method=alias, layer="layer3", target=2)
    name = C.cam_name(alias)
    assert att.method == name and att.layer == "layer3" and att.target == 2
    assert att.map.shape == (100, 90) and att.map.dtype == np.float32 and att.map.min() >= 0
    assert att.raw.shape[:2] == (1, 1) and att.map.max() > 0
    x, _ = preprocess(model, img)
    direct, _, _ = C.CamMethod(model, name, model.layer3, "layer3").attribute(x, 2)
    torch.testing.assert_close(att.raw, direct)
    exp = Explainer(model, alias, layer="layer3")
    torch.testing.assert_close(exp.attribute(x, 2), direct)
    assert no_hooks(model)


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_explain_batches_cam_methods_like_single_images():
    model = attnviz.create_model("lite_cbam", pretrained=True)
    files = [f"assets/examples/{f}" for f in ("star.png", "ring.png", "cross.png")]
    for method in ("scorecam", "layercam"):
        batch = attnviz.explain(model, files, method=method, target=[1, None, 4], batch_size=2)
        for f, t, att in zip(files, [1, None, 4], batch):
            one = attnviz.explain(model, f, method=method, target=t, batch_size=5)
            assert att.target == one.target
            np.testing.assert_allclose(att.map, one.map, rtol=1e-4, atol=1e-6)
