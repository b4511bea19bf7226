"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018).

global average pool -> 1x1 conv C -> C/r (bias) -> ReLU -> 1x1 conv C/r -> C (bias) -> sigmoid,
then the input's channels are scaled by the gate. Keys follow timm: ``fc1``, ``fc2``.
"""
import torch
from torch import nn

from .tap import Tap


class SEModule(nn.Module):
    attr_name = "se"

    def __init__(self, channels: int, reduction: int = 16, min_channels: int = 8):
        super().__init__()
        hidden = max(channels // reduction, min_channels)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate_tap = Tap("channel", "se")

    def forward(self, x):
        z = x.mean((2, 3), keepdim=True)
        z = self.fc2(self.act(self.fc1(z)))
        gate = self.gate_tap(torch.sigmoid(z.flatten(1)))
        return x * gate[:, :, None, None]
