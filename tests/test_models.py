"""The model zoo: every model builds and runs; the ImageNet configurations reproduce the published
architectures (parameter counts, released key layouts, strides, inits); every block computes what
REFERENCE.md says, checked against a direct re-computation."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import attnviz
from attnviz.models import layers as blocks
from attnviz.capture.recorder import capture
from attnviz.errors import UnknownModelError

LITE = ["lite_resnet", "lite_se", "lite_cbam", "lite_sk", "lite_sge", "lite_nonlocal",
        "lite_danet", "lite_sagan", "lite_scnet"]
LINK = ["lite_nonlocal_last", "lite_sagan_last", "lite_danet_last", "lite_pam_last"]
IMAGENET = ["resnet50", "seresnet50", "cbam_resnet50", "sge_resnet50", "sknet50", "scnet50",
            "scnet101", "nl_resnet50", "danet_resnet50", "sagan_resnet50"]
PARAMS = {  # REFERENCE.md
    "resnet50": 25_557_032, "seresnet50": 28_088_024, "cbam_resnet50": 28_089_624,
    "sge_resnet50": 25_559_080, "sknet50": 27_479_784, "scnet50": 25_564_584,
    "scnet101": 44_565_416, "nl_resnet50": 27_658_792,
}
# smallest quick input whose feature maps survive every pooling: SCConv's 4x4 avg-pool needs
# 4x4 maps in layer4 (128 px); the others run at 64 px (layer4 2x2, SGE needs > 1 position).
IMAGENET_SIZE = {"scnet50": 128, "scnet101": 128}


def imagenet_input(name, batch=1):
    size = IMAGENET_SIZE.get(name, 64)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# -- registry ----------------------------------------------------------------------------------
def test_registry_lists_every_model():
    assert set(attnviz.list_models()) == set(LITE) | set(LINK) | set(IMAGENET)
    assert set(attnviz.list_models("lite")) == set(LITE)
    assert set(attnviz.list_models("link")) == set(LINK)
    assert set(attnviz.list_models("imagenet")) == set(IMAGENET)
    with pytest.raises(ValueError):
        attnviz.list_models("video")


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(UnknownModelError) as err:
        attnviz.create_model("lite_cbma")
    assert "lite_cbam" in str(err.value) and "Available" in str(err.value)
    assert isinstance(err.value, KeyError)  # callers catching KeyError still work
    with pytest.raises(UnknownModelError):
        attnviz.create_model("resnet18")


# -- building and running ----------------------------------------------------------------------
@pytest.mark.parametrize("name", LITE)
def test_lite_model_builds_and_runs(name):
    model = attnviz.create_model(name)
    assert not model.training
    assert model.info.family == "lite" and model.info.input_size == 128
    assert model.info.trained is False
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 96))
    assert out.shape == (2, 6) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_model_builds_and_runs(name):
    model = attnviz.create_model(name)
    assert model.info.family == "imagenet" and model.info.input_size == 224
    assert model.info.resize == 256 and model.info.trained is False
    assert model.info.mean == (0.485, 0.456, 0.406) and model.info.std == (0.229, 0.224, 0.225)
    with torch.no_grad():
        out = model(imagenet_input(name))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_num_classes_is_honoured():
    model = attnviz.create_model("lite_cbam", num_classes=3)
    assert model.fc.out_features == 3
    assert attnviz.create_model("resnet50", num_classes=10).fc.out_features == 10


@pytest.mark.parametrize("name", ["lite_nonlocal_last", "lite_sagan_last"])
def test_link_bodies_put_the_block_last(name):
    """Stages 1-3 of the lite body, the attention block, then only the pooled linear head: the
    last module to run before avgpool is the block, and nothing but avgpool and fc runs after."""
    model = attnviz.create_model(name, num_classes=3)
    assert model.info.family == "lite" and model.info.cam_layer == "layer3"
    assert model.num_stages == 3 and not hasattr(model, "layer4")
    block = model.layer3[-1]
    assert type(block).__name__ in ("NonLocalBlock", "SelfAttention")
    order, hooks = [], []
    leaves = {m for m in model.modules() if not list(m.children())}
    for mod_name, m in model.named_modules():
        if m in leaves or m is block:
            hooks.append(m.register_forward_hook(lambda m, i, o, n=mod_name: order.append(n)))
    try:
        with torch.no_grad():
            out = model(torch.randn(2, 3, 128, 128))
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == (2, 3)
    assert order[-3:] == ["layer3.1", "avgpool", "fc"]
    # the lite model's stem, stages and block share names and shapes, so it warm-starts this body
    lite = attnviz.create_model(name.replace("_last", ""), num_classes=3).state_dict()
    own = model.state_dict()
    shared = [k for k in own if k in lite and lite[k].shape == own[k].shape]
    assert set(own) - set(shared) == {"fc.weight"}  # 96 features, not 128 (the bias matches)


@pytest.mark.parametrize("name", ["lite_danet_last", "lite_pam_last"])
def test_danet_link_bodies_end_with_their_head(name):
    """lite_danet_last: stages 1-3, the DANet head (PAM + CAM), then avgpool and fc;
    lite_pam_last the same with the head's PAM branch alone. Their stem and stages warm-start
    from lite_danet (and from the other link bodies); the head keeps the published names."""
    model = attnviz.create_model(name, num_classes=3)
    head = {k for k in model.state_dict() if k.startswith("head.")}
    full = {k for k in attnviz.create_model("lite_danet_last", num_classes=3).state_dict()
            if k.startswith("head.")}
    pam_only = {k for k in full if k.startswith(("head.conv5a.", "head.sa.", "head.conv51."))}
    assert head == (full if name == "lite_danet_last" else pam_only) and pam_only < full
    assert model.num_stages == 3 and not hasattr(model, "layer4")
    order, hooks = [], []
    for mod_name, m in model.named_modules():
        if mod_name in ("layer3", "head.sa", "head", "avgpool", "fc"):
            hooks.append(m.register_forward_hook(lambda m, i, o, n=mod_name: order.append(n)))
    try:
        with torch.no_grad():
            out = model(torch.randn(2, 3, 128, 128))
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == (2, 3)
    assert order == ["layer3", "head.sa", "head", "avgpool", "fc"]
    own = model.state_dict()
    for other in ("lite_danet", "lite_nonlocal_last"):
        sd = attnviz.create_model(other, num_classes=3).state_dict()
        body = [k for k in own if k.startswith(("stem.", "layer1.", "layer2.", "layer3."))]
        assert body and all(k in sd and sd[k].shape == own[k].shape for k in body), other


def test_lite_deepest_maps_are_16x16_at_128px():
    for name in ("lite_resnet", "lite_cbam", "lite_danet"):
        model = attnviz.create_model(name)
        with torch.no_grad():
            feats = model.forward_features(torch.randn(1, 3, 128, 128))
        assert feats.shape[-2:] == (16, 16), name


# -- ImageNet architectures --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_imagenet_parameter_counts(name):
    assert n_params(attnviz.create_model(name)) == PARAMS[name]


def _bn(prefix):
    return {f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var",
                                      "num_batches_tracked")}


def _conv(prefix, bias=False):
    return {f"{prefix}.weight"} | ({f"{prefix}.bias"} if bias else set())


RESNET_BLOCK = (_conv("conv1") | _bn("bn1") | _conv("conv2") | _bn("bn2") | _conv("conv3")
                | _bn("bn3") | _conv("downsample.0") | _bn("downsample.1"))
# the keys of block layer1.0 in each released layout (REFERENCE.md)
LAYER1_0 = {
    "resnet50": RESNET_BLOCK,
    "seresnet50": RESNET_BLOCK | _conv("se.fc1", True) | _conv("se.fc2", True),
    "cbam_resnet50": RESNET_BLOCK | _conv("cbam.ChannelGate.mlp.1", True)
    | _conv("cbam.ChannelGate.mlp.3", True) | _conv("cbam.SpatialGate.spatial.conv")
    | _bn("cbam.SpatialGate.spatial.bn"),
    "sge_resnet50": RESNET_BLOCK | {"sge.weight", "sge.bias"},
    "sknet50": _conv("conv1.conv") | _bn("conv1.bn") | _conv("conv2.paths.0.conv")
    | _bn("conv2.paths.0.bn") | _conv("conv2.paths.1.conv") | _bn("conv2.paths.1.bn")
    | _conv("conv2.attn.fc_reduce") | _bn("conv2.attn.bn") | _conv("conv2.attn.fc_select")
    | _conv("conv3.conv") | _bn("conv3.bn") | _conv("downsample.0") | _bn("downsample.1"),
    "scnet50": _conv("conv1_a") | _bn("bn1_a") | _conv("conv1_b") | _bn("bn1_b") | _conv("k1.0")
    | _bn("k1.1") | _conv("scconv.k2.1") | _bn("scconv.k2.2") | _conv("scconv.k3.0")
    | _bn("scconv.k3.1") | _conv("scconv.k4.0") | _bn("scconv.k4.1") | _conv("conv3") | _bn("bn3")
    | _conv("downsample.0") | _bn("downsample.1"),
}
LAYER1_0["scnet101"] = LAYER1_0["scnet50"]
LAYER1_0["nl_resnet50"] = RESNET_BLOCK
STEM_HEAD = _conv("conv1") | _bn("bn1") | {"fc.weight", "fc.bias"}
SHAPES = {  # a few shapes that pin the reading of the layouts
    "seresnet50": {"layer1.0.se.fc1.weight": (16, 256, 1, 1),
                   "layer1.0.se.fc2.weight": (256, 16, 1, 1),
                   "layer4.2.se.fc1.weight": (128, 2048, 1, 1)},
    "cbam_resnet50": {"layer1.0.cbam.ChannelGate.mlp.1.weight": (16, 256),
                      "layer1.0.cbam.ChannelGate.mlp.3.weight": (256, 16),
                      "layer1.0.cbam.SpatialGate.spatial.conv.weight": (1, 2, 7, 7)},
    "sge_resnet50": {"layer1.0.sge.weight": (1, 64, 1, 1), "layer4.2.sge.bias": (1, 64, 1, 1)},
    "sknet50": {"layer1.0.conv1.conv.weight": (128, 64, 1, 1),
                "layer1.0.conv2.paths.0.conv.weight": (128, 4, 3, 3),
                "layer1.0.conv2.paths.1.conv.weight": (128, 4, 3, 3),
                "layer1.0.conv2.attn.fc_reduce.weight": (32, 128, 1, 1),
                "layer1.0.conv2.attn.fc_select.weight": (256, 32, 1, 1),
                "layer3.0.conv2.attn.fc_reduce.weight": (32, 512, 1, 1),
                "layer4.0.conv2.attn.fc_reduce.weight": (64, 1024, 1, 1),
                "layer4.0.conv2.attn.fc_select.weight": (2048, 64, 1, 1)},
    "scnet50": {"layer1.0.conv1_a.weight": (32, 64, 1, 1), "layer1.0.k1.0.weight": (32, 32, 3, 3),
                "layer1.0.scconv.k2.1.weight": (32, 32, 3, 3),
                "layer1.0.conv3.weight": (256, 64, 1, 1)},
    "nl_resnet50": {"layer3.5.theta.weight": (512, 1024, 1, 1), "layer3.5.theta.bias": (512,),
                    "layer3.5.phi.weight": (512, 1024, 1, 1),
                    "layer3.5.g.weight": (512, 1024, 1, 1),
                    "layer3.5.W.0.weight": (1024, 512, 1, 1), "layer3.5.W.0.bias": (1024,),
                    "layer3.5.W.1.weight": (1024,)},
}


@pytest.mark.parametrize("name", sorted(LAYER1_0))
def test_released_key_layout(name):
    sd = attnviz.create_model(name).state_dict()
    assert {k[len("layer1.0."):] for k in sd if k.startswith("layer1.0.")} == LAYER1_0[name]
    assert {k for k in sd if not k.startswith("layer")} == STEM_HEAD
    assert not any(k.startswith("layer1.1.downsample") for k in sd)
    for key, shape in SHAPES.get(name, {}).items():
        assert tuple(sd[key].shape) == shape, key


def test_released_layouts_cover_every_block():
    """Beyond layer1.0: every bottleneck of each model has the same key set (with or without a
    downsample), so the whole state dict is in the released layout."""
    for name, depth in (("seresnet50", (3, 4, 6, 3)), ("scnet101", (3, 4, 23, 3))):
        sd = attnviz.create_model(name).state_dict()
        for stage, n in enumerate(depth, 1):
            for i in range(n):
                keys = {k.split(".", 2)[2] for k in sd if k.startswith(f"layer{stage}.{i}.")}
                expected = LAYER1_0[name] if i == 0 else {
                    k for k in LAYER1_0[name] if not k.startswith("downsample")}
                assert keys == expected, (name, stage, i)


def test_nonlocal_sits_before_the_last_bottleneck_of_stage_3():
    model = attnviz.create_model("nl_resnet50")
    kinds = [type(m).__name__ for m in model.layer3]
    assert kinds == ["Bottleneck"] * 5 + ["NonLocalBlock", "Bottleneck"]
    assert [type(m).__name__ for m in model.layer2] == ["Bottleneck"] * 4


def test_sagan_self_attention_is_in_stage_3():
    model = attnviz.create_model("sagan_resnet50")
    assert any(isinstance(m, blocks.SelfAttention) for m in model.layer3)
    others = list(model.layer2) + list(model.layer4)
    assert not any(isinstance(m, blocks.SelfAttention) for m in others)


def test_strides_sit_on_the_3x3_convs():
    r = attnviz.create_model("resnet50")
    assert r.layer2[0].conv1.stride == (1, 1) and r.layer2[0].conv2.stride == (2, 2)
    assert r.layer2[0].downsample[0].stride == (2, 2)
    assert r.conv1.kernel_size == (7, 7) and r.conv1.stride == (2, 2)
    assert (r.maxpool.kernel_size, r.maxpool.stride, r.maxpool.padding) == (3, 2, 1)
    sk = attnviz.create_model("sknet50").layer2[0].conv2
    assert [p.conv.stride for p in sk.paths] == [(2, 2), (2, 2)]
    assert [p.conv.dilation for p in sk.paths] == [(1, 1), (2, 2)]
    assert [p.conv.padding for p in sk.paths] == [(1, 1), (2, 2)]
    assert [p.conv.groups for p in sk.paths] == [32, 32]
    sc = attnviz.create_model("scnet50").layer2[0]
    assert sc.k1[0].stride == (2, 2) and sc.scconv.k4[0].stride == (2, 2)
    assert sc.scconv.k3[0].stride == (1, 1) and sc.conv1_a.stride == (1, 1)
    assert isinstance(sc.scconv.k2[0], nn.AvgPool2d) and sc.scconv.k2[0].kernel_size == 4


def test_danet_is_dilated_to_output_stride_8():
    model = attnviz.create_model("danet_resnet50")
    assert model.layer3[1].conv2.dilation == (2, 2) and model.layer4[1].conv2.dilation == (4, 4)
    assert model.layer4[0].conv2.dilation == (2, 2)  # first block keeps the previous dilation
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 64, 64))
    assert feats.shape == (1, 512, 8, 8)
    assert model.fc.in_features == 512


def test_attention_initialisation_and_biases():
    se = blocks.SEModule(256)
    assert se.fc1.bias is not None and se.fc2.bias is not None and se.fc1.out_channels == 16
    cbam = blocks.CBAM(256)
    assert cbam.SpatialGate.spatial.conv.bias is None
    assert cbam.SpatialGate.spatial.conv.padding == (3, 3)
    bn = cbam.SpatialGate.spatial.bn
    assert (bn.eps, bn.momentum) == (1e-5, 0.01)
    sk = blocks.SelectiveKernel(128, 128)
    assert sk.attn.fc_reduce.bias is None and sk.attn.fc_select.bias is None
    assert sk.attn.fc_reduce.out_channels == 32  # d = max(C/16, 32)
    assert blocks.SelectiveKernel(1024, 1024).attn.fc_reduce.out_channels == 64
    sge = blocks.SpatialGroupEnhance(256, 64)
    assert torch.equal(sge.weight, torch.zeros(1, 64, 1, 1))
    assert torch.equal(sge.bias, torch.ones(1, 64, 1, 1))
    nl = blocks.NonLocalBlock(64)
    assert all(c.bias is not None for c in (nl.theta, nl.phi, nl.g, nl.W[0]))
    assert nl.theta.out_channels == 32 and torch.equal(nl.W[1].weight, torch.zeros(64))
    for cls in (blocks.PositionAttention, blocks.SelfAttention):
        pam = cls(64)
        assert pam.query_conv.out_channels == 8 and pam.value_conv.out_channels == 64
        assert pam.query_conv.bias is not None and float(pam.gamma.detach()) == 0
    cam = blocks.ChannelAttention(64)
    assert float(cam.gamma.detach()) == 0 and n_params(cam) == 1


# -- what each block computes ------------------------------------------------------------------
def _randomise(module, seed=0):
    """Random parameters and BN statistics, eval mode: so zero-initialised gates do something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module.eval()


