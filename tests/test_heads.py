"""Multi-head attention as a kind: fused attention's weights computed from the call itself (the
module's output untouched), heads read from the spec (one head, the mean, rollout across
layers), interventions through SDPA, and directional gates."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnviz
import zoo_vision_attn as Z
from attnviz import kinds
from attnviz.capture import hook_count
from attnviz.capture.maps import affinity_row, rollout, rollout_chain
from attnviz.render import figures


class FusedBlock(nn.Module):
    """Global attention over a feature map with every SDPA option: a boolean mask, a causal
    flag, a given scale, grouped keys (enable_gqa)."""

    def __init__(self, dim=32, heads=4, kv_heads=2, causal=False, masked=False):
        super().__init__()
        self.heads, self.kv_heads, self.causal, self.masked = heads, kv_heads, causal, masked
        self.q = nn.Conv2d(dim, dim, 1)
        self.kv = nn.Conv2d(dim, 2 * dim // heads * kv_heads, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        d = C // self.heads
        q = self.q(x).reshape(B, self.heads, d, H * W).transpose(-1, -2)
        k, v = self.kv(x).reshape(B, 2 * self.kv_heads, d, H * W).transpose(-1, -2).chunk(2, 1)
        mask = None
        if self.masked:  # every query sees the keys of its own half of the image
            idx = torch.arange(H * W, device=x.device)
            mask = (idx[:, None] < H * W // 2) == (idx[None, :] < H * W // 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                             scale=0.3, enable_gqa=True)
        self.last = (q, k, v, mask, out)
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


def _net(**kw):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, 4, 1), FusedBlock(**kw), FusedBlock(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5)).eval()


@pytest.mark.parametrize("kw", [{}, {"causal": True}, {"masked": True}])
def test_fused_attention_weights_are_the_kernels_and_output_untouched(kw):
    model = _net(**kw)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        plain = model(x)
        with attnviz.capture(model) as rec:
            out = model(x)
    assert torch.equal(out, plain)
    assert [(r.layer, r.kind) for r in rec.maps] == [("1", "multihead"), ("2", "multihead")]
    r = rec.maps[0]
    q, k, v, mask, fused = model[1].last
    assert r.shape == (2, 4, 96, 96) and r.meta["heads"] == 4
    assert r.meta["query_hw"] == (8, 12) and r.meta["key_hw"] == (8, 12)
    # the recorded weights are a distribution per query, and they are what the kernel applied
    assert torch.allclose(r.tensor.sum(-1), torch.ones(2, 4, 96), atol=1e-5)
    kk = k.repeat_interleave(2, dim=1)
    vv = v.repeat_interleave(2, dim=1)
    assert torch.allclose(r.tensor @ vv, fused, atol=1e-5)
    if kw.get("causal"):
        assert torch.all(r.tensor.triu(1) == 0)
    if kw.get("masked"):
        assert torch.all(r.tensor[..., ~mask] == 0)
    logits = q @ kk.transpose(-2, -1) * 0.3  # the scale given to the call is the one used
    if not kw:
        assert torch.allclose(r.tensor, logits.softmax(-1), atol=1e-6)
    assert hook_count(model) == 0


def test_heads_from_the_spec_one_head_mean_and_figures():
    model = _net()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), attnviz.capture(model) as rec:
        model(x)
    r = rec.maps[0]
    spec = kinds.of(r)
    assert spec.axis("head") == 1 and spec.axis("query") == 2 and spec.labels["head"] == "head"
    assert spec.heads(r.meta, r.tensor) == 4
    mean_row, q = affinity_row(r, 0.5, 0.5)
    rows = [affinity_row(r, 0.5, 0.5, head=h)[0] for h in range(4)]
    assert torch.allclose(mean_row, torch.stack(rows).mean(0), atol=1e-6)
    assert torch.equal(rows[2][0].flatten(), r.tensor[0, 2, q])
    with pytest.raises(attnviz.errors.AttnvizError, match="head 7 does not exist"):
        affinity_row(r, 0.5, 0.5, head=7)
    fig = figures.figure_for(r, head=3, qx=10, qy=10, image_hw=(32, 32))
    assert "head 3 of 4" in fig.layout.title.text
    assert "mean of 4 heads" in figures.figure_for(r).layout.title.text
    m = kinds.to_spatial(r)
    assert m.shape == (1, 8, 8)


def test_rollout_across_layers():
    model = _net()
    with torch.no_grad(), attnviz.capture(model) as rec:
        model(torch.randn(2, 3, 32, 32))
    chain = rollout_chain(rec.maps)
    assert chain == rec.maps
    roll, grid = rollout(rec.maps)
    a1, a2 = (kinds.of(r).rows(r.tensor, r.meta).float() for r in chain)
    eye = torch.eye(64)
    m1 = 0.5 * eye + 0.5 * a1
    m2 = 0.5 * eye + 0.5 * a2
    assert grid == (8, 8) and torch.allclose(roll, m2 @ m1, atol=1e-6)
    assert torch.allclose(roll.sum(-1), torch.ones(2, 64), atol=1e-5)
    with pytest.raises(attnviz.errors.AttnvizError, match="no square attention"):
        rollout([])


def test_intervening_on_fused_and_written_out_attention():
    model = _net()
    x = torch.randn(1, 3, 32, 32)
    name = attnviz.discover(model, example=x)[0].name
    with torch.no_grad(), attnviz.intervene(model, {name: lambda t: torch.full_like(t, 1 / 64)}):
        model(x)
    q, k, v, mask, out = model[1].last
    assert torch.allclose(out, v.repeat_interleave(2, 1).mean(-2, keepdim=True).expand_as(out),
                          atol=1e-6)
    hybrid = Z.Host(after={1: Z.MobileVitBlock(64, 2, 2, fused_attn=False)}).eval()
    y = torch.randn(1, 3, 64, 64)
    site = attnviz.discover(hybrid, example=y)[0]
    with torch.no_grad(), attnviz.intervene(hybrid, {site.name: lambda t: t * 0}):
        hybrid(y)  # the replacement reaches the module, laid out as the module keeps it
    assert hook_count(hybrid) == 0


def test_directional_gates_reduce_to_rows_and_columns():
    torch.manual_seed(0)
    model = Z.Host({0: Z._g(lambda c: Z.CoordAtt(c, c))}).eval()
    with torch.no_grad(), attnviz.capture(model) as rec:
        model(torch.randn(1, 3, 64, 96))
    a_h, a_w = rec.maps
    assert a_h.shape == (1, 32, 16, 1) and a_w.shape == (1, 32, 1, 24)
    assert kinds.to_spatial(a_h).shape == (1, 16, 1) and kinds.to_spatial(a_w).shape == (1, 1, 24)
    assert torch.allclose(kinds.to_spatial(a_h)[0, :, 0], a_h.tensor[0, :, :, 0].mean(0))
    assert "along H (16)" in kinds.of(a_h).caption(a_h.shape, a_h.meta)
