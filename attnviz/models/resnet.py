"""The shared ResNet body: stem, four stages of a residual block given as a parameter, optional
stand-alone attention inserted into a stage, and a head (pooling + ``fc``, or a DANet head)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import ChannelAttention, PositionAttention
from .info import ModelInfo  # noqa: F401 - re-exported (attnviz.models.resnet.ModelInfo)


class DANetHead(nn.Module):
    """DANet head: two 3x3 conv reductions to ``inter`` channels, PAM on one and CAM on the other,
    a 3x3 conv after each, the two branches summed. ``channel=False`` keeps the PAM branch alone
    (an ablation of the published head: no global channel path beside the spatial affinity)."""

    def __init__(self, in_channels: int, inter: int = 512, channel: bool = True):
        super().__init__()

        def cbr(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.channel = channel  # the published order of modules (and keys) when kept
        self.conv5a = cbr(in_channels, inter)
        if channel:
            self.conv5c = cbr(in_channels, inter)
        self.sa = PositionAttention(inter)
        if channel:
            self.sc = ChannelAttention(inter)
        self.conv51 = cbr(inter, inter)
        if channel:
            self.conv52 = cbr(inter, inter)
        self.out_channels = inter

    def forward(self, x):
        out = self.conv51(self.sa(self.conv5a(x)))
        if self.channel:
            out = out + self.conv52(self.sc(self.conv5c(x)))
        return out


class ResNet(nn.Module):
    """ResNet body.

    Args:
        block: residual block class (BasicBlock, Bottleneck, SKBottleneck, SCBottleneck, ...).
        layers: blocks per stage (one stage per entry, ``layer1`` ... ``layer<n>``; four in the
            published layouts).
        widths: ``planes`` per stage (output channels are planes * block.expansion).
        strides, dilations: per stage. The first block of a stage uses the previous stage's
            dilation for its first 3x3 conv, as torchvision does when stride becomes dilation.
        stem: "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max-pool as ``conv1``/``bn1``) or "lite"
            (two 3x3/2 conv-BN-ReLU in ``stem``), both output stride 4.
        stem_width: channels out of the stem.
        inserts: {stage index (1-4): [(position, factory(channels) -> module), ...]} stand-alone
            attention inserted into a stage's Sequential.
        head: "fc", "danet" or "danet_pam" (the DANet head's position-attention branch alone);
            head_width: DANet head channels.
        block_kwargs: passed to every block (attn_layer, groups, base_width, ...).
    """

    def __init__(self, block, layers, num_classes=1000, widths=(64, 128, 256, 512),
                 strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), stem="imagenet", stem_width=64,
                 inserts=None, head="fc", head_width=512, block_kwargs=None):
        super().__init__()
        block_kwargs = dict(block_kwargs or {})
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, stem_width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        elif stem == "lite":
            half = max(stem_width // 2, 8)
            self.stem = nn.Sequential(
                nn.Conv2d(3, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                nn.Conv2d(half, stem_width, 3, 2, 1, bias=False), nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
            )
        else:
            raise ValueError(f"unknown stem {stem!r}")
        self.stem_type = stem
        self.num_stages = len(layers)
        inserts = inserts or {}
        inplanes, prev_dilation = stem_width, 1
        expansion = block_kwargs.get("expansion") or block.expansion
        for i, (n, planes, stride, dilation) in enumerate(zip(layers, widths, strides, dilations), 1):
            outplanes = planes * expansion
            downsample = None
            if stride != 1 or inplanes != outplanes:
                downsample = nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False),
                                           nn.BatchNorm2d(outplanes))
            mods = [block(inplanes, planes, stride, downsample, dilation=dilation,
                          first_dilation=prev_dilation, **block_kwargs)]
            mods += [block(outplanes, planes, 1, None, dilation=dilation, **block_kwargs)
                     for _ in range(1, n)]
            for pos, factory in sorted(inserts.get(i, []), key=lambda p: p[0], reverse=True):
                mods.insert(pos if pos >= 0 else len(mods) + 1 + pos, factory(outplanes))
            self.add_module(f"layer{i}", nn.Sequential(*mods))
            inplanes, prev_dilation = outplanes, dilation
        if head in ("danet", "danet_pam"):
            self.head = DANetHead(inplanes, head_width, channel=head == "danet")
            inplanes = head_width
        elif head != "fc":
            raise ValueError(f"unknown head {head!r}")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.num_features = inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x):
        if self.stem_type == "imagenet":
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        else:
            x = self.stem(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        if hasattr(self, "head"):
            x = self.head(x)
        return x

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))
