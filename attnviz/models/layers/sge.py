"""Spatial Group-wise Enhance (Li et al., "Spatial Group-wise Enhance: Improving Semantic Feature
Learning in Convolutional Networks", arXiv 1905.09646).

Channels split into G groups; per group, each position's similarity to the group's average-pooled
vector, normalised over positions (mean 0, unbiased std + 1e-5), scaled by a per-group weight and
bias (init 0 and 1), sigmoid, multiply. Keys: ``weight``, ``bias`` shaped (1, G, 1, 1).
"""
import torch
from torch import nn

from .tap import Tap


class SpatialGroupEnhance(nn.Module):
    attr_name = "sge"

    def __init__(self, channels: int = 0, groups: int = 64):
        super().__init__()
        if channels and channels % groups:
            raise ValueError(f"SGE: {channels} channels do not split into {groups} groups")
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.group_tap = Tap("group", "sge")

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.groups
        xg = x.reshape(b * g, c // g, h, w)
        sim = (xg * xg.mean((2, 3), keepdim=True)).sum(1)  # (B*G, H, W)
        t = sim.reshape(b * g, h * w)
        t = t - t.mean(1, keepdim=True)
        t = t / (t.std(1, keepdim=True) + 1e-5)
        t = t.reshape(b, g, h, w) * self.weight + self.bias
        factors = self.group_tap(torch.sigmoid(t))  # (B, G, H, W)
        return (xg * factors.reshape(b * g, 1, h, w)).reshape(b, c, h, w)