def _record(module, x):
    with torch.no_grad(), capture(module) as rec:
        out = module(x)
    return out, rec.maps


def test_se_matches_direct_computation():
    se = _randomise(blocks.SEModule(32, reduction=4))
    x = torch.randn(2, 32, 5, 6)
    out, (gate,) = _record(se, x)
    z = F.adaptive_avg_pool2d(x, 1)
    expect = torch.sigmoid(se.fc2(F.relu(se.fc1(z)))).flatten(1)
    torch.testing.assert_close(gate.tensor, expect)
    torch.testing.assert_close(out, x * expect[:, :, None, None])


def test_cbam_matches_direct_computation():
    cbam = _randomise(blocks.CBAM(32, reduction=4))
    x = torch.randn(2, 32, 6, 5)
    out, (channel, spatial) = _record(cbam, x)
    mlp = cbam.ChannelGate.mlp
    avg, mx = F.adaptive_avg_pool2d(x, 1).flatten(1), F.adaptive_max_pool2d(x, 1).flatten(1)
    cg = torch.sigmoid(mlp(avg) + mlp(mx))  # one shared MLP, outputs summed
    torch.testing.assert_close(channel.tensor, cg)
    y = x * cg[:, :, None, None]
    pooled = torch.cat([y.max(1, keepdim=True)[0], y.mean(1, keepdim=True)], 1)  # max first
    conv, bn = cbam.SpatialGate.spatial.conv, cbam.SpatialGate.spatial.bn
    sg = torch.sigmoid(bn(F.conv2d(pooled, conv.weight, padding=3)))[:, 0]
    torch.testing.assert_close(spatial.tensor, sg)
    torch.testing.assert_close(out, y * sg[:, None])


