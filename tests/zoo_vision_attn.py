"""Vision networks with the attention forms of timm's self-attention CNNs and hybrids, the
External-Attention zoo, mmcv/mmdet and ultralytics, written the way their code writes them.
Nothing here imports attnviz: these are the networks a user brings.

The one addition to the authors' code, for the tests' oracle: each attention module appends
what it computed to ``self.seen`` as ``(kind, tensor)`` in attnviz's canonical layout (a view of
the very tensor it computed; for ``F.scaled_dot_product_attention``, which never materialises
its weights, the weights recomputed from the call's own q, k, mask and scale as the fused
kernel defines them). A module whose tensor attnviz must refuse says why in ``self.refuse``
(words the skipped entry's reason must contain).

Paths: a gate's tensor belongs to the innermost module that receives the feature map (as for
CBAM's ChannelGate / SpatialGate); a softmax over keys to the module that computes it (timm's
``attn``, ultralytics' ``Attention``); a wrapper's activation (mmcv's ConvModule) to the
attention module around it.

Forms (sources read, every line written here):
- timm: BoTNet ((B*heads, HW, HW) softmax, rel-pos logits on a fixed feature size), HaloNet
  ((B*heads, blocks, bs^2, win^2)), lambda (key softmax over positions), ResNeSt (radix x
  cardinality softmax), BAT (sigmoid block matrices), MobileViT (unfold to (B*P, N, C), ViT
  attention, fused or not; MobileViTv2's separable attention), MaxViT (channels-last
  window/grid partitions, SDPA with a rel-pos bias mask). Each definition below was read and
  compared (submodule names, which module computes the weights, softmax dim, reshapes, the
  weights' shape) with the file named here, in huggingface/pytorch-image-models at the commit
  named here (MobileVitV2Block, TransformerBlock, RelPosBias and MaxxVitBlock are simplified
  hosts, not pinned):
  - rel_logits_1d: timm/layers/bottleneck_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - PosEmbedRel: timm/layers/bottleneck_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - BottleneckAttn: timm/layers/bottleneck_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - halo_rel_logits_1d: timm/layers/halo_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - HaloPosEmbedRel: timm/layers/halo_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - HaloAttn: timm/layers/halo_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - LambdaLayer: timm/layers/lambda_layer.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - RadixSoftmax: timm/layers/split_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - SplitAttn: timm/layers/split_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - BilinearAttnTransform: timm/layers/non_local_attn.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - Attention: timm/layers/attention.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - MobileVitBlock: timm/models/mobilevit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - LinearSelfAttention: timm/models/mobilevit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - window_partition: timm/models/maxxvit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - window_reverse: timm/models/maxxvit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - grid_partition: timm/models/maxxvit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - grid_reverse: timm/models/maxxvit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - AttentionCl: timm/models/maxxvit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
  - PartitionAttentionCl: timm/models/maxxvit.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- External-Attention ``CoordAttention`` (a_h (B,C,H,1), a_w (B,C,1,W)), ELA ((B,C,H) gates
  viewed to 4-D), ``S2Attention`` (channels-last split attention), ``TripletAttention``
  (gates on permuted inputs), ``PSA`` (EPSANet: softmax over an expanded (B,S,C/S,H,W)),
  ``A2Atttention``, ``CrissCrossAttention``, ``ExternalAttention``, ``MobileViTv2Attention``;
- mmcv ``HSigmoid`` (a clamp), ``ConvModule`` wrapping the activation (mmdet's SELayer),
  ``NonLocal2d`` (gaussian / embedded_gaussian / dot_product / concatenation),
  ``GeneralizedAttention`` (energy viewed (n, heads, hw, hw_kv));
- ultralytics ``Attention`` / ``PSABlock`` / ``C2PSA`` ((B, heads, N, N), heads = c // 64);
- torch ``nn.MultiheadAttention`` over a feature map's positions (batch-first on the fused fast
  path, and sequence-first with one head).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from paper_nets import ConvNormAct


def _see(module, kind, tensor):
    if not hasattr(module, "seen"):
        module.seen = []
    module.seen.append((kind, tensor))


def sdpa_weights(q, k, attn_mask=None, is_causal=False, scale=None):
    """The weights F.scaled_dot_product_attention applies (its documented definition),
    computed out of sight of any torch function mode (the oracle is not part of the model)."""
    with torch._C.DisableTorchFunction():
        return _sdpa_weights(q, k, attn_mask, is_causal, scale)


def _sdpa_weights(q, k, attn_mask, is_causal, scale):
    s = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    attn = q @ k.transpose(-2, -1) * s
    if is_causal:
        keep = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        attn = attn.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn = attn.masked_fill(~attn_mask, float("-inf"))
        else:
            attn = attn + attn_mask
    return attn.softmax(dim=-1)


def conv_bn(cin, cout, k=1, s=1, g=1, act=True):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True) if act else nn.Identity(),
    )


# ----------------------------------------------------------------------------- timm: BoTNet
def rel_logits_1d(q, rel_k, permute_mask):
    """timm.layers.bottleneck_attn.rel_logits_1d: rel_k (2 * W - 1, dim), logits W x W."""
    B, H, W, dim = q.shape
    x = q @ rel_k.transpose(-1, -2)
    x = x.reshape(-1, W, 2 * W - 1)
    x_pad = F.pad(x, [0, 1]).flatten(1)  # shift relative to absolute indices
    x_pad = F.pad(x_pad, [0, W - 1])
    x_pad = x_pad.reshape(-1, W + 1, 2 * W - 1)
    x = x_pad[:, :W, W - 1 :]
    x = x.reshape(B, H, 1, W, W).expand(-1, -1, H, -1, -1)
    return x.permute(permute_mask)


class PosEmbedRel(nn.Module):
    """timm.layers.bottleneck_attn.PosEmbedRel: (B*heads, HW, HW) logits on a fixed grid."""

    def __init__(self, feat_size, dim_head, scale):
        super().__init__()
        self.height, self.width = feat_size
        self.height_rel = nn.Parameter(torch.randn(self.height * 2 - 1, dim_head) * scale)
        self.width_rel = nn.Parameter(torch.randn(self.width * 2 - 1, dim_head) * scale)

    def forward(self, q):
        B, HW, _ = q.shape
        q = q.reshape(B, self.height, self.width, -1)
        rel_logits_w = rel_logits_1d(q, self.width_rel, permute_mask=(0, 1, 3, 2, 4))
        q = q.transpose(1, 2)
        rel_logits_h = rel_logits_1d(q, self.height_rel, permute_mask=(0, 3, 1, 4, 2))
        rel_logits = rel_logits_h + rel_logits_w
        return rel_logits.reshape(B, HW, HW)


class BottleneckAttn(nn.Module):
    """timm.layers.bottleneck_attn.BottleneckAttn: BoTNet's MHSA; the rel-pos embedding fixes
    the feature size (the model's input size)."""

    def __init__(self, dim, feat_size, num_heads=4, dim_head=8):
        super().__init__()
        self.num_heads = num_heads
        self.dim_head_qk = dim_head
        self.dim_head_v = dim // num_heads
        self.dim_out_qk = num_heads * dim_head
        self.dim_out_v = dim
        self.scale = dim_head**-0.5
        self.qkv = nn.Conv2d(dim, self.dim_out_qk * 2 + self.dim_out_v, 1, bias=False)
        self.pos_embed = PosEmbedRel(feat_size, dim_head, self.scale)
        self.pool = nn.Identity()

    def forward(self, x):
        B, C, H, W = x.shape
        assert H == self.pos_embed.height and W == self.pos_embed.width
        x = self.qkv(x)
        q, k, v = torch.split(x, [self.dim_out_qk, self.dim_out_qk, self.dim_out_v], dim=1)
        q = q.reshape(B * self.num_heads, self.dim_head_qk, -1).transpose(-1, -2)
        k = k.reshape(B * self.num_heads, self.dim_head_qk, -1)
        v = v.reshape(B * self.num_heads, self.dim_head_v, -1).transpose(-1, -2)
        attn = (q @ k) * self.scale + self.pos_embed(q)
        attn = attn.softmax(dim=-1)
        _see(self, "multihead", attn.view(B, self.num_heads, H * W, H * W))
        out = (attn @ v).transpose(-1, -2).reshape(B, self.dim_out_v, H, W)
        return self.pool(out)


# ----------------------------------------------------------------------------- timm: HaloNet
def halo_rel_logits_1d(q, rel_k, permute_mask):
    """timm.layers.halo_attn.rel_logits_1d: rel_k (2 * win - 1, dim) for W block queries."""
    B, H, W, dim = q.shape
    rel_size = rel_k.shape[0]
    win_size = (rel_size + 1) // 2
    x = q @ rel_k.transpose(-1, -2)
    x = x.reshape(-1, W, rel_size)
    x_pad = F.pad(x, [0, 1]).flatten(1)
    x_pad = F.pad(x_pad, [0, rel_size - W])
    x_pad = x_pad.reshape(-1, W + 1, rel_size)
    x = x_pad[:, :W, win_size - 1 :]
    x = x.reshape(B, H, 1, W, win_size).expand(-1, -1, win_size, -1, -1)
    return x.permute(permute_mask)


class HaloPosEmbedRel(nn.Module):
    """timm.layers.halo_attn.PosEmbedRel: logits (B*heads, blocks, block^2, win^2)."""

    def __init__(self, block_size, win_size, dim_head, scale):
        super().__init__()
        self.block_size = block_size
        self.dim_head = dim_head
        self.height_rel = nn.Parameter(torch.randn(win_size * 2 - 1, dim_head) * scale)
        self.width_rel = nn.Parameter(torch.randn(win_size * 2 - 1, dim_head) * scale)

    def forward(self, q):
        B, BB, HW, _ = q.shape
        q = q.reshape(-1, self.block_size, self.block_size, self.dim_head)
        rel_logits_w = halo_rel_logits_1d(q, self.width_rel, permute_mask=(0, 1, 3, 2, 4))
        q = q.transpose(1, 2)
        rel_logits_h = halo_rel_logits_1d(q, self.height_rel, permute_mask=(0, 3, 1, 4, 2))
        rel_logits = rel_logits_h + rel_logits_w
        return rel_logits.reshape(B, BB, HW, -1)


class HaloAttn(nn.Module):
    """timm.layers.halo_attn.HaloAttn: blocked local attention with a halo and rel-pos logits;
    H, W multiples of block_size (stride 1)."""

    def __init__(self, dim, num_heads=2, dim_head=8, block_size=4, halo_size=1):
        super().__init__()
        self.num_heads = num_heads
        self.dim_head_qk = dim_head
        self.dim_head_v = dim // num_heads
        self.dim_out_v = dim
        self.scale = dim_head**-0.5
        self.block_size = block_size
        self.halo_size = halo_size
        self.win_size = block_size + halo_size * 2
        self.q = nn.Conv2d(dim, num_heads * dim_head, 1, bias=False)
        self.kv = nn.Conv2d(dim, num_heads * dim_head + dim, 1, bias=False)
        self.pos_embed = HaloPosEmbedRel(block_size, self.win_size, dim_head, self.scale)
        self.pool = nn.Identity()

    def forward(self, x):
        B, C, H, W = x.shape
        assert H % self.block_size == 0 and W % self.block_size == 0
        nh, nw = H // self.block_size, W // self.block_size
        num_blocks = nh * nw
        bs = self.block_size
        q = self.q(x)
        q = q.reshape(-1, self.dim_head_qk, nh, bs, nw, bs).permute(0, 1, 3, 5, 2, 4)
        q = q.reshape(B * self.num_heads, self.dim_head_qk, -1, num_blocks).transpose(1, 3)
        kv = self.kv(x)
        kv = F.pad(kv, [self.halo_size] * 4)
        kv = (
            kv.unfold(2, self.win_size, bs)
            .unfold(3, self.win_size, bs)
            .reshape(B * self.num_heads, self.dim_head_qk + self.dim_head_v, num_blocks, -1)
            .permute(0, 2, 3, 1)
        )
        k, v = torch.split(kv, [self.dim_head_qk, self.dim_head_v], dim=-1)
        attn = (q @ k.transpose(-1, -2)) * self.scale + self.pos_embed(q)
        attn = attn.softmax(dim=-1)
        _see(self, "multihead", attn.view(B, self.num_heads * num_blocks, bs * bs, -1))
        out = (attn @ v).transpose(1, 3)
        out = out.reshape(-1, bs, bs, nh, nw)
        out = out.permute(0, 3, 1, 4, 2).contiguous().view(B, self.dim_out_v, H, W)
        return self.pool(out)


# ----------------------------------------------------------------------------- timm: lambda
class LambdaLayer(nn.Module):
    """timm.layers.lambda_layer.LambdaLayer with r set (conv_lambda position lambdas)."""

    def __init__(self, dim, dim_qk=8, num_heads=2, r=3):
        super().__init__()
        self.dim_qk = dim_qk
        self.num_heads = num_heads
        self.dim_v = dim // num_heads
        self.qkv = nn.Conv2d(dim, num_heads * dim_qk + dim_qk + self.dim_v, 1, bias=False)
        self.norm_q = nn.BatchNorm2d(num_heads * dim_qk)
        self.norm_v = nn.BatchNorm2d(self.dim_v)
        self.conv_lambda = nn.Conv3d(1, dim_qk, (r, r, 1), padding=(r // 2, r // 2, 0))
        self.pool = nn.Identity()
        self.refuse = "lambda"

    def forward(self, x):
        B, C, H, W = x.shape
        M = H * W
        qkv = self.qkv(x)
        q, k, v = torch.split(qkv, [self.num_heads * self.dim_qk, self.dim_qk, self.dim_v], dim=1)
        q = self.norm_q(q).reshape(B, self.num_heads, self.dim_qk, M).transpose(-1, -2)
        v = self.norm_v(v).reshape(B, self.dim_v, M).transpose(-1, -2)
        k = F.softmax(k.reshape(B, self.dim_qk, M), dim=-1)
        content_lam = k @ v
        content_out = q @ content_lam.unsqueeze(1)
        position_lam = self.conv_lambda(v.reshape(B, 1, H, W, self.dim_v))
        position_lam = position_lam.reshape(B, 1, self.dim_qk, H * W, self.dim_v).transpose(2, 3)
        position_out = (q.unsqueeze(-2) @ position_lam).squeeze(-2)
        out = (content_out + position_out).transpose(-1, -2).reshape(B, C, H, W)
        return self.pool(out)


# ----------------------------------------------------------------------------- timm: ResNeSt
class RadixSoftmax(nn.Module):
    """timm.layers.split_attn.RadixSoftmax (``owner_seen`` added for the oracle)."""

    def __init__(self, radix, cardinality):
        super().__init__()
        self.radix = radix
        self.cardinality = cardinality

    def forward(self, x):
        batch = x.size(0)
        if self.radix > 1:
            x = x.view(batch, self.cardinality, self.radix, -1).transpose(1, 2)
            x = F.softmax(x, dim=1)
            self.owner_seen = x
            x = x.reshape(batch, -1)
        else:
            x = torch.sigmoid(x)
        return x


class SplitAttn(nn.Module):
    """timm.layers.split_attn.SplitAttn with BatchNorm2d (as ResNeSt builds it); rd_channels
    here is fc1's width."""

    def __init__(self, in_channels, out_channels=None, radix=2, groups=2, rd_channels=16):
        super().__init__()
        out_channels = out_channels or in_channels
        self.radix = radix
        mid_chs = out_channels * radix
        self.conv = nn.Conv2d(in_channels, mid_chs, 3, 1, 1, groups=groups * radix, bias=False)
        self.bn0 = nn.BatchNorm2d(mid_chs)
        self.drop = nn.Identity()
        self.act0 = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(out_channels, rd_channels, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(rd_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, mid_chs, 1, groups=groups)
        self.rsoftmax = RadixSoftmax(radix, groups)

    def forward(self, x):
        x = self.act0(self.drop(self.bn0(self.conv(x))))
        B, RC, H, W = x.shape
        x = x.reshape((B, self.radix, RC // self.radix, H, W))
        x_gap = x.sum(dim=1)
        x_gap = x_gap.mean((2, 3), keepdim=True)
        x_gap = self.act1(self.bn1(self.fc1(x_gap)))
        x_attn = self.fc2(x_gap)
        x_attn = self.rsoftmax(x_attn).view(B, -1, 1, 1)
        w = self.rsoftmax.owner_seen
        _see(self, "kernel", w.reshape(B, self.radix, -1))
        out = (x * x_attn.reshape((B, self.radix, RC // self.radix, 1, 1))).sum(dim=1)
        return out.contiguous()


# ----------------------------------------------------------------------------- timm: BAT
class BilinearAttnTransform(nn.Module):
    """timm.layers.non_local_attn.BilinearAttnTransform (BAT's sigmoid block matrices);
    conv1 / conv2 are paper_nets' ConvNormAct (conv, then BatchNormAct2d as ``bn``)."""

    def __init__(self, in_channels, block_size=4, groups=2):
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, groups, 1)
        self.conv_p = nn.Conv2d(
            groups, block_size * block_size * groups, kernel_size=(block_size, 1)
        )
        self.conv_q = nn.Conv2d(
            groups, block_size * block_size * groups, kernel_size=(1, block_size)
        )
        self.conv2 = ConvNormAct(in_channels, in_channels, 1)
        self.block_size = block_size
        self.groups = groups
        self.refuse = "reshape"

    def resize_mat(self, x, t):
        B, C, block_size, _ = x.shape
        if t <= 1:
            return x
        x = x.view(B * C, -1, 1, 1)
        x = x * torch.eye(t, t, dtype=x.dtype, device=x.device)
        x = x.view(B * C, block_size, block_size, t, t)
        x = torch.cat(torch.split(x, 1, dim=1), dim=3)
        x = torch.cat(torch.split(x, 1, dim=2), dim=4)
        return x.view(B, C, block_size * t, block_size * t)

    def forward(self, x):
        B, C, H, W = x.shape
        bs, g = self.block_size, self.groups
        out = self.conv1(x)
        rp = F.adaptive_max_pool2d(out, (bs, 1))
        cp = F.adaptive_max_pool2d(out, (1, bs))
        p = self.conv_p(rp).view(B, g, bs, bs).sigmoid()
        q = self.conv_q(cp).view(B, g, bs, bs).sigmoid()
        p = p / p.sum(dim=3, keepdim=True)
        q = q / q.sum(dim=2, keepdim=True)
        p = p.view(B, g, 1, bs, bs).expand(B, g, C // g, bs, bs).contiguous().view(B, C, bs, bs)
        q = q.view(B, g, 1, bs, bs).expand(B, g, C // g, bs, bs).contiguous().view(B, C, bs, bs)
        p = self.resize_mat(p, H // bs)
        q = self.resize_mat(q, W // bs)
        y = p.matmul(x).matmul(q)
        return self.conv2(y)


# ----------------------------------------------------------------------------- timm: MobileViT
class Attention(nn.Module):
    """timm.layers.attention.Attention (timm's ViT Block, MobileViT's transformer): fused
    (F.scaled_dot_product_attention) or written out; ``lead`` added for the oracle's view."""

    def __init__(self, dim, num_heads=2, fused_attn=False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x, lead=1):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
            w = sdpa_weights(q, k)
            _see(self, "multihead", w.view(B // lead, lead * self.num_heads, N, N))
        else:
            q = q * self.scale
            attn = q @ k.transpose(-2, -1)
            attn = attn.softmax(dim=-1)
            _see(self, "multihead", attn.view(B // lead, lead * self.num_heads, N, N))
            attn = self.attn_drop(attn)
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.norm(x)
        x = self.proj(x)
        return self.proj_drop(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, fused_attn, lead):
        super().__init__()
        self.lead = lead
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, fused_attn)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x), self.lead)
        return x + self.mlp(self.norm2(x))


class MobileVitBlock(nn.Module):
    """timm.models.mobilevit.MobileVitBlock: unfold to (B*P, N, C) and back (sizes divisible by
    the patch, so no interpolation; conv_bn stands in for ConvNormAct)."""

    def __init__(self, dim, num_heads=2, patch_size=2, fused_attn=False, depth=1):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.patch_area = patch_size * patch_size
        self.conv_kxk = conv_bn(dim, dim, 3)
        self.conv_1x1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *[TransformerBlock(dim, num_heads, fused_attn, self.patch_area) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = conv_bn(dim, dim, 1)
        self.conv_fusion = conv_bn(dim * 2, dim, 3)

    def forward(self, x):
        shortcut = x
        x = self.conv_1x1(self.conv_kxk(x))
        patch_h, patch_w = self.patch_size
        B, C, H, W = x.shape
        num_patch_h, num_patch_w = H // patch_h, W // patch_w
        num_patches = num_patch_h * num_patch_w
        x = x.reshape(B * C * num_patch_h, patch_h, num_patch_w, patch_w).transpose(1, 2)
        x = (
            x.reshape(B, C, num_patches, self.patch_area)
            .transpose(1, 3)
            .reshape(B * self.patch_area, num_patches, -1)
        )
        x = self.norm(self.transformer(x))
        x = x.contiguous().view(B, self.patch_area, num_patches, -1)
        x = x.transpose(1, 3).reshape(B * C * num_patch_h, num_patch_w, patch_h, patch_w)
        x = x.transpose(1, 2).reshape(B, C, num_patch_h * patch_h, num_patch_w * patch_w)
        x = self.conv_proj(x)
        return self.conv_fusion(torch.cat((shortcut, x), dim=1))


class LinearSelfAttention(nn.Module):
    """timm.models.mobilevit.LinearSelfAttention: MobileViTv2's separable self-attention,
    context scores softmax over the N patches."""

    def __init__(self, embed_dim):
        super().__init__()
        self.embed_dim = embed_dim
        self.qkv_proj = nn.Conv2d(embed_dim, 1 + 2 * embed_dim, 1)
        self.attn_drop = nn.Dropout(0.0)
        self.out_proj = nn.Conv2d(embed_dim, embed_dim, 1)
        self.out_drop = nn.Dropout(0.0)
        self.refuse = "separable"

    def forward(self, x):
        qkv = self.qkv_proj(x)
        query, key, value = qkv.split([1, self.embed_dim, self.embed_dim], dim=1)
        context_scores = F.softmax(query, dim=-1)
        context_scores = self.attn_drop(context_scores)
        context_vector = (key * context_scores).sum(dim=-1, keepdim=True)
        out = F.relu(value) * context_vector.expand_as(value)
        out = self.out_proj(out)
        return self.out_drop(out)


class MobileVitV2Block(nn.Module):
    def __init__(self, dim, patch_size=2):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.conv_kxk = conv_bn(dim, dim, 3)
        self.conv_1x1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.transformer = nn.Sequential(nn.GroupNorm(1, dim), LinearSelfAttention(dim))
        self.conv_proj = conv_bn(dim, dim, 1, act=False)

    def forward(self, x):
        B, C, H, W = x.shape
        ph, pw = self.patch_size
        nh, nw = H // ph, W // pw
        x = self.conv_1x1(self.conv_kxk(x))
        x = (
            x.reshape(B, C, nh, ph, nw, pw)
            .permute(0, 1, 3, 5, 2, 4)
            .reshape(B, C, ph * pw, nh * nw)
        )
        x = self.transformer(x)
        x = x.reshape(B, C, ph, pw, nh, nw).permute(0, 1, 4, 2, 5, 3).reshape(B, C, H, W)
        return self.conv_proj(x)


# ----------------------------------------------------------------------------- timm: MaxViT
def window_partition(x, window_size):
    """timm.models.maxxvit.window_partition"""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size[0], window_size[0], W // window_size[1], window_size[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size[0], window_size[1], C)


def window_reverse(windows, window_size, img_size):
    """timm.models.maxxvit.window_reverse"""
    H, W = img_size
    C = windows.shape[-1]
    x = windows.view(
        -1, H // window_size[0], W // window_size[1], window_size[0], window_size[1], C
    )
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, C)


def grid_partition(x, grid_size):
    """timm.models.maxxvit.grid_partition"""
    B, H, W, C = x.shape
    x = x.view(B, grid_size[0], H // grid_size[0], grid_size[1], W // grid_size[1], C)
    return x.permute(0, 2, 4, 1, 3, 5).contiguous().view(-1, grid_size[0], grid_size[1], C)


def grid_reverse(windows, grid_size, img_size):
    """timm.models.maxxvit.grid_reverse"""
    H, W = img_size
    C = windows.shape[-1]
    x = windows.view(-1, H // grid_size[0], W // grid_size[1], grid_size[0], grid_size[1], C)
    return x.permute(0, 3, 1, 4, 2, 5).contiguous().view(-1, H, W, C)


class RelPosBias(nn.Module):
    def __init__(self, window_size, num_heads):
        super().__init__()
        wh, ww = window_size
        self.table = nn.Parameter(torch.randn(num_heads, (2 * wh - 1) * (2 * ww - 1)) * 0.2)
        coords = torch.stack(
            torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
        ).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        index = (rel[..., 0] + wh - 1) * (2 * ww - 1) + rel[..., 1] + ww - 1
        self.register_buffer("index", index, persistent=False)

    def get_bias(self):
        return self.table[:, self.index].unsqueeze(0)


class AttentionCl(nn.Module):
    """timm.models.maxxvit.AttentionCl (head_first, fused): channels-last attention with a
    rel-pos bias passed to SDPA as a float mask; ``lead`` added for the oracle's view."""

    def __init__(self, dim, window_size, dim_head=8):
        super().__init__()
        self.num_heads = dim // dim_head
        self.dim_head = dim_head
        self.qkv = nn.Linear(dim, dim * 3)
        self.rel_pos = RelPosBias(window_size, self.num_heads)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x, lead):
        B = x.shape[0]
        restore_shape = x.shape[:-1]
        q, k, v = (
            self.qkv(x)
            .view(B, -1, self.num_heads, self.dim_head * 3)
            .transpose(1, 2)
            .chunk(3, dim=3)
        )
        bias = self.rel_pos.get_bias()
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        w = sdpa_weights(q, k, attn_mask=bias)
        _see(self, "multihead", w.view(B // lead, lead * self.num_heads, w.shape[-2], w.shape[-1]))
        x = x.transpose(1, 2).reshape(restore_shape + (-1,))
        x = self.proj(x)
        return self.proj_drop(x)


class PartitionAttentionCl(nn.Module):
    """timm.models.maxxvit.PartitionAttentionCl: window ("block") or grid partitions."""

    def __init__(self, dim, partition_type="block", partition_size=(4, 4)):
        super().__init__()
        self.partition_block = partition_type == "block"
        self.partition_size = partition_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = AttentionCl(dim, partition_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def _partition_attn(self, x):
        img_size = x.shape[1:3]
        ps = self.partition_size
        lead = (img_size[0] // ps[0]) * (img_size[1] // ps[1])
        if self.partition_block:
            partitioned = window_partition(x, ps)
        else:
            partitioned = grid_partition(x, ps)
        partitioned = self.attn(partitioned, lead)
        if self.partition_block:
            return window_reverse(partitioned, ps, img_size)
        return grid_reverse(partitioned, ps, img_size)

    def forward(self, x):
        x = x + self._partition_attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MaxxVitBlock(nn.Module):
    def __init__(self, dim, partition_size=(4, 4)):
        super().__init__()
        self.conv = conv_bn(dim, dim, 3, g=dim)
        self.attn_block = PartitionAttentionCl(dim, "block", partition_size)
        self.attn_grid = PartitionAttentionCl(dim, "grid", partition_size)

    def forward(self, x):
        x = self.conv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.attn_grid(self.attn_block(x))
        return x.permute(0, 3, 1, 2)


class CoAtTransformerBlock(nn.Module):
    """CoAtNet / MaxViT's 2-D transformer stage: global attention (B, heads, HW, HW), SDPA."""

    def __init__(self, dim, feat_size, dim_head=8):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.attn = AttentionCl(dim, feat_size, dim_head)

    def forward(self, x):
        B, C, H, W = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(B, H * W, C)
        y = self.attn(y, 1).reshape(B, H, W, C).permute(0, 3, 1, 2)
        return x + y


# ----------------------------------------------------------------------------- ultralytics
class Conv(nn.Module):
    default_act = nn.SiLU()

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = (
            self.default_act
            if act is True
            else act
            if isinstance(act, nn.Module)
            else nn.Identity()
        )

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class YoloAttention(nn.Module):
    def __init__(self, dim, num_heads=8, attn_ratio=0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        nh_kd = self.key_dim * num_heads
        h = dim + nh_kd * 2
        self.qkv = Conv(dim, h, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x):
        B, C, H, W = x.shape
        N = H * W
        qkv = self.qkv(x)
        q, k, v = qkv.view(B, self.num_heads, self.key_dim * 2 + self.head_dim, N).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2
        )
        attn = (q.transpose(-2, -1) @ k) * self.scale
        attn = attn.softmax(dim=-1)
        if self.num_heads == 1:
            _see(self, "affinity", attn.view(B, N, N))
        else:
            _see(self, "multihead", attn)
        x = (v @ attn.transpose(-2, -1)).view(B, C, H, W) + self.pe(v.reshape(B, C, H, W))
        return self.proj(x)


class PSABlock(nn.Module):
    def __init__(self, c, attn_ratio=0.5, num_heads=4, shortcut=True):
        super().__init__()
        self.attn = YoloAttention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x):
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2PSA(nn.Module):
    def __init__(self, c1, c2, n=1, e=0.5):
        super().__init__()
        assert c1 == c2
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(
            *(PSABlock(self.c, attn_ratio=0.5, num_heads=max(1, self.c // 64)) for _ in range(n))
        )

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = self.m(b)
        return self.cv2(torch.cat((a, b), 1))


class PSA(nn.Module):
    """ultralytics' PSA (YOLOv10): attention on half the channels, heads = c // 64."""

    def __init__(self, c1, c2, e=0.5):
        super().__init__()
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.attn = YoloAttention(self.c, attn_ratio=0.5, num_heads=self.c // 64)
        self.ffn = nn.Sequential(
            Conv(self.c, self.c * 2, 1), Conv(self.c * 2, self.c, 1, act=False)
        )

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        return self.cv2(torch.cat((a, b), 1))


# ----------------------------------------------------------------------------- directional
class h_sigmoid(nn.Module):
    def __init__(self, inplace=True):
        super(h_sigmoid, self).__init__()
        self.relu = nn.ReLU6(inplace=inplace)

    def forward(self, x):
        return self.relu(x + 3) / 6


class h_swish(nn.Module):
    def __init__(self, inplace=True):
        super(h_swish, self).__init__()
        self.sigmoid = h_sigmoid(inplace=inplace)

    def forward(self, x):
        return x * self.sigmoid(x)


class CoordAtt(nn.Module):
    def __init__(self, inp, oup, reduction=32):
        super(CoordAtt, self).__init__()
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        mip = max(8, inp // reduction)
        self.conv1 = nn.Conv2d(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = h_swish()
        self.conv_h = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        identity = x
        n, c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = torch.cat([x_h, x_w], dim=2)
        y = self.act(self.bn1(self.conv1(y)))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w).sigmoid()
        _see(self, "directional", a_h)
        _see(self, "directional", a_w)
        return identity * a_w * a_h


class ELA(nn.Module):
    """Efficient Localization Attention: 1-D convs along H and W, GroupNorm, sigmoid."""

    def __init__(self, channel, kernel_size=7):
        super().__init__()
        self.conv = nn.Conv1d(
            channel, channel, kernel_size, padding=kernel_size // 2, groups=channel, bias=False
        )
        self.gn = nn.GroupNorm(16, channel)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.size()
        x_h = torch.mean(x, dim=3, keepdim=True).view(b, c, h)
        x_w = torch.mean(x, dim=2, keepdim=True).view(b, c, w)
        x_h = self.sigmoid(self.gn(self.conv(x_h)))
        _see(self, "directional", x_h.view(b, c, h, 1))
        x_h = x_h.view(b, c, h, 1)
        x_w = self.sigmoid(self.gn(self.conv(x_w)))
        _see(self, "directional", x_w.view(b, c, 1, w))
        x_w = x_w.view(b, c, 1, w)
        return x * x_h * x_w


class ZPool(nn.Module):
    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class AttentionGate(nn.Module):
    def __init__(self, kind, view):
        super(AttentionGate, self).__init__()
        kernel_size = 7
        self.compress = ZPool()
        self.conv = nn.Sequential(
            nn.Conv2d(2, 1, kernel_size, padding=3, bias=False), nn.BatchNorm2d(1)
        )
        self.kind, self.view = kind, view

    def forward(self, x):
        x_compress = self.compress(x)
        x_out = self.conv(x_compress)
        scale = torch.sigmoid_(x_out)
        _see(self, self.kind, self.view(scale))
        return x * scale


class TripletAttention(nn.Module):
    def __init__(self, no_spatial=False):
        super(TripletAttention, self).__init__()
        # the (C, W) gate seen from the input: one W-direction gate per channel, and so on
        self.cw = AttentionGate("directional", lambda s: s.permute(0, 2, 1, 3))
        self.hc = AttentionGate("directional", lambda s: s.permute(0, 3, 2, 1))
        self.no_spatial = no_spatial
        if not no_spatial:
            self.hw = AttentionGate("spatial", lambda s: s[:, 0])

    def forward(self, x):
        x_perm1 = x.permute(0, 2, 1, 3).contiguous()
        x_out1 = self.cw(x_perm1)
        x_out11 = x_out1.permute(0, 2, 1, 3).contiguous()
        x_perm2 = x.permute(0, 3, 2, 1).contiguous()
        x_out2 = self.hc(x_perm2)
        x_out21 = x_out2.permute(0, 3, 2, 1).contiguous()
        if not self.no_spatial:
            x_out = self.hw(x)
            return 1 / 3 * (x_out + x_out11 + x_out21)
        return 1 / 2 * (x_out11 + x_out21)


# ----------------------------------------------------------------------------- EA zoo
class SplitAttention(nn.Module):
    def __init__(self, channel=32, k=3):
        super().__init__()
        self.channel = channel
        self.k = k
        self.mlp1 = nn.Linear(channel, channel, bias=False)
        self.gelu = nn.GELU()
        self.mlp2 = nn.Linear(channel, channel * k, bias=False)
        self.softmax = nn.Softmax(1)

    def forward(self, x_all):
        b, k, h, w, c = x_all.shape
        x_all = x_all.reshape(b, k, -1, c)
        a = torch.sum(torch.sum(x_all, 1), 1)
        hat_a = self.mlp2(self.gelu(self.mlp1(a)))
        hat_a = hat_a.reshape(b, self.k, c)
        bar_a = self.softmax(hat_a)
        _see(self, "kernel", bar_a)
        attention = bar_a.unsqueeze(-2)
        out = attention * x_all
        return torch.sum(out, 1).reshape(b, h, w, c)


def spatial_shift1(x):
    b, w, h, c = x.size()
    x[:, 1:, :, : c // 4] = x[:, : w - 1, :, : c // 4]
    x[:, : w - 1, :, c // 4 : c // 2] = x[:, 1:, :, c // 4 : c // 2]
    x[:, :, 1:, c // 2 : c * 3 // 4] = x[:, :, : h - 1, c // 2 : c * 3 // 4]
    x[:, :, : h - 1, 3 * c // 4 :] = x[:, :, 1:, 3 * c // 4 :]
    return x


def spatial_shift2(x):
    b, w, h, c = x.size()
    x[:, :, 1:, : c // 4] = x[:, :, : h - 1, : c // 4]
    x[:, :, : h - 1, c // 4 : c // 2] = x[:, :, 1:, c // 4 : c // 2]
    x[:, 1:, :, c // 2 : c * 3 // 4] = x[:, : w - 1, :, c // 2 : c * 3 // 4]
    x[:, : w - 1, :, 3 * c // 4 :] = x[:, 1:, :, 3 * c // 4 :]
    return x


class S2Attention(nn.Module):
    def __init__(self, channels=32):
        super().__init__()
        self.mlp1 = nn.Linear(channels, channels * 3)
        self.mlp2 = nn.Linear(channels, channels)
        self.split_attention = SplitAttention(channels)

    def forward(self, x):
        b, c, w, h = x.size()
        x = x.permute(0, 2, 3, 1)
        x = self.mlp1(x)
        x1 = spatial_shift1(x[:, :, :, :c])
        x2 = spatial_shift2(x[:, :, :, c : c * 2])
        x3 = x[:, :, :, c * 2 :]
        x_all = torch.stack([x1, x2, x3], 1)
        a = self.split_attention(x_all)
        x = self.mlp2(a)
        return x.permute(0, 3, 1, 2)


class EPSA(nn.Module):
    """EPSANet's PSA module: S pyramid splits, an SE per split, softmax over the splits."""

    def __init__(self, channel=32, reduction=4, S=4):
        super().__init__()
        self.S = S
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(channel // S, channel // S, kernel_size=2 * (i + 1) + 1, padding=i + 1)
                for i in range(S)
            ]
        )
        self.se_blocks = nn.ModuleList(
            [
                nn.Sequential(
                    nn.AdaptiveAvgPool2d(1),
                    nn.Conv2d(channel // S, channel // (S * reduction), kernel_size=1, bias=False),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channel // (S * reduction), channel // S, kernel_size=1, bias=False),
                    nn.Sigmoid(),
                )
                for i in range(S)
            ]
        )
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        b, c, h, w = x.size()
        SPC_out = x.view(b, self.S, c // self.S, h, w).clone()
        for idx, conv in enumerate(self.convs):
            SPC_out[:, idx, :, :, :] = conv(SPC_out[:, idx, :, :, :])
        se_out = []
        for idx, se in enumerate(self.se_blocks):
            se_out.append(se(SPC_out[:, idx, :, :, :]))
            _see(self, "channel", se_out[-1].view(b, -1))
        SE_out = torch.stack(se_out, dim=1)
        SE_out = SE_out.expand_as(SPC_out)
        softmax_out = self.softmax(SE_out)
        _see(self, "kernel", softmax_out[..., 0, 0])
        PSA_out = SPC_out * softmax_out
        return PSA_out.view(b, -1, h, w)


class DoubleAttention(nn.Module):
    """A2-Nets as the zoo writes it: F.softmax with no dim on 3-D tensors (over the batch)."""

    def __init__(self, in_channels, c_m=16, c_n=8):
        super().__init__()
        self.c_m, self.c_n = c_m, c_n
        self.convA = nn.Conv2d(in_channels, c_m, 1)
        self.convB = nn.Conv2d(in_channels, c_n, 1)
        self.convV = nn.Conv2d(in_channels, c_n, 1)
        self.conv_reconstruct = nn.Conv2d(c_m, in_channels, kernel_size=1)
        self.refuse = "batch"

    def forward(self, x):
        b, c, h, w = x.shape
        A, B, V = self.convA(x), self.convB(x), self.convV(x)
        tmpA = A.view(b, self.c_m, -1)
        attention_maps = F.softmax(B.view(b, self.c_n, -1), dim=0)
        attention_vectors = F.softmax(V.view(b, self.c_n, -1), dim=0)
        global_descriptors = torch.bmm(tmpA, attention_maps.permute(0, 2, 1))
        tmpZ = global_descriptors.matmul(attention_vectors)
        return self.conv_reconstruct(tmpZ.view(b, self.c_m, h, w))


class CrissCrossAttention(nn.Module):
    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, 1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, 1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, 1)
        self.softmax = nn.Softmax(dim=3)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.refuse = "criss-cross"

    def INF(self, B, H, W, device):
        return (
            -torch.diag(torch.tensor(float("inf"), device=device).repeat(H), 0)
            .unsqueeze(0)
            .repeat(B * W, 1, 1)
        )

    def forward(self, x):
        m_batchsize, _, height, width = x.size()
        proj_query = self.query_conv(x)
        proj_query_H = (
            proj_query.permute(0, 3, 1, 2)
            .contiguous()
            .view(m_batchsize * width, -1, height)
            .permute(0, 2, 1)
        )
        proj_query_W = (
            proj_query.permute(0, 2, 1, 3)
            .contiguous()
            .view(m_batchsize * height, -1, width)
            .permute(0, 2, 1)
        )
        proj_key = self.key_conv(x)
        proj_key_H = proj_key.permute(0, 3, 1, 2).contiguous().view(m_batchsize * width, -1, height)
        proj_key_W = proj_key.permute(0, 2, 1, 3).contiguous().view(m_batchsize * height, -1, width)
        proj_value = self.value_conv(x)
        proj_value_H = (
            proj_value.permute(0, 3, 1, 2).contiguous().view(m_batchsize * width, -1, height)
        )
        proj_value_W = (
            proj_value.permute(0, 2, 1, 3).contiguous().view(m_batchsize * height, -1, width)
        )
        energy_H = (
            (torch.bmm(proj_query_H, proj_key_H) + self.INF(m_batchsize, height, width, x.device))
            .view(m_batchsize, width, height, height)
            .permute(0, 2, 1, 3)
        )
        energy_W = torch.bmm(proj_query_W, proj_key_W).view(m_batchsize, height, width, width)
        concate = self.softmax(torch.cat([energy_H, energy_W], 3))
        att_H = (
            concate[:, :, :, 0:height]
            .permute(0, 2, 1, 3)
            .contiguous()
            .view(m_batchsize * width, height, height)
        )
        att_W = (
            concate[:, :, :, height : height + width]
            .contiguous()
            .view(m_batchsize * height, width, width)
        )
        out_H = (
            torch.bmm(proj_value_H, att_H.permute(0, 2, 1))
            .view(m_batchsize, width, -1, height)
            .permute(0, 2, 3, 1)
        )
        out_W = (
            torch.bmm(proj_value_W, att_W.permute(0, 2, 1))
            .view(m_batchsize, height, -1, width)
            .permute(0, 2, 1, 3)
        )
        return self.gamma * (out_H + out_W) + x


class ExternalAttention(nn.Module):
    """External attention over flattened positions (B, N, S), double-normalised."""

    def __init__(self, d_model, S=16):
        super().__init__()
        self.mk = nn.Linear(d_model, S, bias=False)
        self.mv = nn.Linear(S, d_model, bias=False)
        self.softmax = nn.Softmax(dim=1)
        self.refuse = "memory"

    def forward(self, x):
        b, c, h, w = x.shape
        queries = x.flatten(2).transpose(1, 2)
        attn = self.mk(queries)
        attn = self.softmax(attn)
        attn = attn / torch.sum(attn, dim=2, keepdim=True)
        out = self.mv(attn)
        return out.transpose(1, 2).reshape(b, c, h, w)


class ParallelPolarizedSelfAttention(nn.Module):
    """Polarized self-attention, parallel form: its gates are found; the spatial branch's
    softmax over C/2 reduced channels (B, 1, C/2) fits no kind."""

    def __init__(self, channel=64):
        super().__init__()
        self.ch_wv = nn.Conv2d(channel, channel // 2, kernel_size=(1, 1))
        self.ch_wq = nn.Conv2d(channel, 1, kernel_size=(1, 1))
        self.softmax_channel = nn.Softmax(1)
        self.softmax_spatial = nn.Softmax(-1)
        self.ch_wz = nn.Conv2d(channel // 2, channel, kernel_size=(1, 1))
        self.ln = nn.LayerNorm(channel)
        self.sigmoid = nn.Sigmoid()
        self.sp_wv = nn.Conv2d(channel, channel // 2, kernel_size=(1, 1))
        self.sp_wq = nn.Conv2d(channel, channel // 2, kernel_size=(1, 1))
        self.agp = nn.AdaptiveAvgPool2d((1, 1))
        self.refuse = "fits no kind"

    def forward(self, x):
        b, c, h, w = x.size()
        channel_wv = self.ch_wv(x).reshape(b, c // 2, -1)
        channel_wq = self.ch_wq(x).reshape(b, -1, 1)
        channel_wq = self.softmax_channel(channel_wq)
        _see(self, "spatial", channel_wq.view(b, h, w))
        channel_wz = torch.matmul(channel_wv, channel_wq).unsqueeze(-1)
        channel_weight = self.sigmoid(
            self.ln(self.ch_wz(channel_wz).reshape(b, c, 1).permute(0, 2, 1))
        )
        _see(self, "channel", channel_weight.view(b, c))
        channel_out = channel_weight.permute(0, 2, 1).reshape(b, c, 1, 1) * x
        spatial_wv = self.sp_wv(x).reshape(b, c // 2, -1)
        spatial_wq = self.agp(self.sp_wq(x)).permute(0, 2, 3, 1).reshape(b, 1, c // 2)
        spatial_wq = self.softmax_spatial(spatial_wq)
        spatial_wz = torch.matmul(spatial_wq, spatial_wv)
        spatial_weight = self.sigmoid(spatial_wz.reshape(b, 1, h, w))
        _see(self, "spatial", spatial_weight.view(b, h, w))
        return spatial_weight * x + channel_out


class DANetPAM4d(nn.Module):
    """DANet's position attention kept as (B, 1, N, N)."""

    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, 1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, 1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        B, C, H, W = x.size()
        q = self.query_conv(x).view(B, 1, -1, H * W).permute(0, 1, 3, 2)
        k = self.key_conv(x).view(B, 1, -1, H * W)
        attention = self.softmax(torch.matmul(q, k))
        _see(self, "affinity", attention.view(B, H * W, H * W))
        v = self.value_conv(x).view(B, 1, C, H * W)
        out = torch.matmul(v, attention.transpose(-1, -2)).view(B, C, H, W)
        return self.gamma * out + x


# ----------------------------------------------------------------------------- mmcv / mmdet
class HSigmoid(nn.Module):
    def __init__(self, bias=3.0, divisor=6.0, min_value=0.0, max_value=1.0):
        super().__init__()
        self.bias, self.divisor = bias, divisor
        self.min_value, self.max_value = min_value, max_value

    def forward(self, x):
        x = (x + self.bias) / self.divisor
        return x.clamp_(self.min_value, self.max_value)


class ConvModule(nn.Module):
    """mmcv's conv / norm / activation bundle."""

    def __init__(self, in_channels, out_channels, kernel_size, act=None, norm=False):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activate = act if act is not None else nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activate(x)


class MMSELayer(nn.Module):
    """mmdet's SELayer: ConvModules, the gate made by the second one's activation."""

    def __init__(self, channels, ratio=4, hsigmoid=False):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, channels // ratio, 1, act=nn.ReLU())
        self.conv2 = ConvModule(
            channels // ratio, channels, 1, act=HSigmoid() if hsigmoid else nn.Sigmoid()
        )

    def forward(self, x):
        out = self.global_avgpool(x)
        out = self.conv1(out)
        out = self.conv2(out)
        _see(self, "channel", out.view(out.shape[0], -1))
        return x * out


class NonLocal2d(nn.Module):
    def __init__(
        self, in_channels, reduction=2, use_scale=True, mode="embedded_gaussian", sub_sample=False
    ):
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = max(in_channels // reduction, 1)
        self.use_scale = use_scale
        self.mode = mode
        self.g = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.conv_out = nn.Conv2d(self.inter_channels, in_channels, 1)
        if mode != "gaussian":
            self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
            self.phi = nn.Conv2d(in_channels, self.inter_channels, 1)
        if mode == "concatenation":
            self.concat_project = nn.Sequential(
                nn.Conv2d(self.inter_channels * 2, 1, 1, bias=False), nn.ReLU()
            )
        self.sub_sample = sub_sample
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool2d(2))
            if mode != "gaussian":
                self.phi = nn.Sequential(self.phi, nn.MaxPool2d(2))
            else:
                self.phi = nn.MaxPool2d(2)

    def gaussian(self, theta_x, phi_x):
        return torch.matmul(theta_x, phi_x).softmax(dim=-1)

    def embedded_gaussian(self, theta_x, phi_x):
        pairwise_weight = torch.matmul(theta_x, phi_x)
        if self.use_scale:
            pairwise_weight /= theta_x.shape[-1] ** 0.5
        return pairwise_weight.softmax(dim=-1)

    def dot_product(self, theta_x, phi_x):
        pairwise_weight = torch.matmul(theta_x, phi_x)
        pairwise_weight /= pairwise_weight.shape[-1]
        return pairwise_weight

    def concatenation(self, theta_x, phi_x):
        h = theta_x.size(2)
        w = phi_x.size(3)
        theta_x = theta_x.repeat(1, 1, 1, w)
        phi_x = phi_x.repeat(1, 1, h, 1)
        concat_feature = torch.cat([theta_x, phi_x], dim=1)
        pairwise_weight = self.concat_project(concat_feature)
        n, _, h, w = pairwise_weight.size()
        pairwise_weight = pairwise_weight.view(n, h, w)
        pairwise_weight /= pairwise_weight.shape[-1]
        return pairwise_weight

    def forward(self, x):
        n = x.size(0)
        g_x = self.g(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
        if self.mode == "gaussian":
            theta_x = x.view(n, self.in_channels, -1).permute(0, 2, 1)
            phi_x = (
                self.phi(x).view(n, self.in_channels, -1)
                if self.sub_sample
                else x.view(n, self.in_channels, -1)
            )
        elif self.mode == "concatenation":
            theta_x = self.theta(x).view(n, self.inter_channels, -1, 1)
            phi_x = self.phi(x).view(n, self.inter_channels, 1, -1)
        else:
            theta_x = self.theta(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
            phi_x = self.phi(x).view(n, self.inter_channels, -1)
        pairwise_weight = getattr(self, self.mode)(theta_x, phi_x)
        _see(self, "affinity", pairwise_weight)
        y = torch.matmul(pairwise_weight, g_x)
        y = y.permute(0, 2, 1).contiguous().reshape(n, self.inter_channels, *x.size()[2:])
        return x + self.conv_out(y)


class GeneralizedAttention(nn.Module):
    """mmcv's GeneralizedAttention, the query-key content term ('1000')."""

    def __init__(self, in_channels, num_heads=2, kv_stride=1):
        super().__init__()
        self.num_heads = num_heads
        self.qk_embed_dim = in_channels // num_heads
        out_c = self.qk_embed_dim * num_heads
        self.query_conv = nn.Conv2d(in_channels, out_c, 1, bias=False)
        self.key_conv = nn.Conv2d(in_channels, out_c, 1, bias=False)
        self.v_dim = in_channels // num_heads
        self.value_conv = nn.Conv2d(in_channels, self.v_dim * num_heads, 1, bias=False)
        self.proj_conv = nn.Conv2d(self.v_dim * num_heads, in_channels, 1, bias=True)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.kv_downsample = nn.AvgPool2d(kv_stride) if kv_stride > 1 else None

    def forward(self, x_input):
        num_heads = self.num_heads
        x_kv = self.kv_downsample(x_input) if self.kv_downsample is not None else x_input
        n, _, h, w = x_input.shape
        _, _, h_kv, w_kv = x_kv.shape
        proj_query = self.query_conv(x_input).view((n, num_heads, self.qk_embed_dim, h * w))
        proj_query = proj_query.permute(0, 1, 3, 2)
        proj_key = self.key_conv(x_kv).view((n, num_heads, self.qk_embed_dim, h_kv * w_kv))
        energy = torch.matmul(proj_query, proj_key).view(n, num_heads, h, w, h_kv, w_kv)
        energy = energy.view(n, num_heads, h * w, h_kv * w_kv)
        attention = F.softmax(energy, 3)
        if num_heads == 1:
            _see(self, "affinity", attention.view(n, h * w, h_kv * w_kv))
        else:
            _see(self, "multihead", attention)
        proj_value = self.value_conv(x_kv)
        proj_value_reshape = proj_value.view((n, num_heads, self.v_dim, h_kv * w_kv)).permute(
            0, 1, 3, 2
        )
        out = (
            torch.matmul(attention, proj_value_reshape)
            .permute(0, 1, 3, 2)
            .contiguous()
            .view(n, self.v_dim * self.num_heads, h, w)
        )
        out = self.proj_conv(out)
        return self.gamma * out + x_input


# ----------------------------------------------------------------------------- hosts
class Bottleneck(nn.Module):
    """A residual block: conv, then ``mid`` (a conv replacement: SplitAttn, HaloAttn, ...)
    and ``gate`` (an attention module after the last BN), as ResNet-style hosts place them."""

    def __init__(self, cin, cout, stride=1, mid=None, gate=None):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 1)
        self.conv2 = mid(cout) if mid is not None else conv_bn(cout, cout, 3, s=stride)
        self.pool = nn.AvgPool2d(2) if stride > 1 and mid is not None else nn.Identity()
        self.conv3 = conv_bn(cout, cout, 1, act=False)
        self.attn = gate(cout) if gate is not None else nn.Identity()
        self.shortcut = (
            conv_bn(cin, cout, 1, s=stride, act=False)
            if stride > 1 or cin != cout
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.conv3(self.pool(self.conv2(self.conv1(x))))
        return self.act(self.attn(y) + self.shortcut(x))


class Host(nn.Module):
    """Stem /4, three stages (widths 32, 64, 128; /1, /2, /2), a head. ``stages[i]`` is a list
    of keyword dicts, one per block of stage i; ``after[i]`` a module placed after stage i."""

    def __init__(self, stages=None, after=None, widths=(32, 64, 128), num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn(3, widths[0], 3, s=2), conv_bn(widths[0], widths[0], 3, s=2)
        )
        cin = widths[0]
        layers = []
        for i, w in enumerate(widths):
            kws = (stages or {}).get(i, [{}, {}])
            blocks = [
                Bottleneck(cin if j == 0 else w, w, 2 if (j == 0 and i > 0) else 1, **kw)
                for j, kw in enumerate(kws)
            ]
            layers.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.ModuleList(layers)
        self.after = nn.ModuleDict({str(i): m for i, m in (after or {}).items()})
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if str(i) in self.after:
                x = self.after[str(i)](x)
        return self.head(x.mean((2, 3)))


def _g(factory):
    return [{"gate": factory}, {}]


def _m(factory):
    return [{}, {"mid": factory}]


# name -> (factory, input size or (h, w)): each network at the size its code needs
NETWORKS = {
    # timm self-attention CNNs (BoTNet needs its own input size: rel-pos on a fixed grid)
    "botnet": (lambda: Host({2: _m(lambda c: BottleneckAttn(c, (5, 5)))}), 80),
    "halonet": (
        lambda: Host(
            {1: _m(lambda c: HaloAttn(c, 2, 8, 4, 1)), 2: _m(lambda c: HaloAttn(c, 4, 8, 4, 2))}
        ),
        128,
    ),
    "lambda": (lambda: Host({2: _m(lambda c: LambdaLayer(c))}), 64),
    "resnest": (
        lambda: Host(
            {
                0: _m(lambda c: SplitAttn(c, radix=2, groups=1)),
                1: _m(lambda c: SplitAttn(c, radix=2, groups=2)),
                2: _m(lambda c: SplitAttn(c, radix=4, groups=2)),
            }
        ),
        64,
    ),
    "bat": (lambda: Host({2: _g(lambda c: BilinearAttnTransform(c, 4, 2))}), 128),
    # hybrids
    "mobilevit": (
        lambda: Host(
            after={
                1: MobileVitBlock(64, 2, 2, fused_attn=False, depth=2),
                2: MobileVitBlock(128, 4, 2, fused_attn=True),
            }
        ),
        96,
    ),
    "mobilevitv2": (lambda: Host(after={2: MobileVitV2Block(128)}), 64),
    # torch's own nn.MultiheadAttention: 4 heads batch-first (fast path), 1 head sequence-first
    "torch_mha": (lambda: Host(after={1: TorchMhaBlock(64, 4, True),
                                      2: TorchMhaBlock(128, 1, False)}), 64),
    "maxvit": (
        lambda: Host(after={1: MaxxVitBlock(64, (4, 4)), 2: CoAtTransformerBlock(128, (8, 8))}),
        128,
    ),
    "yolo_psa": (
        lambda: Host(after={1: C2PSA(64, 64), 2: PSA(128 * 2, 128 * 2)}, widths=(32, 64, 256)),
        64,
    ),
    # directional and permuted gates
    "coord": (lambda: Host({0: _g(lambda c: CoordAtt(c, c)), 2: _g(lambda c: ELA(c))}), (96, 128)),
    "triplet": (lambda: Host({1: _g(lambda c: TripletAttention())}), (80, 96)),
    # branch softmaxes with extra axes, channels-last
    "epsa_s2": (lambda: Host({1: _g(lambda c: EPSA(c)), 2: _g(lambda c: S2Attention(c))}), 64),
    # mmcv / mmdet
    "mmcv_se": (
        lambda: Host({0: _g(lambda c: MMSELayer(c)), 1: _g(lambda c: MMSELayer(c, 4, True))}),
        64,
    ),
    "mmcv_nonlocal": (
        lambda: Host(
            after={
                0: NonLocal2d(32, mode="dot_product"),
                1: NonLocal2d(64, mode="concatenation"),
                2: nn.Sequential(
                    NonLocal2d(128, mode="embedded_gaussian", sub_sample=True),
                    NonLocal2d(128, mode="gaussian"),
                ),
            }
        ),
        64,
    ),
    "mmcv_gen_attn": (
        lambda: Host(
            after={
                1: GeneralizedAttention(64, num_heads=1),
                2: GeneralizedAttention(128, num_heads=4, kv_stride=2),
            }
        ),
        64,
    ),
    "danet4d": (lambda: Host(after={2: DANetPAM4d(128)}), 64),
    # forms with no kind: each refused with its reason
    "refused_zoo": (
        lambda: Host(
            after={
                0: DoubleAttention(32),
                1: CrissCrossAttention(64),
                2: nn.Sequential(ExternalAttention(128), ParallelPolarizedSelfAttention(128)),
            }
        ),
        64,
    ),
}


# --------------------------------------------------------------- torch: nn.MultiheadAttention
class TorchMhaBlock(nn.Module):
    """A feature map's positions as tokens through ``nn.MultiheadAttention``, the way users
    write a transformer layer into a CNN (BoT-style heads, DETR-style encoders): batch-first
    with ``need_weights=False`` (PyTorch's fused fast path in eval), or sequence-first with the
    default ``need_weights=True`` (head-averaged weights returned and dropped). Truth: the
    module's own per-head weights for this very call (``need_weights=True,
    average_attn_weights=False``), asked outside any torch function mode."""

    def __init__(self, c, heads, batch_first):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.mha = nn.MultiheadAttention(c, heads, batch_first=batch_first)
        self.batch_first = batch_first

    def forward(self, x):
        B, C, H, W = x.shape
        t = self.norm(x.flatten(2).transpose(1, 2))  # (B, HW, C)
        if not self.batch_first:
            t = t.transpose(0, 1)  # (HW, B, C)
        with torch._C.DisableTorchFunction():
            w = self.mha.forward(t, t, t, need_weights=True, average_attn_weights=False)[1]
        heads = self.mha.num_heads
        _see(self.mha, "multihead" if heads > 1 else "affinity",
             w if heads > 1 else w.view(B, H * W, H * W))
        if self.batch_first:
            o = self.mha(t, t, t, need_weights=False)[0]
        else:
            o = self.mha(t, t, t)[0].transpose(0, 1)
        return x + o.transpose(1, 2).reshape(B, C, H, W)


# ----------------------------------------------------------------------------- no attention
class MBConv(nn.Module):
    """MobileNetV3-style block without SE: hard swish, depthwise conv."""

    def __init__(self, c):
        super().__init__()
        self.pw = nn.Conv2d(c, c * 2, 1)
        self.dw = nn.Conv2d(c * 2, c * 2, 3, padding=1, groups=c * 2)
        self.act = nn.Hardswish()
        self.pwl = nn.Conv2d(c * 2, c, 1)

    def forward(self, x):
        return x + self.pwl(self.act(self.dw(self.act(self.pw(x)))))


class MixerBlock(nn.Module):
    """MLP-Mixer token and channel mixing (no attention), GELU."""

    def __init__(self, tokens, c):
        super().__init__()
        self.norm1 = nn.LayerNorm(c)
        self.token = nn.Sequential(nn.Linear(tokens, tokens), nn.GELU(), nn.Linear(tokens, tokens))
        self.norm2 = nn.LayerNorm(c)
        self.channel = nn.Sequential(nn.Linear(c, c * 2), nn.GELU(), nn.Linear(c * 2, c))

    def forward(self, x):
        B, C, H, W = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.token(self.norm1(t).transpose(1, 2)).transpose(1, 2)
        t = t + self.channel(self.norm2(t))
        return t.transpose(1, 2).reshape(B, C, H, W)


class SoftPool(nn.Module):
    """Pooling weighted by a softmax over each 2x2 window's own values: (B, C, H/2, W/2, 4)."""

    def forward(self, x):
        B, C, H, W = x.shape
        p = (
            x.reshape(B, C, H // 2, 2, W // 2, 2)
            .permute(0, 1, 2, 4, 3, 5)
            .reshape(B, C, H // 2, W // 2, 4)
        )
        return (p * p.softmax(-1)).sum(-1)


class PlainNet(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, s=2)
        if kind == "mobile":
            self.body = nn.Sequential(MBConv(16), nn.SiLU(), MBConv(16), nn.Hardsigmoid())
        elif kind == "mixer":
            self.body = nn.Sequential(
                nn.Conv2d(16, 16, 4, 4), MixerBlock(64, 16), MixerBlock(64, 16)
            )
        else:
            self.body = nn.Sequential(
                conv_bn(16, 16, 3), SoftPool(), conv_bn(16, 16, 3), nn.Sigmoid()
            )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        y = self.body(self.stem(x))
        logits = self.head(y.mean((2, 3)))
        return logits.softmax(-1)


PLAIN = {
    "plain_host": lambda: Host(),
    "plain_mobile": lambda: PlainNet("mobile"),
    "plain_mixer": lambda: PlainNet("mixer"),
    "plain_softpool": lambda: PlainNet("softpool"),
}
