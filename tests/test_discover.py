"""Discovery: attention in networks written as the papers' code and timm's layers write them
(tests/paper_nets.py, which does not import attnviz) is captured with no edit to the network."""
import re
import threading

import pytest
import torch
from torch import nn

import attnviz
import paper_nets as P
import zoo_vision_attn as Z
from attnviz.capture.recorder import hook_count
from attnviz.errors import CaptureError

BLOCKS = {"SELayer": "se", "SEModule": "se", "ChannelGate": "cbam", "SpatialGate": "cbam",
          "ChannelAttn": "cbam", "SpatialAttn": "cbam", "SKAttention": "sk",
          "SelectiveKernelAttn": "sk", "SpatialGroupEnhance": "sge", "SCConv": "scconv",
          "Self_Attn": "self_attn", "NONLocalBlock2D": "nonlocal", "PAM_Module": "danet_pam",
          "CAM_Module": "danet_cam", "eca_layer": "eca_layer", "EcaModule": "EcaModule",
          "GlobalContext": "GlobalContext"}


def _build(name, seed=0):
    torch.manual_seed(seed)
    model = P.NETWORKS[name]().eval()
    for m in model.modules():  # non-trivial BN statistics and gammas, so every map varies
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
        if hasattr(m, "gamma"):
            nn.init.constant_(m.gamma, 0.5)
    return model