def test_sk_reads_select_output_as_branch_major():
    """fc_select's 2C outputs read as (M, C): the first C belong to branch 0."""
    sk = _randomise(blocks.SelectiveKernel(16, 16, groups=4, min_attn_channels=8))
    x = torch.randn(2, 16, 7, 7)
    out, (kern,) = _record(sk, x)
    paths = [p(x) for p in sk.paths]
    a = sk.attn
    z = sum(paths).mean((2, 3), keepdim=True)
    logits = a.fc_select(F.relu(a.bn(a.fc_reduce(z)))).flatten(1)  # (B, 2C)
    w = torch.softmax(torch.stack([logits[:, :16], logits[:, 16:]], 1), dim=1)
    torch.testing.assert_close(kern.tensor, w)
    torch.testing.assert_close(kern.tensor.sum(1), torch.ones(2, 16))
    expect = paths[0] * w[:, 0, :, None, None] + paths[1] * w[:, 1, :, None, None]
    torch.testing.assert_close(out, expect)


def test_multi_kernel_sk_1_3_5_7():
    sk = _randomise(blocks.MultiKernelSK(8, 16, kernels=(1, 3, 5, 7), min_attn_channels=8))
    assert [p.conv.kernel_size for p in sk.paths] == [(k, k) for k in (1, 3, 5, 7)]
    assert all(p.conv.dilation == (1, 1) for p in sk.paths)
    assert isinstance(sk.attn.fc_reduce, nn.Linear) and isinstance(sk.attn.fc_select, nn.Linear)
    x = torch.randn(2, 8, 9, 9)
    out, (kern,) = _record(sk, x)
    assert out.shape == (2, 16, 9, 9) and kern.shape == (2, 4, 16) and kern.kind == "kernel"
    paths = [p(x) for p in sk.paths]
    a = sk.attn
    logits = a.fc_select(F.relu(a.fc_reduce(sum(paths).mean((2, 3)))))
    w = torch.softmax(logits.reshape(2, 4, 16), dim=1)
    torch.testing.assert_close(kern.tensor, w)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 16))
    torch.testing.assert_close(out, sum(p * w[:, i, :, None, None] for i, p in enumerate(paths)))
    strided = blocks.MultiKernelSK(8, 16, stride=2, kernels=(1, 3, 5, 7)).eval()
    assert strided(torch.randn(1, 8, 9, 9)).shape == (1, 16, 5, 5)
    assert strided(torch.randn(1, 8, 10, 10)).shape == (1, 16, 5, 5)


