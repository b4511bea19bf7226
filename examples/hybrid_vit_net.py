"""A hybrid CNN + transformer in the style of timm's MobileViT and CoAtNet, with coordinate
attention in the convolutional stages.

It does not import attnviz: it is the kind of file you bring. Serve it with

    python app.py --model hybrid=examples/hybrid_vit_net.py --input-size 128

(``create_model()`` below is what the app calls). Attention: coordinate attention (Hou et al.,
2021: one sigmoid gate per row and one per column), a MobileViT block (Mehta & Rastegari, 2022:
the map unfolded into 2x2 patches, two transformer layers with the attention softmax written
out, (B*4, heads, N, N)) and a global transformer stage that calls
``F.scaled_dot_product_attention`` with a relative-position bias (CoAtNet, Dai et al., 2021).
attnviz finds all of them by discovery: directional gates and multi-head maps (head selector,
mean over heads and rollout in the app's Affinity tab).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, k=3, s=1, groups=1, act=True):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.SiLU() if act else nn.Identity(),
    )


class CoordAtt(nn.Module):
    def __init__(self, inp, reduction=8):
        super().__init__()
        mip = max(8, inp // reduction)
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        self.conv1 = nn.Conv2d(inp, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, inp, 1)
        self.conv_w = nn.Conv2d(mip, inp, 1)

    def forward(self, x):
        n, c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w.permute(0, 1, 3, 2)).sigmoid()
        return x * a_w * a_h


class MBConv(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        mid = cin * 4
        self.expand = conv_bn(cin, mid, 1)
        self.dw = conv_bn(mid, mid, 3, stride, groups=mid)
        self.attn = CoordAtt(mid)
        self.project = conv_bn(mid, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.attn(self.dw(self.expand(x))))
        return x + y if self.skip else y


class Attention(nn.Module):
    """Multi-head self-attention on tokens (B, N, C), the softmax written out (timm's ViT)."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class TransformerLayer(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileVitBlock(nn.Module):
    def __init__(self, dim, num_heads=4, depth=2, patch=2):
        super().__init__()
        self.patch = patch
        self.local = conv_bn(dim, dim, 3)
        self.transformer = nn.Sequential(*[TransformerLayer(dim, num_heads) for _ in range(depth)])
        self.fuse = conv_bn(2 * dim, dim, 3)

    def forward(self, x):
        shortcut = x
        x = self.local(x)
        B, C, H, W = x.shape
        p, nh, nw = self.patch, H // self.patch, W // self.patch
        # [B, C, H, W] -> [B * p * p, nh * nw, C]: each pixel of a patch attends across patches
        t = x.reshape(B, C, nh, p, nw, p).permute(0, 3, 5, 2, 4, 1).reshape(B * p * p, nh * nw, C)
        t = self.transformer(t)
        x = t.reshape(B, p, p, nh, nw, C).permute(0, 5, 3, 1, 4, 2).reshape(B, C, H, W)
        return self.fuse(torch.cat([shortcut, x], dim=1))


class RelPosAttention2d(nn.Module):
    """Global attention over a (B, C, H, W) map, fused, with a learned relative-position bias
    on a fixed grid (the model's own input size decides it)."""

    def __init__(self, dim, grid, num_heads=4):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        gh, gw = grid
        self.bias_table = nn.Parameter(torch.zeros(num_heads, (2 * gh - 1) * (2 * gw - 1)))
        ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        index = (
            (ys[:, None] - ys[None, :] + gh - 1) * (2 * gw - 1) + xs[:, None] - xs[None, :] + gw - 1
        )
        self.register_buffer("index", index, persistent=False)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = (
            self.qkv(x)
            .reshape(B, 3, self.num_heads, self.head_dim, H * W)
            .transpose(-1, -2)
            .unbind(1)
        )
        bias = self.bias_table[:, self.index].unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class HybridNet(nn.Module):
    def __init__(self, num_classes=10, input_size=128):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2)
        self.stage1 = nn.Sequential(MBConv(16, 24, 2), MBConv(24, 24, 1))
        self.stage2 = nn.Sequential(MBConv(24, 48, 2), MobileVitBlock(48, num_heads=4, depth=2))
        grid = (math.ceil(input_size / 16), math.ceil(input_size / 16))
        self.stage3 = nn.Sequential(MBConv(48, 64, 2), RelPosAttention2d(64, grid, num_heads=4))
        self.head = nn.Linear(64, num_classes)
        for m in self.modules():  # untrained, but with attention that is not flat
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight.shape[0] > 3 * 16:
                nn.init.normal_(m.weight, std=0.15)
            if isinstance(m, RelPosAttention2d):
                nn.init.normal_(m.bias_table, std=1.0)

    def forward(self, x):
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.head(x.mean((2, 3)))


def create_model():
    return HybridNet()
