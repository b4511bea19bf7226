"""Residual blocks of the shared ResNet body.

Attention that rescales a block's output (SE, CBAM, SGE) is passed in as ``attn_layer`` and applied
after the block's last BN, before the residual add, under the attribute name its class declares
(``se``, ``cbam``, ``sge``), so the released checkpoints' keys match. SK and SCNet replace the 3x3
convolution itself and have their own key layouts, hence their own block classes.
"""
import torch
from torch import nn

from .layers import SCConv, SelectiveKernel
from .layers.sk import ConvBnAct


def conv3x3(cin, cout, stride=1, dilation=1, groups=1):
    return nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, groups=groups, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class _AttnMixin:
    def _add_attn(self, attn_layer, channels, attn_kwargs):
        self.attn_name = None
        if attn_layer is not None:
            self.attn_name = attn_layer.attr_name
            setattr(self, self.attn_name, attn_layer(channels, **(attn_kwargs or {})))

    def _apply_attn(self, out):
        return out if self.attn_name is None else getattr(self, self.attn_name)(out)


class BasicBlock(_AttnMixin, nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, first_dilation=None,
                 attn_layer=None, attn_kwargs=None, **_):
        super().__init__()
        first_dilation = first_dilation or dilation
        self.conv1 = conv3x3(inplanes, planes, stride, first_dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self._add_attn(attn_layer, planes, attn_kwargs)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self._apply_attn(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class Bottleneck(_AttnMixin, nn.Module):
    """torchvision layout: conv1, bn1, conv2 (stride), bn2, conv3, bn3, downsample."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, first_dilation=None,
                 groups=1, base_width=64, attn_layer=None, attn_kwargs=None, **_):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        first_dilation = first_dilation or dilation
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, first_dilation, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self._add_attn(attn_layer, planes * self.expansion, attn_kwargs)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self._apply_attn(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


class SKBottleneck(nn.Module):
    """SKNet bottleneck in timm's ``skresnext50_32x4d`` layout: conv1.conv/bn, conv2 = SK conv,
    conv3.conv/bn, downsample."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, first_dilation=None,
                 groups=32, base_width=4, sk_kwargs=None, **_):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        d = first_dilation or dilation
        self.conv1 = ConvBnAct(inplanes, width, 1)
        self.conv2 = SelectiveKernel(width, width, stride, groups=groups,
                                     dilations=(d, 2 * d), **(sk_kwargs or {}))
        self.conv3 = ConvBnAct(width, planes * self.expansion, 1, act=False)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.act3(out + identity)


class SKBasic(nn.Module):
    """Basic block whose first 3x3 conv is a two-branch SK conv (for the lite models)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, first_dilation=None,
                 groups=4, sk_kwargs=None, **_):
        super().__init__()
        d = first_dilation or dilation
        self.conv1 = SelectiveKernel(inplanes, planes, stride, groups=groups, dilations=(d, 2 * d),
                                     **(sk_kwargs or {}))
        self.conv2 = ConvBnAct(planes, planes, 3, 1, dilation, act=False)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.act2(self.conv2(self.conv1(x)) + identity)


class SCBottleneck(nn.Module):
    """SCNet bottleneck in the authors' layout: conv1_a/bn1_a -> k1 and conv1_b/bn1_b -> scconv,
    concatenated -> conv3/bn3 -> residual add. Each branch is planes/2 wide."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, first_dilation=None,
                 expansion=None, pooling_r=4, **_):
        super().__init__()
        if expansion is not None:
            self.expansion = expansion
        half = planes // 2
        d = first_dilation or dilation
        self.conv1_a = conv1x1(inplanes, half)
        self.bn1_a = nn.BatchNorm2d(half)
        self.conv1_b = conv1x1(inplanes, half)
        self.bn1_b = nn.BatchNorm2d(half)
        self.k1 = nn.Sequential(conv3x3(half, half, stride, d), nn.BatchNorm2d(half))
        self.scconv = SCConv(half, stride, pooling_r, d)
        self.conv3 = conv1x1(half * 2, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        a = self.relu(self.bn1_a(self.conv1_a(x)))
        b = self.relu(self.bn1_b(self.conv1_b(x)))
        a = self.relu(self.k1(a))
        b = self.relu(self.scconv(b))
        out = self.bn3(self.conv3(torch.cat([a, b], dim=1)))
        return self.relu(out + identity)