def test_sge_matches_the_formula():
    sge = blocks.SpatialGroupEnhance(32, groups=4)
    with torch.no_grad():
        sge.weight.copy_(torch.randn(1, 4, 1, 1))
        sge.bias.copy_(torch.randn(1, 4, 1, 1))
    x = torch.randn(2, 32, 5, 7, dtype=torch.float64)
    sge.double()
    out, (group,) = _record(sge, x)
    expect_out = torch.empty_like(x)
    factors = torch.empty(2, 4, 5, 7, dtype=torch.float64)
    for b in range(2):
        for g in range(4):
            xg = x[b, g * 8:(g + 1) * 8]  # (8, H, W)
            sim = (xg * xg.mean((1, 2), keepdim=True)).sum(0).flatten()
            centred = sim - sim.mean()
            std = (centred.pow(2).sum() / (sim.numel() - 1)).sqrt()  # unbiased
            t = centred / (std + 1e-5) * sge.weight[0, g, 0, 0] + sge.bias[0, g, 0, 0]
            factors[b, g] = torch.sigmoid(t).reshape(5, 7)
            expect_out[b, g * 8:(g + 1) * 8] = xg * factors[b, g]
    torch.testing.assert_close(group.tensor, factors)
    torch.testing.assert_close(out, expect_out)


