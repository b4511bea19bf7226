"""DANet position and channel attention (Fu et al., "Dual Attention Network for Scene
Segmentation", CVPR 2019).

PAM: query, key = 1x1 convs C -> C/8 (bias), value = 1x1 conv C -> C (bias); energy = query^T key
over all positions, softmax over keys; out = gamma * (value x attention^T) + x, gamma a scalar 0.
CAM: energy = X X^T (B, C, C); energy_new = rowmax(energy) - energy; softmax;
out = gamma * (attention x X) + x, gamma a scalar 0; no other parameters.
"""
import torch
from torch import nn

from .tap import Tap


class PositionAttention(nn.Module):
    attr_name = "pam"
    block_name = "danet_pam"

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // reduction, 1)
        self.key_conv = nn.Conv2d(channels, channels // reduction, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.affinity_tap = Tap("affinity", self.block_name)

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.query_conv(x).flatten(2).transpose(1, 2)  # (B, N, C')
        k = self.key_conv(x).flatten(2)  # (B, C', N)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)
        attn = self.affinity_tap(attn, query_hw=(h, w), key_hw=(h, w))
        v = self.value_conv(x).flatten(2)  # (B, C, N)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    attr_name = "cam"

    def __init__(self, channels: int = 0):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.channel_affinity_tap = Tap("channel_affinity", "danet_cam")

    def forward(self, x):
        b, c, h, w = x.shape
        flat = x.flatten(2)  # (B, C, N)
        energy = torch.bmm(flat, flat.transpose(1, 2))
        energy = energy.amax(-1, keepdim=True) - energy
        attn = self.channel_affinity_tap(torch.softmax(energy, dim=-1))
        out = torch.bmm(attn, flat).reshape(b, c, h, w)
        return self.gamma * out + x
