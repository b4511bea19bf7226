"""A network built from attention modules written the way their papers' code writes them.

It does not import attnviz: it is the kind of file you bring. Serve it with

    python app.py --model examples/paper_style_net.py [--weights net.safetensors]

(``create_model()`` below is what the app calls). Modules: SE (moskomule/senet.pytorch), CBAM
(Jongchan/attention-module), SK (the SKAttention form, nn.Softmax(dim=0) over stacked branches),
SGE (implus/PytorchInsight), SCConv (MCG-NKU/SCNet), non-local (AlexHex7/Non-local_pytorch) and
DANet's channel attention (CAM_Module).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SELayer(nn.Module):
    def __init__(self, channel, reduction=4):
        super(SELayer, self).__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False),
                                nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False),
                                nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class ChannelGate(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=4):
        super(ChannelGate, self).__init__()
        self.mlp = nn.Sequential(nn.Flatten(),
                                 nn.Linear(gate_channels, gate_channels // reduction_ratio),
                                 nn.ReLU(),
                                 nn.Linear(gate_channels // reduction_ratio, gate_channels))

    def forward(self, x):
        avg_pool = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
        max_pool = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
        channel_att_sum = self.mlp(avg_pool) + self.mlp(max_pool)
        scale = F.sigmoid(channel_att_sum).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class SpatialGate(nn.Module):
    def __init__(self):
        super(SpatialGate, self).__init__()
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3, bias=False),
                                     nn.BatchNorm2d(1, eps=1e-5, momentum=0.01))

    def forward(self, x):
        x_compress = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)),
                               dim=1)
        x_out = self.spatial(x_compress)
        scale = F.sigmoid(x_out)  # broadcasting
        return x * scale


class CBAM(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=4):
        super(CBAM, self).__init__()
        self.ChannelGate = ChannelGate(gate_channels, reduction_ratio)
        self.SpatialGate = SpatialGate()

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))


class SKAttention(nn.Module):
    def __init__(self, channel=64, kernels=(1, 3, 5), reduction=4, L=16):
        super().__init__()
        self.d = max(L, channel // reduction)
        self.convs = nn.ModuleList([nn.Sequential(
            nn.Conv2d(channel, channel, kernel_size=k, padding=k // 2),
            nn.BatchNorm2d(channel), nn.ReLU()) for k in kernels])
        self.fc = nn.Linear(channel, self.d)
        self.fcs = nn.ModuleList([nn.Linear(self.d, channel) for _ in kernels])
        self.softmax = nn.Softmax(dim=0)

    def forward(self, x):
        bs, c, _, _ = x.size()
        conv_outs = [conv(x) for conv in self.convs]
        feats = torch.stack(conv_outs, 0)  # k,bs,channel,h,w
        U = sum(conv_outs)
        S = U.mean(-1).mean(-1)
        Z = self.fc(S)
        weights = [fc(Z).view(bs, c, 1, 1) for fc in self.fcs]
        attention_weights = self.softmax(torch.stack(weights, 0))  # k,bs,channel,1,1
        return (attention_weights * feats).sum(0)


class SpatialGroupEnhance(nn.Module):
    def __init__(self, groups=8):
        super(SpatialGroupEnhance, self).__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = (x * self.avg_pool(x)).sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        t = t / (t.std(dim=1, keepdim=True) + 1e-5)
        t = t.view(b, self.groups, h, w) * self.weight + self.bias
        x = x * self.sig(t.view(b * self.groups, 1, h, w))
        return x.view(b, c, h, w)


class SCConv(nn.Module):
    def __init__(self, planes, pooling_r=4):
        super(SCConv, self).__init__()
        self.k2 = nn.Sequential(nn.AvgPool2d(pooling_r, pooling_r),
                                nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
                                nn.BatchNorm2d(planes))
        self.k3 = nn.Sequential(nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
                                nn.BatchNorm2d(planes))
        self.k4 = nn.Sequential(nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
                                nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x
        out = torch.sigmoid(torch.add(identity, F.interpolate(self.k2(x), identity.size()[2:])))
        out = torch.mul(self.k3(x), out)
        return self.k4(out)


class NONLocalBlock2D(nn.Module):
    def __init__(self, in_channels):
        super(NONLocalBlock2D, self).__init__()
        self.inter_channels = in_channels // 2
        self.g = nn.Sequential(nn.Conv2d(in_channels, self.inter_channels, 1), nn.MaxPool2d(2))
        self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.phi = nn.Sequential(nn.Conv2d(in_channels, self.inter_channels, 1), nn.MaxPool2d(2))
        self.W = nn.Sequential(nn.Conv2d(self.inter_channels, in_channels, 1),
                               nn.BatchNorm2d(in_channels))

    def forward(self, x):
        batch_size = x.size(0)
        g_x = self.g(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f_div_C = F.softmax(torch.matmul(theta_x, phi_x), dim=-1)
        y = torch.matmul(f_div_C, g_x).permute(0, 2, 1).contiguous()
        y = y.view(batch_size, self.inter_channels, *x.size()[2:])
        return self.W(y) + x


class CAM_Module(nn.Module):
    def __init__(self, in_dim):
        super(CAM_Module, self).__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, height, width = x.size()
        proj_query = x.view(m_batchsize, C, -1)
        proj_key = x.view(m_batchsize, C, -1).permute(0, 2, 1)
        energy = torch.bmm(proj_query, proj_key)
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        attention = self.softmax(energy_new)
        out = torch.bmm(attention, x.view(m_batchsize, C, -1)).view(m_batchsize, C, height, width)
        return self.gamma * out + x


class Block(nn.Module):
    def __init__(self, cin, cout, stride=1, attn=None, conv=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv(cout) if conv else nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.attn = attn(cout) if attn else nn.Identity()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout)) if stride != 1 or cin != cout \
            else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.attn(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class PaperStyleNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU(inplace=True))
        self.layer1 = Block(32, 32, 1, attn=SELayer)
        self.layer2 = Block(32, 64, 2, attn=CBAM)
        self.layer3 = Block(64, 64, 1, attn=SpatialGroupEnhance, conv=SKAttention)
        self.nonlocal_block = NONLocalBlock2D(64)
        self.layer4 = Block(64, 96, 2, conv=SCConv)
        self.cam = CAM_Module(96)
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        x = self.cam(self.layer4(self.nonlocal_block(self.layer3(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def create_model():
    return PaperStyleNet()