def test_nonlocal_pools_before_phi_and_g_and_scales():
    nl = _randomise(blocks.NonLocalBlock(16))
    x = torch.randn(2, 16, 6, 8)
    out, (aff,) = _record(nl, x)
    assert aff.shape == (2, 48, 12)
    assert aff.meta["query_hw"] == (6, 8) and aff.meta["key_hw"] == (3, 4)
    pooled = F.max_pool2d(x, 2)
    q = nl.theta(x).flatten(2)  # (B, 8, 48)
    k = nl.phi(pooled).flatten(2)  # convs after the pooling
    v = nl.g(pooled).flatten(2)
    attn = torch.softmax(q.transpose(1, 2) @ k / 8 ** 0.5, dim=-1)
    torch.testing.assert_close(aff.tensor, attn)
    y = (v @ attn.transpose(1, 2)).reshape(2, 8, 6, 8)
    torch.testing.assert_close(out, x + nl.W(y))
    fresh = blocks.NonLocalBlock(16).eval()
    torch.testing.assert_close(fresh(x), x)  # identity at initialisation


def test_position_attention_matches_direct_computation():
    for cls in (blocks.PositionAttention, blocks.SelfAttention):
        pam = _randomise(cls(16))
        x = torch.randn(2, 16, 4, 5)
        out, (aff,) = _record(pam, x)
        q, k = pam.query_conv(x).flatten(2), pam.key_conv(x).flatten(2)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # softmax over keys
        torch.testing.assert_close(aff.tensor, attn)
        assert aff.meta["query_hw"] == aff.meta["key_hw"] == (4, 5)
        o = (pam.value_conv(x).flatten(2) @ attn.transpose(1, 2)).reshape(x.shape)
        torch.testing.assert_close(out, pam.gamma * o + x)


