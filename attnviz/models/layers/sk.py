"""Selective Kernel convolution (Li et al., "Selective Kernel Networks", CVPR 2019).

Split: M branches of conv + BN + ReLU; fuse: sum, global average pool, reduce to
d = max(C/16, 32) -> BN -> ReLU; select: project to M*C, read as (M, C) (the first C outputs belong
to the first branch), softmax across branches, weighted sum of the branches.

Two forms:
* :class:`SelectiveKernel`, the official SKNet-50 form (timm ``skresnext50_32x4d`` key layout:
  ``paths.{i}.conv``, ``paths.{i}.bn``, ``attn.fc_reduce``, ``attn.bn``, ``attn.fc_select``): a 3x3
  grouped conv and a 3x3 dilation-2 grouped conv, 1x1 convs without bias in the attention.
* :class:`MultiKernelSK`, the variant with true kxk kernels (for instance [1, 3, 5, 7]) and Linear
  layers in the attention.
"""
import torch
from torch import nn

from .tap import Tap


def same_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    return (stride - 1 + dilation * (kernel_size - 1)) // 2


class ConvBnAct(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1, dilation=1, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, same_padding(k, stride, dilation),
                              dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SelectiveKernelAttn(nn.Module):
    def __init__(self, channels: int, num_paths: int, attn_channels: int):
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, 1, bias=False)
        self.kernel_tap = Tap("kernel", "sk")

    def forward(self, stacked):  # (B, M, C, H, W)
        z = stacked.sum(1).mean((2, 3), keepdim=True)
        z = self.fc_select(self.act(self.bn(self.fc_reduce(z))))
        b = z.shape[0]
        weights = self.kernel_tap(torch.softmax(z.reshape(b, self.num_paths, -1), dim=1))
        return weights  # (B, M, C)


def sk_attn_channels(channels: int, reduction: int = 16, min_channels: int = 32) -> int:
    return max(channels // reduction, min_channels)


class SelectiveKernel(nn.Module):
    """Official two-branch SK conv: 3x3 and 3x3 dilation-2, both grouped."""

    def __init__(self, in_channels, out_channels, stride=1, groups=32, dilations=(1, 2),
                 reduction=16, min_attn_channels=32):
        super().__init__()
        self.paths = nn.ModuleList([
            ConvBnAct(in_channels, out_channels, 3, stride, d, groups=groups) for d in dilations
        ])
        self.attn = SelectiveKernelAttn(out_channels, len(dilations),
                                        sk_attn_channels(out_channels, reduction, min_attn_channels))

    def forward(self, x):
        stacked = torch.stack([p(x) for p in self.paths], dim=1)
        weights = self.attn(stacked)
        return (stacked * weights[..., None, None]).sum(1)


class MultiKernelSKAttn(nn.Module):
    def __init__(self, channels, num_paths, attn_channels):
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Linear(channels, attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Linear(attn_channels, channels * num_paths)
        self.kernel_tap = Tap("kernel", "sk")

    def forward(self, stacked):
        z = self.fc_select(self.act(self.fc_reduce(stacked.sum(1).mean((2, 3)))))
        return self.kernel_tap(torch.softmax(z.reshape(z.shape[0], self.num_paths, -1), dim=1))


class MultiKernelSK(nn.Module):
    """SK conv with true kxk kernels (e.g. [1, 3, 5, 7]) and Linear layers in the attention."""

    def __init__(self, in_channels, out_channels, stride=1, kernels=(1, 3, 5, 7), groups=1,
                 reduction=16, min_attn_channels=32):
        super().__init__()
        self.paths = nn.ModuleList([
            ConvBnAct(in_channels, out_channels, k, stride, 1, groups=groups if k > 1 else 1)
            for k in kernels
        ])
        self.attn = MultiKernelSKAttn(out_channels, len(kernels),
                                      sk_attn_channels(out_channels, reduction, min_attn_channels))

    def forward(self, x):
        stacked = torch.stack([p(x) for p in self.paths], dim=1)
        weights = self.attn(stacked)
        return (stacked * weights[..., None, None]).sum(1)