def _inputs_of(model):
    """A pre-hook on every module that keeps what it received (the test's own record)."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if hasattr(type(m), "forward") and type(m).__name__ in BLOCKS:
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: seen.__setitem__(name, tuple(args[0].shape))))
    return seen, handles


def _expected_shape(kind, inp, raw):
    b, c, h, w = inp[0], inp[-3], inp[-2], inp[-1]
    if kind == "channel":
        return (b, c)
    if kind in ("spatial", "calibration"):
        return (b, h, w) if kind == "spatial" else (b, c, h, w)
    if kind == "group":
        return (b, raw.numel() // (b * h * w), h, w)
    if kind == "kernel":
        return (b, raw.shape[0] if raw.shape[1] == b else raw.shape[1], c)
    if kind == "channel_affinity":
        return (b, c, c)
    return (b, h * w, raw.shape[-1])


@pytest.mark.parametrize("name", list(P.NETWORKS))
def test_every_module_found_with_its_kind_path_and_exact_tensor(name):
    model = _build(name)
    found = attnviz.discover(model)
    x = torch.randn(4, 3, 96, 80, generator=torch.Generator().manual_seed(1))  # not the probe's
    inputs, handles = _inputs_of(model)
    try:
        with torch.no_grad(), attnviz.capture(model) as rec:
            model(x)
    finally:
        for h in handles:
            h.remove()
    expected = [(path, kind, t, m) for path, m in model.named_modules()
                if hasattr(m, "seen") for kind, t in m.seen.items()]
    assert len(expected) >= 4
    assert len(rec.maps) == len(expected) == len(found)
    for path, kind, raw, module in expected:
        hits = [r for r in rec.maps if r.layer == path and r.kind == kind]
        assert len(hits) == 1, (path, kind, [(r.layer, r.kind) for r in rec.maps])
        r = hits[0]
        assert r.block == BLOCKS[type(module).__name__]
        assert r.shape == _expected_shape(kind, inputs[path], raw)
        # read from the call: the same memory as the module's own tensor, bit for bit
        assert r.tensor.untyped_storage().data_ptr() == raw.untyped_storage().data_ptr()
        if kind == "kernel" and raw.shape[1] == 4:  # the seed form (M, B, C, 1, 1), dim=0
            ref = raw.flatten(2).permute(1, 0, 2)
        else:
            ref = raw.reshape(r.shape)
        assert torch.equal(r.tensor, ref)
        if kind == "affinity":
            qh, qw = r.meta["query_hw"]
            kh, kw = r.meta["key_hw"]
            assert (qh, qw) == tuple(inputs[path][-2:]) and qh * qw == r.shape[1]
            assert kh * kw == r.shape[2]
        assert r.meta["found_by"]
    assert hook_count(model) == 0


def test_a_changed_model_is_probed_again():
    model = _build("se_eca")
    first = attnviz.discover(model)
    assert attnviz.discover(model) is first  # cached while the model is unchanged
    model.layer4[0].se = P.SELayer(64)  # a new attention module after the probe
    model.layer4[0].attn_name = "se"
    with torch.no_grad(), attnviz.capture(model) as rec:
        model(torch.randn(2, 3, 64, 64))
    assert len(rec.maps) == len(first) + 1 and rec.maps[-1].layer == "layer4.0.se"


def test_listing_says_how_each_was_found():
    model = _build("timm")
    found = attnviz.discover(model)
    assert attnviz.discover(model) is found  # cached per model
    rows = {(s.layer, s.kind): s for s in found}
    assert rows[("layer1.0.se", "channel")].call == "Sigmoid"  # timm's Sigmoid module
    assert rows[("layer4.0.gc", "spatial")].call == "F.softmax(dim=-1)"
    assert rows[("layer4.0.gc", "spatial")].form == "call"
    assert "layer3.0.cbam.spatial" in repr(found) and "GlobalContext" in repr(found)
    sk = {s.layer: s for s in attnviz.discover(_build("sk"))}
    assert sk["layer2.0.conv2"].call == "nn.Softmax" and sk["layer2.0.conv2"].shape[0] == 3
    assert sk["layer3.0.conv2.attn"].call == "torch.softmax(dim=1)"


@pytest.mark.parametrize("module", [P, Z], ids=["paper_nets", "zoo_vision_attn"])
def test_every_timm_style_definition_is_pinned_to_a_timm_commit(module):
    """The test networks' docstring pins each definition written after timm to a timm file and
    a 40-hex commit; a definition whose docstring says ``timm.<layers|models>.<file>.<name>``
    must be pinned to that file."""
    pins = dict(re.findall(r"^ *- (\w+): (timm/(?:layers|models)/\w+\.py)@[0-9a-f]{40}$",
                           module.__doc__, re.M))
    assert len(pins) >= 10
    said = {}
    for name, obj in vars(module).items():
        if not callable(obj) or getattr(obj, "__module__", None) != module.__name__:
            continue
        m = re.match(r"timm\.(layers|models)\.(\w+)\.\w+", obj.__doc__ or "")
        if m:
            said[name] = f"timm/{m.group(1)}/{m.group(2)}.py"
    assert said == pins


@pytest.mark.parametrize("factory", [P.plain_resnet, P.SwishNet])
def test_no_attention_no_records(factory):
    torch.manual_seed(0)
    model = factory().eval()
    found = attnviz.discover(model)
    assert len(found) == 0
    with torch.no_grad(), attnviz.capture(model) as rec:
        model(torch.randn(2, 3, 64, 64))
    assert rec.maps == [] and hook_count(model) == 0
    if factory is P.SwishNet:  # every sigmoid seen and refused for its reason
        reasons = [s["reason"] for s in found.skipped]
        assert sum("activation" in r for r in reasons) == 4
        assert sum("final output" in r for r in reasons) == 1


def test_outputs_modes_and_statistics_untouched():
    model = _build("sge_sc")
    model.train()
    model.layer2.eval()  # a mixed state comes back as it was
    modes = {n: m.training for n, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    attnviz.discover(model, refresh=True)  # the probe runs in eval mode without grad
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())
    model.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        plain = model(x)
        with attnviz.capture(model) as rec:
            captured = model(x)
    assert torch.equal(plain, captured) and len(rec.maps) == 6


def test_hooks_and_modes_gone_after_an_exception():
    model = _build("sge_sc")
    attnviz.discover(model)
    boom = model.layer3[0].conv2.k3.register_forward_hook(  # raises inside SCConv's forward,
        lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))  # after its mode is pushed
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), attnviz.capture(model):
            model(torch.randn(2, 3, 64, 64))
    boom.remove()
    assert hook_count(model) == 0
    assert torch.overrides._get_current_function_mode_stack() == []
    with torch.no_grad(), attnviz.capture(model) as rec:
        model(torch.randn(2, 3, 64, 64))
    assert [r.kind for r in rec.maps].count("calibration") == 2


def test_threaded_captures_stay_apart():
    model = _build("affinity")
    attnviz.discover(model)
    xs = [torch.randn(1, 3, 64 + 16 * i, 64, generator=torch.Generator().manual_seed(i))
          for i in range(4)]
    refs = []
    for x in xs:
        with torch.no_grad(), attnviz.capture(model) as rec:
            model(x)
        refs.append(rec.maps)
    results, errors = [None] * len(xs), []

    def work(i):
        try:
            for _ in range(5):
                with torch.no_grad(), attnviz.capture(model) as rec:
                    model(xs[i])
                assert len(rec.maps) == len(refs[i])
                for a, b in zip(rec.maps, refs[i]):
                    assert a.layer == b.layer and torch.equal(a.tensor, b.tensor)
            results[i] = True
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(results)
    assert hook_count(model) == 0


def test_filters_budget_and_intervention():
    model = _build("affinity")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad(), attnviz.capture(model, kinds="affinity", budget_mb=0.001) as rec:
        model(x)
    assert [r.block for r in rec.maps] == ["nonlocal", "self_attn", "danet_pam"]
    assert rec.memory["affinity_capped"] >= 1
    assert all(r.tensor.nbytes <= 0.001 * 2**20 + r.shape[0] * r.shape[2] * 4 for r in rec.maps)
    with attnviz.capture(model, layers="after.after4.1") as rec:
        model(x)
    assert [r.kind for r in rec.maps] == ["channel_affinity"]
    with pytest.raises(CaptureError, match="matches no attention"):
        with attnviz.capture(model, layers="nowhere"):
            pass
    # replacing a discovered gate reaches the module: the seed-form SK weights, laid out back
    sk = _build("sk")
    name = next(s.name for s in attnviz.discover(sk) if s.layer == "layer2.0.conv2")
    with torch.no_grad(), attnviz.intervene(sk, {name: lambda t: torch.full_like(t, 1 / 3)}):
        sk(x)
    seen = sk.layer2[0].conv2.seen["kernel"]
    assert seen.shape == (3, 2, 32, 1, 1) and torch.all(seen == 1 / 3)
    assert hook_count(sk) == 0


def test_gate_ablation_covers_discovered_gates():
    model = _build("se_eca")
    rows = attnviz.metrics.gate_ablation(model, torch.randn(1, 3, 64, 64), batch_size=4)
    assert [r["layer"] for r in rows] == [s.layer for s in attnviz.discover(model)]
    assert all(r["kind"] == "channel" for r in rows)
    assert any(abs(r["delta_logit"]) > 0 for r in rows) and hook_count(model) == 0


class HardGate(nn.Module):  # relu6(x + 3) / 6: no sigmoid call, so discovery cannot see it
    def forward(self, x):
        return F_relu6(x + 3) / 6


def F_relu6(x):
    return torch.nn.functional.relu6(x)


class CustomSpatial(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)
        self.gate = HardGate()

    def forward(self, x):
        g = self.gate(self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        self.seen = g
        return x * g


def test_declared_and_adapted_modules():
    torch.manual_seed(0)
    model = P.Net({1: {"attn": lambda c: CustomSpatial(), "name": "attn"}}).eval()
    assert len(attnviz.discover(model)) == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), attnviz.capture(model, extra={"layer2.0.attn.gate": "spatial"}) as rec:
        model(x)
    assert [(r.layer, r.kind, r.shape) for r in rec.maps] == [
        ("layer2.0.attn.gate", "spatial", (2, 8, 8))]
    assert torch.equal(rec.maps[0].tensor, model.layer2[0].attn.seen[:, 0])
    attnviz.register_adapter(CustomSpatial, {"gate": "spatial"})
    try:
        with torch.no_grad(), attnviz.capture(model) as rec:
            model(x)
        assert [(r.layer, r.block) for r in rec.maps] == [("layer2.0.attn", "CustomSpatial"),
                                                        ("layer2.1.attn", "CustomSpatial")]
    finally:
        attnviz.unregister_adapter(CustomSpatial)
    with pytest.raises(CaptureError, match="no module 'layer9'"):
        with attnviz.capture(model, extra={"layer9": "spatial"}):
            pass
    with pytest.raises(CaptureError, match="unknown kind"):
        with attnviz.capture(model, extra={"layer2.0.attn.gate": "spotlight"}):
            pass
    with pytest.raises(CaptureError, match="not a channel map"):
        with torch.no_grad(), attnviz.capture(model, extra={"layer2.0.attn": "channel"}):
            model(x)
    assert hook_count(model) == 0


def test_attnviz_models_are_not_probed():
    model = attnviz.create_model("lite_cbam")
    with torch.no_grad(), attnviz.capture(model) as rec:
        model(torch.randn(1, 3, 64, 64))
    assert {r.tap for r in rec.maps} == {n for n, _, _ in attnviz.list_taps(model)}
    found = attnviz.discover(model)  # asked explicitly: taps already record every gate
    assert len(found) == 0