def test_channel_attention_uses_max_minus_energy():
    cam = blocks.ChannelAttention(8)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(cam(x), x)  # gamma 0: identity
    with torch.no_grad():
        cam.gamma.fill_(0.7)
    out, (aff,) = _record(cam, x)
    flat = x.flatten(2)
    energy = flat @ flat.transpose(1, 2)
    attn = torch.softmax(energy.max(-1, keepdim=True)[0] - energy, dim=-1)
    torch.testing.assert_close(aff.tensor, attn)
    torch.testing.assert_close(out, 0.7 * (attn @ flat).reshape(x.shape) + x)


def test_scconv_upsamples_nearest():
    sc = _randomise(blocks.SCConv(8, stride=2))
    x = torch.randn(2, 8, 10, 10)  # 10 is not a multiple of 4: nearest and bilinear differ
    out, (cal,) = _record(sc, x)
    up = F.interpolate(sc.k2(x), size=(10, 10), mode="nearest")
    gate = torch.sigmoid(x + up)
    torch.testing.assert_close(cal.tensor, gate)
    bilinear = torch.sigmoid(x + F.interpolate(sc.k2(x), size=(10, 10), mode="bilinear"))
    assert not torch.allclose(cal.tensor, bilinear)
    torch.testing.assert_close(out, sc.k4(sc.k3(x) * gate))
    assert out.shape == (2, 8, 5, 5)


def test_scnet_bottleneck_wiring():
    block = _randomise(attnviz.create_model("scnet50").layer1[1])
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        a = F.relu(block.k1(F.relu(block.bn1_a(block.conv1_a(x)))))
        b = F.relu(block.scconv(F.relu(block.bn1_b(block.conv1_b(x)))))
        expect = F.relu(block.bn3(block.conv3(torch.cat([a, b], 1))) + x)
        torch.testing.assert_close(block(x), expect)


def test_get_attn():
    assert blocks.get_attn("cbam") is blocks.CBAM and blocks.get_attn(None) is None
    with pytest.raises(ValueError):
        blocks.get_attn("eca")
