"""Non-local block, embedded Gaussian (Wang et al., "Non-local Neural Networks", CVPR 2018).

theta, phi, g: 1x1 convs C -> C/2 (bias); phi and g see the input max-pooled by 2 (pooling before
their convs, as in the authors' release); affinity = softmax over keys of theta^T phi scaled by
(C/2)^-0.5; y = g weighted by the affinity; W = 1x1 conv C/2 -> C (bias) -> BN with gamma 0, so
the block is the identity at initialisation; output x + W(y).
"""
import torch
from torch import nn
from torch.nn import functional as F

from .tap import Tap


class NonLocalBlock(nn.Module):
    attr_name = "nonlocal_block"

    def __init__(self, channels: int, inner: int | None = None, subsample: bool = True):
        super().__init__()
        self.inner = inner or channels // 2
        self.subsample = subsample
        self.theta = nn.Conv2d(channels, self.inner, 1)
        self.phi = nn.Conv2d(channels, self.inner, 1)
        self.g = nn.Conv2d(channels, self.inner, 1)
        self.W = nn.Sequential(nn.Conv2d(self.inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)
        self.affinity_tap = Tap("affinity", "nonlocal")

    def forward(self, x):
        b, c, h, w = x.shape
        kv = F.max_pool2d(x, 2) if self.subsample and min(h, w) >= 2 else x
        kh, kw = kv.shape[-2:]
        q = self.theta(x).flatten(2).transpose(1, 2)  # (B, Nq, C')
        k = self.phi(kv).flatten(2)  # (B, C', Nk)
        v = self.g(kv).flatten(2).transpose(1, 2)  # (B, Nk, C')
        attn = torch.softmax(torch.bmm(q, k) * self.inner ** -0.5, dim=-1)
        attn = self.affinity_tap(attn, query_hw=(h, w), key_hw=(kh, kw))
        y = torch.bmm(attn, v).transpose(1, 2).reshape(b, self.inner, h, w)
        return x + self.W(y)
