"""Self-calibrated convolution (Liu et al., "Improving Convolutional Networks with
Self-Calibrated Convolutions", CVPR 2020).

k2 = avgpool(r) -> 3x3 conv -> BN, upsampled (nearest) back to the input's size;
gate = sigmoid(x + up(k2(x))); out = k4(k3(x) * gate), k3 = 3x3 conv + BN, k4 = 3x3 conv (stride)
+ BN. Keys follow the authors' release: ``k2.1``, ``k2.2``, ``k3.0``, ``k3.1``, ``k4.0``, ``k4.1``.
"""
import torch
from torch import nn
from torch.nn import functional as F

from .tap import Tap


def _conv_bn(cin, cout, stride=1, dilation=1, groups=1):
    return [nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class SCConv(nn.Module):
    attr_name = "scconv"

    def __init__(self, channels: int, stride: int = 1, pooling_r: int = 4, dilation: int = 1,
                 groups: int = 1):
        super().__init__()
        self.k2 = nn.Sequential(nn.AvgPool2d(pooling_r, pooling_r),
                                *_conv_bn(channels, channels, 1, dilation, groups))
        self.k3 = nn.Sequential(*_conv_bn(channels, channels, 1, dilation, groups))
        self.k4 = nn.Sequential(*_conv_bn(channels, channels, stride, dilation, groups))
        self.calibration_tap = Tap("calibration", "scconv")

    def forward(self, x):
        up = F.interpolate(self.k2(x), size=x.shape[2:], mode="nearest")
        gate = self.calibration_tap(torch.sigmoid(x + up))
        return self.k4(self.k3(x) * gate)
