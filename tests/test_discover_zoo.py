"""Discovery and capture against the attention forms of timm's self-attention CNNs and hybrids,
the External-Attention zoo, mmcv/mmdet and ultralytics (tests/zoo_vision_attn.py, which does
not import attnviz). Each module keeps its own true tensors; a capture opened with no
preparation (no ``discover`` call, no example: the probe must run at the size the model is
given) records each of them bit for bit, with the right kind and the attention module's path,
nothing else; forms with no kind are refused with their reason; plain networks give nothing."""
import pytest
import torch
from torch import nn

import attnviz
import zoo_vision_attn as Z
from attnviz.capture import hook_count


def _size(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def _build(factory, seed=0):
    torch.manual_seed(seed)
    model = factory().eval()
    for m in model.modules():  # non-trivial statistics and gammas, so every map varies
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
        if isinstance(getattr(m, "gamma", None), nn.Parameter):
            nn.init.constant_(m.gamma, 0.5)
    return model


def _truth(model):
    """[(layer, kind, tensor)] the modules computed, and {layer: reason word} they must be
    refused with; reset before each forward."""
    seen, refused = [], {}
    for path, m in model.named_modules():
        for kind, t in getattr(m, "seen", None) or []:
            seen.append((path, kind, t))
        if getattr(m, "refuse", None):
            refused[path] = m.refuse
    return seen, refused


def _reset(model):
    for m in model.modules():
        if isinstance(getattr(m, "seen", None), list):
            m.seen = []


def _forward(model, x, **kw):
    _reset(model)
    with torch.no_grad(), attnviz.capture(model, **kw) as rec:
        out = model(x)
    return out, rec


@pytest.mark.parametrize("name", list(Z.NETWORKS))
def test_every_attention_tensor_exact_and_no_misread(name):
    factory, size = Z.NETWORKS[name]
    model = _build(factory)
    h, w = _size(size)
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(x)
    first, rec0 = _forward(model, x)  # no discover(), no example: probed at this geometry
    out, rec = _forward(model, x)  # the discovery is cached: the modules' truth is this pass's
    assert torch.equal(first, plain) and torch.equal(out, plain)  # outputs untouched
    assert [(r.layer, r.kind) for r in rec0.maps] == [(r.layer, r.kind) for r in rec.maps]
    assert all(torch.equal(a.tensor, b.tensor) for a, b in zip(rec0.maps, rec.maps, strict=True))
    expected, refused = _truth(model)
    got = [(r.layer, r.kind) for r in rec.maps]
    assert sorted(got) == sorted((p, k) for p, k, _ in expected), (name, got)
    pool = list(rec.maps)
    for path, kind, t in expected:
        hit = next((r for r in pool if r.layer == path and r.kind == kind
                    and r.shape == tuple(t.shape) and torch.equal(r.tensor, t)), None)
        assert hit is not None, (name, path, kind, tuple(t.shape),
                                 [(r.layer, r.kind, r.shape) for r in pool])
        pool.remove(hit)
        attnviz.kinds.get(kind).validate(hit.tensor, hit.meta)
        if attnviz.kinds.get(kind).queried:
            qh, qw = hit.meta["query_hw"]
            kh, kw = hit.meta["key_hw"]
            assert hit.shape[-2] == qh * qw and hit.shape[-1] == kh * kw
        assert hit.meta["found_by"]
    found = attnviz.discover(model)  # the discovery the capture made, at this geometry
    assert found.error is None and len(found.sites) == len(expected)
    for path, word in refused.items():
        reasons = [s["reason"] for s in found.skipped if s["layer"] == path]
        assert any(word in r for r in reasons), (path, word, found.skipped)
    assert hook_count(model) == 0
    assert torch.overrides._get_current_function_mode_stack() == []


@pytest.mark.parametrize("name", list(Z.PLAIN))
def test_plain_networks_give_nothing(name):
    model = _build(Z.PLAIN[name])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    out, rec = _forward(model, x)
    assert rec.maps == [] and len(attnviz.discover(model)) == 0
    assert hook_count(model) == 0


def test_second_geometry_and_batch_one():
    """A new input size is probed at that size (cached per geometry); one image works too."""
    model = _build(Z.NETWORKS["halonet"][0])
    for hw in ((128, 128), (64, 128), (128, 128)):
        x = torch.randn(1, 3, *hw)
        _forward(model, x)  # a new geometry is probed inside this capture
        out, rec = _forward(model, x)
        expected, _ = _truth(model)
        assert len(rec.maps) == len(expected) == 2
        pairs = zip(rec.maps, expected, strict=True)
        assert all(torch.equal(r.tensor, t) for r, (_, _, t) in pairs)


def test_max_queries_drops_query_rows_not_heads():
    model = _build(Z.NETWORKS["mobilevit"][0])
    x = torch.randn(2, 3, 96, 96)
    _, full = _forward(model, x)
    _, capped = _forward(model, x, max_queries=5)
    for a, b in zip(full.maps, capped.maps, strict=True):
        spec = attnviz.kinds.get(a.kind)
        qa = spec.axes["query"]
        assert b.shape[qa] == 5 and b.shape[spec.axes["head"]] == a.shape[spec.axes["head"]]
        idx = b.meta["query_index"]
        assert torch.equal(b.tensor, a.tensor.index_select(qa, idx))


def test_torch_mha_weights_replaced_recompute_its_output():
    """An intervention on nn.MultiheadAttention's weights recomputes the module's output from
    them: the same weights give the plain output back; uniform weights give, at every position,
    out_proj(mean of the value projections), computed here by hand."""
    from attnviz.capture import intervene

    model = _build(Z.NETWORKS["torch_mha"][0])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = model(x)
    _, rec = _forward(model, x)
    taps = {r.layer: r.tap for r in rec.maps}
    assert set(taps) == {"after.1.mha", "after.2.mha"}
    with torch.no_grad(), intervene(model, {t: (lambda w: w) for t in taps.values()}):
        same = model(x)
    assert torch.allclose(same, plain, atol=1e-5)

    block, seen = model.after["1"], {}
    handle = block.register_forward_hook(lambda m, a, o: seen.update(x=a[0], y=o))
    try:
        with torch.no_grad(), intervene(model, {taps["after.1.mha"]:
                                                lambda w: torch.full_like(w, 1 / w.shape[-1])}):
            changed = model(x)
    finally:
        handle.remove()
    mha, x1 = block.mha, seen["x"]
    B, C, H, W = x1.shape
    t = block.norm(x1.flatten(2).transpose(1, 2))
    with torch.no_grad():
        v = torch.nn.functional.linear(t, mha.in_proj_weight[2 * C:], mha.in_proj_bias[2 * C:])
        o = mha.out_proj(v.mean(1, keepdim=True)).expand(B, H * W, C)
        want = x1 + o.transpose(1, 2).reshape(B, C, H, W)
    assert torch.allclose(seen["y"], want, atol=1e-5)
    assert not torch.allclose(changed, plain, atol=1e-4)  # the replacement reached the output
    assert hook_count(model) == 0
