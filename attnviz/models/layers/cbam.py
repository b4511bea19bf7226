"""CBAM (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018).

Channel gate: one shared MLP (Linear C -> C/r, ReLU, Linear C/r -> C, biases) on the avg- and on
the max-pooled vector, summed, sigmoid. Spatial gate: concat[channel-max, channel-mean] -> 7x7 conv
(no bias) -> BN -> sigmoid. Keys follow the authors' release: ``ChannelGate.mlp.1``,
``ChannelGate.mlp.3``, ``SpatialGate.spatial.conv``, ``SpatialGate.spatial.bn``.
"""
import torch
from torch import nn

from .tap import Tap


class ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, min_channels: int = 4):
        super().__init__()
        hidden = max(channels // reduction, min_channels)
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )
        self.gate_tap = Tap("channel", "cbam")

    def forward(self, x):
        logits = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        gate = self.gate_tap(torch.sigmoid(logits))
        return x * gate[:, :, None, None]


class _ConvBN(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, bias=False)
        # the authors' BasicConv uses momentum 0.01
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class SpatialGate(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.spatial = _ConvBN(2, 1, kernel_size)
        self.spatial_tap = Tap("spatial", "cbam")

    def forward(self, x):
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        gate = self.spatial_tap(torch.sigmoid(self.spatial(pooled)).squeeze(1))
        return x * gate[:, None]


class CBAM(nn.Module):
    attr_name = "cbam"

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)
        self.SpatialGate = SpatialGate(kernel_size)

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))
