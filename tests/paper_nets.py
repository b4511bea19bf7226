"""Networks built from the published attention modules, written the way their authors' code (and
timm's layers) write them. Nothing here imports attnviz: these are the networks a user brings.

The one addition to the authors' code: each attention module keeps what it computed in
``self.seen = {kind: tensor}`` (the very tensor object, for the tests' oracle).

Sources of the forms: SE (moskomule/senet.pytorch), CBAM (Jongchan/attention-module), SK seed
(SKAttention, nn.Softmax(dim=0) over stacked branches) and timm's SelectiveKernelAttn
(torch.softmax dim=1), SGE (implus/PytorchInsight, (B*G,1,H,W) reshape), SAGAN (Self_Attn),
non-local (AlexHex7, F.softmax, sub-sampled keys), DANet PAM/CAM, SCConv (MCG-NKU/SCNet,
torch.sigmoid), ECA (BangguWu/ECANet and timm's EcaModule), timm's SEModule / CbamModule /
GlobalContext with timm's own Sigmoid module (``x.sigmoid()``).

timm pins: each timm-style class below was read and compared (submodule names, which module
computes the gate, module vs function activation, softmax dim, reshapes, the gate's shape) with
the file named here, in huggingface/pytorch-image-models at the commit named here:
- Sigmoid: timm/layers/activations.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- SEModule: timm/layers/squeeze_excite.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- EcaModule: timm/layers/eca.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- BatchNormAct2d: timm/layers/norm_act.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- ConvNormAct: timm/layers/conv_bn_act.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- ChannelAttn: timm/layers/cbam.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- SpatialAttn: timm/layers/cbam.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- CbamModule: timm/layers/cbam.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- LayerNorm2d: timm/layers/norm.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- ConvMlp: timm/layers/mlp.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- GlobalContext: timm/layers/global_context.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- SelectiveKernelAttn: timm/layers/selective_kernel.py@aa4b5850c1543fa488abf260f18390eda46cf85d
- SelectiveKernel: timm/layers/selective_kernel.py@aa4b5850c1543fa488abf260f18390eda46cf85d
Gates go through ``create_act_layer('sigmoid')``, which gives the Sigmoid module there
(timm/layers/create_act.py at the same commit). Settings the tests fix: rd_channels=8;
SelectiveKernel with split_input=False (skresnext50's setting) and the default 3x3 paths at
dilations 1 and 2; GlobalContext with fuse_scale only (its defaults).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- SE, ECA (papers)
class SELayer(nn.Module):
    def __init__(self, channel, reduction=4):
        super(SELayer, self).__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid()
        )

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y)
        self.seen = {"channel": y}
        y = y.view(b, c, 1, 1)
        return x * y.expand_as(x)


class eca_layer(nn.Module):
    def __init__(self, channel, k_size=3):
        super(eca_layer, self).__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        y = self.sigmoid(y)
        self.seen = {"channel": y}
        return x * y.expand_as(x)


# ----------------------------------------------------------------------------- CBAM (paper)
class BasicConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, relu=True, bn=True, bias=False):
        super(BasicConv, self).__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride,
                              padding=padding, dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class ChannelGate(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=4, pool_types=['avg', 'max']):
        super(ChannelGate, self).__init__()
        self.gate_channels = gate_channels
        self.mlp = nn.Sequential(
            Flatten(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels)
        )
        self.pool_types = pool_types

    def forward(self, x):
        channel_att_sum = None
        for pool_type in self.pool_types:
            if pool_type == 'avg':
                avg_pool = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(avg_pool)
            elif pool_type == 'max':
                max_pool = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(max_pool)
            if channel_att_sum is None:
                channel_att_sum = channel_att_raw
            else:
                channel_att_sum = channel_att_sum + channel_att_raw
        gate = F.sigmoid(channel_att_sum)
        self.seen = {"channel": gate}
        scale = gate.unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class ChannelPool(nn.Module):
    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGate(nn.Module):
    def __init__(self):
        super(SpatialGate, self).__init__()
        kernel_size = 7
        self.compress = ChannelPool()
        self.spatial = BasicConv(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2,
                                 relu=False)

    def forward(self, x):
        x_compress = self.compress(x)
        x_out = self.spatial(x_compress)
        scale = F.sigmoid(x_out)  # broadcasting
        self.seen = {"spatial": scale}
        return x * scale


class CBAM(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=4, pool_types=['avg', 'max'],
                 no_spatial=False):
        super(CBAM, self).__init__()
        self.ChannelGate = ChannelGate(gate_channels, reduction_ratio, pool_types)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = SpatialGate()

    def forward(self, x):
        x_out = self.ChannelGate(x)
        if not self.no_spatial:
            x_out = self.SpatialGate(x_out)
        return x_out


# ----------------------------------------------------------------------------- timm's layers
class Sigmoid(nn.Module):
    """timm.layers.activations.Sigmoid"""

    def __init__(self, inplace: bool = False):
        super(Sigmoid, self).__init__()
        self.inplace = inplace

    def forward(self, x):
        return x.sigmoid_() if self.inplace else x.sigmoid()


class SEModule(nn.Module):
    """timm.layers.squeeze_excite.SEModule (norm_layer=None: ``bn`` is an Identity)."""

    def __init__(self, channels, rd_channels=8, bias=True):
        super(SEModule, self).__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1, bias=bias)
        self.bn = nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1, bias=bias)
        self.gate = Sigmoid()

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.fc1(x_se)
        x_se = self.act(self.bn(x_se))
        x_se = self.fc2(x_se)
        g = self.gate(x_se)
        self.seen = {"channel": g}
        return x * g


class EcaModule(nn.Module):
    """timm.layers.eca.EcaModule (kernel_size given, use_mlp=False)."""

    def __init__(self, channels=None, kernel_size=3):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel_size, padding=padding, bias=False)
        self.gate = Sigmoid()

    def forward(self, x):
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)  # view for 1d conv
        y = self.conv(y)
        g = self.gate(y)
        self.seen = {"channel": g}
        y = g.view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)


class BatchNormAct2d(nn.BatchNorm2d):
    """timm.layers.norm_act.BatchNormAct2d: a BatchNorm2d that owns its ``drop`` and ``act``."""

    def __init__(self, num_features, apply_act=True):
        super(BatchNormAct2d, self).__init__(num_features)
        self.drop = nn.Identity()
        self.act = nn.ReLU(inplace=True) if apply_act else nn.Identity()

    def forward(self, x):
        x = super(BatchNormAct2d, self).forward(x)
        x = self.drop(x)
        return self.act(x)


class ConvNormAct(nn.Module):
    """timm.layers.conv_bn_act.ConvNormAct: ``conv`` then ``bn`` (norm and act in one module)."""

    def __init__(self, cin, cout, kernel_size=1, stride=1, dilation=1, groups=1, apply_act=True):
        super().__init__()
        padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation=dilation,
                              groups=groups, bias=False)
        self.bn = BatchNormAct2d(cout, apply_act=apply_act)

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x)
        return x


class ChannelAttn(nn.Module):
    """timm.layers.cbam.ChannelAttn"""

    def __init__(self, channels, rd_channels=8, mlp_bias=False):
        super(ChannelAttn, self).__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=mlp_bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=mlp_bias)
        self.gate = Sigmoid()

    def forward(self, x):
        x_avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        x_max = self.fc2(self.act(self.fc1(x.amax((2, 3), keepdim=True))))
        g = self.gate(x_avg + x_max)
        self.seen = {"channel": g}
        return x * g


class SpatialAttn(nn.Module):
    """timm.layers.cbam.SpatialAttn"""

    def __init__(self, kernel_size=7):
        super(SpatialAttn, self).__init__()
        self.conv = ConvNormAct(2, 1, kernel_size, apply_act=False)
        self.gate = Sigmoid()

    def forward(self, x):
        x_attn = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        x_attn = self.conv(x_attn)
        g = self.gate(x_attn)
        self.seen = {"spatial": g}
        return x * g


class CbamModule(nn.Module):
    """timm.layers.cbam.CbamModule"""

    def __init__(self, channels, rd_channels=8, spatial_kernel_size=7):
        super(CbamModule, self).__init__()
        self.channel = ChannelAttn(channels, rd_channels=rd_channels)
        self.spatial = SpatialAttn(spatial_kernel_size)

    def forward(self, x):
        x = self.channel(x)
        x = self.spatial(x)
        return x


class LayerNorm2d(nn.LayerNorm):
    """timm.layers.norm.LayerNorm2d: LayerNorm over the channels of an NCHW map."""

    def __init__(self, num_channels, eps=1e-6):
        super(LayerNorm2d, self).__init__(num_channels, eps=eps)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvMlp(nn.Module):
    """timm.layers.mlp.ConvMlp as GlobalContext builds it (LayerNorm2d, ReLU)."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Conv2d(in_features, hidden_features, kernel_size=1, bias=True)
        self.norm = LayerNorm2d(hidden_features)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.0)
        self.fc2 = nn.Conv2d(hidden_features, in_features, kernel_size=1, bias=True)

    def forward(self, x):
        x = self.fc1(x)
        x = self.norm(x)
        x = self.act(x)
        x = self.drop(x)
        return self.fc2(x)


class GlobalContext(nn.Module):
    """timm.layers.global_context.GlobalContext (use_attn, fuse_scale; no fuse_add)."""

    def __init__(self, channels, rd_channels=8):
        super(GlobalContext, self).__init__()
        self.conv_attn = nn.Conv2d(channels, 1, kernel_size=1, bias=True)
        self.mlp_scale = ConvMlp(channels, rd_channels)
        self.gate = Sigmoid()
        nn.init.kaiming_normal_(self.conv_attn.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x):
        B, C, H, W = x.shape
        attn = self.conv_attn(x).reshape(B, 1, H * W)  # (B, 1, H * W)
        attn = F.softmax(attn, dim=-1)
        self.seen = {"spatial": attn}
        attn = attn.unsqueeze(3)  # (B, 1, H * W, 1)
        context = x.reshape(B, C, H * W).unsqueeze(1) @ attn
        context = context.view(B, C, 1, 1)
        mlp_x = self.mlp_scale(context)
        g = self.gate(mlp_x)
        self.seen["channel"] = g
        x = x * g
        return x


# ----------------------------------------------------------------------------- SK
class SKAttention(nn.Module):
    """The seed form: branch weights stacked as (M, B, C, 1, 1), nn.Softmax(dim=0)."""

    def __init__(self, channel=32, kernels=[1, 3, 5], reduction=4, group=1, L=8):
        super().__init__()
        self.d = max(L, channel // reduction)
        self.convs = nn.ModuleList([])
        for k in kernels:
            self.convs.append(nn.Sequential(
                nn.Conv2d(channel, channel, kernel_size=k, padding=k // 2, groups=group),
                nn.BatchNorm2d(channel), nn.ReLU()))
        self.fc = nn.Linear(channel, self.d)
        self.fcs = nn.ModuleList([])
        for _i in range(len(kernels)):
            self.fcs.append(nn.Linear(self.d, channel))
        self.softmax = nn.Softmax(dim=0)

    def forward(self, x):
        bs, c, _, _ = x.size()
        conv_outs = []
        for conv in self.convs:
            conv_outs.append(conv(x))
        feats = torch.stack(conv_outs, 0)  # k,bs,channel,h,w
        U = sum(conv_outs)  # bs,c,h,w
        S = U.mean(-1).mean(-1)  # bs,c
        Z = self.fc(S)  # bs,d
        weights = []
        for fc in self.fcs:
            weight = fc(Z)
            weights.append(weight.view(bs, c, 1, 1))  # bs,channel
        attention_weughts = torch.stack(weights, 0)  # k,bs,channel,1,1
        attention_weughts = self.softmax(attention_weughts)  # k,bs,channel,1,1
        self.seen = {"kernel": attention_weughts}
        V = (attention_weughts * feats).sum(0)
        return V


class SelectiveKernelAttn(nn.Module):
    """timm.layers.selective_kernel.SelectiveKernelAttn: (B, M, C, 1, 1), torch.softmax(dim=1)."""

    def __init__(self, channels, num_paths=2, attn_channels=8):
        super(SelectiveKernelAttn, self).__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, kernel_size=1, bias=False)

    def forward(self, x):
        x = x.sum(1).mean((2, 3), keepdim=True)
        x = self.fc_reduce(x)
        x = self.bn(x)
        x = self.act(x)
        x = self.fc_select(x)
        B, C, H, W = x.shape
        x = x.view(B, self.num_paths, C // self.num_paths, H, W)
        x = torch.softmax(x, dim=1)
        self.seen = {"kernel": x}
        return x


class SelectiveKernel(nn.Module):
    """timm.layers.selective_kernel.SelectiveKernel (split_input=False, paths 3x3 at d=1, 2)."""

    def __init__(self, in_channels, out_channels=None, stride=1):
        super(SelectiveKernel, self).__init__()
        out_channels = out_channels or in_channels
        self.paths = nn.ModuleList([ConvNormAct(in_channels, out_channels, 3, stride, d)
                                    for d in (1, 2)])
        self.attn = SelectiveKernelAttn(out_channels, 2, 8)

    def forward(self, x):
        x_paths = [op(x) for op in self.paths]
        x = torch.stack(x_paths, dim=1)
        x_attn = self.attn(x)
        x = x * x_attn
        x = torch.sum(x, dim=1)
        return x


# ----------------------------------------------------------------------------- SGE, SCConv
class SpatialGroupEnhance(nn.Module):
    def __init__(self, groups=16):
        super(SpatialGroupEnhance, self).__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):  # (b, c, h, w)
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = x * self.avg_pool(x)
        xn = xn.sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = t / std
        t = t.view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        t = t.view(b * self.groups, 1, h, w)
        s = self.sig(t)
        self.seen = {"group": s}
        x = x * s
        x = x.view(b, c, h, w)
        return x


class SCConv(nn.Module):
    def __init__(self, inplanes, planes, stride=1, padding=1, dilation=1, groups=1, pooling_r=4,
                 norm_layer=nn.BatchNorm2d):
        super(SCConv, self).__init__()
        self.k2 = nn.Sequential(
            nn.AvgPool2d(kernel_size=pooling_r, stride=pooling_r),
            nn.Conv2d(inplanes, planes, kernel_size=3, stride=1, padding=padding,
                      dilation=dilation, groups=groups, bias=False),
            norm_layer(planes))
        self.k3 = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=3, stride=1, padding=padding,
                      dilation=dilation, groups=groups, bias=False),
            norm_layer(planes))
        self.k4 = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=False),
            norm_layer(planes))

    def forward(self, x):
        identity = x
        out = torch.sigmoid(torch.add(identity, F.interpolate(self.k2(x), identity.size()[2:])))
        self.seen = {"calibration": out}
        out = torch.mul(self.k3(x), out)  # k3 * sigmoid(identity + k2)
        out = self.k4(out)  # k4
        return out


# ----------------------------------------------------------------------------- affinities
class Self_Attn(nn.Module):
    """SAGAN's self-attention layer (returns the map too, as the authors' code does)."""

    def __init__(self, in_dim, activation="relu"):
        super(Self_Attn, self).__init__()
        self.chanel_in = in_dim
        self.activation = activation
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, width, height = x.size()
        proj_query = self.query_conv(x).view(m_batchsize, -1, width * height).permute(0, 2, 1)
        proj_key = self.key_conv(x).view(m_batchsize, -1, width * height)
        energy = torch.bmm(proj_query, proj_key)
        attention = self.softmax(energy)
        self.seen = {"affinity": attention}
        proj_value = self.value_conv(x).view(m_batchsize, -1, width * height)
        out = torch.bmm(proj_value, attention.permute(0, 2, 1))
        out = out.view(m_batchsize, C, width, height)
        out = self.gamma * out + x
        return out, attention


class NONLocalBlock2D(nn.Module):
    """Embedded Gaussian non-local block (AlexHex7/Non-local_pytorch), keys sub-sampled by 2."""

    def __init__(self, in_channels, inter_channels=None, sub_sample=True, bn_layer=True):
        super(NONLocalBlock2D, self).__init__()
        self.in_channels = in_channels
        self.inter_channels = inter_channels or max(in_channels // 2, 1)
        max_pool_layer = nn.MaxPool2d(kernel_size=(2, 2))
        self.g = nn.Conv2d(self.in_channels, self.inter_channels, 1, 1, 0)
        if bn_layer:
            self.W = nn.Sequential(nn.Conv2d(self.inter_channels, self.in_channels, 1, 1, 0),
                                   nn.BatchNorm2d(self.in_channels))
            nn.init.constant_(self.W[1].weight, 0)
            nn.init.constant_(self.W[1].bias, 0)
        else:
            self.W = nn.Conv2d(self.inter_channels, self.in_channels, 1, 1, 0)
        self.theta = nn.Conv2d(self.in_channels, self.inter_channels, 1, 1, 0)
        self.phi = nn.Conv2d(self.in_channels, self.inter_channels, 1, 1, 0)
        if sub_sample:
            self.g = nn.Sequential(self.g, max_pool_layer)
            self.phi = nn.Sequential(self.phi, max_pool_layer)

    def forward(self, x):
        batch_size = x.size(0)
        g_x = self.g(x).view(batch_size, self.inter_channels, -1)
        g_x = g_x.permute(0, 2, 1)
        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1)
        theta_x = theta_x.permute(0, 2, 1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        f_div_C = F.softmax(f, dim=-1)
        self.seen = {"affinity": f_div_C}
        y = torch.matmul(f_div_C, g_x)
        y = y.permute(0, 2, 1).contiguous()
        y = y.view(batch_size, self.inter_channels, *x.size()[2:])
        W_y = self.W(y)
        z = W_y + x
        return z


class PAM_Module(nn.Module):
    """DANet position attention."""

    def __init__(self, in_dim):
        super(PAM_Module, self).__init__()
        self.chanel_in = in_dim
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, height, width = x.size()
        proj_query = self.query_conv(x).view(m_batchsize, -1, width * height).permute(0, 2, 1)
        proj_key = self.key_conv(x).view(m_batchsize, -1, width * height)
        energy = torch.bmm(proj_query, proj_key)
        attention = self.softmax(energy)
        self.seen = {"affinity": attention}
        proj_value = self.value_conv(x).view(m_batchsize, -1, width * height)
        out = torch.bmm(proj_value, attention.permute(0, 2, 1))
        out = out.view(m_batchsize, C, height, width)
        out = self.gamma * out + x
        return out


class CAM_Module(nn.Module):
    """DANet channel attention."""

    def __init__(self, in_dim):
        super(CAM_Module, self).__init__()
        self.chanel_in = in_dim
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, height, width = x.size()
        proj_query = x.view(m_batchsize, C, -1)
        proj_key = x.view(m_batchsize, C, -1).permute(0, 2, 1)
        energy = torch.bmm(proj_query, proj_key)
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        attention = self.softmax(energy_new)
        self.seen = {"channel_affinity": attention}
        proj_value = x.view(m_batchsize, C, -1)
        out = torch.bmm(attention, proj_value)
        out = out.view(m_batchsize, C, height, width)
        out = self.gamma * out + x
        return out


# ----------------------------------------------------------------------------- networks
class Block(nn.Module):
    """A basic residual block; ``attn(planes)`` (if given) is set as the attribute ``name``
    after the second BN, as SE / CBAM / ECA / SGE ResNets place it."""

    def __init__(self, cin, cout, stride=1, attn=None, name="se", conv2=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv2(cout) if conv2 else nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.attn_name = name if attn else None
        if attn:
            setattr(self, name, attn(cout))
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attn_name:
            out = getattr(self, self.attn_name)(out)
        return self.relu(out + identity)


class Net(nn.Module):
    """Stem /4, four stages of two blocks (widths 16-64), global pool, fc. ``stages[i]`` gives
    the per-block keyword arguments of stage i; ``after[i]`` a module placed after stage i."""

    def __init__(self, block_kw=None, after=None, num_classes=10, widths=(16, 32, 48, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for i, w in enumerate(widths):
            kw = (block_kw or {}).get(i, {})
            blocks = [Block(cin, w, 1 if i == 0 else 2, **kw), Block(w, w, 1, **kw)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = w
        self.after = nn.ModuleDict({f"after{i + 1}": m for i, m in (after or {}).items()})
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            key = f"after{i + 1}"
            if key in self.after:
                out = self.after[key](x)
                x = out[0] if isinstance(out, tuple) else out
        return self.fc(torch.flatten(self.avgpool(x), 1))


def se_eca_net():
    return Net({0: {"attn": SELayer, "name": "se"}, 1: {"attn": eca_layer, "name": "eca"},
                2: {"attn": SELayer, "name": "se"}})


def cbam_net():
    return Net({i: {"attn": CBAM, "name": "cbam"} for i in range(4)})


def timm_net():
    return Net({0: {"attn": SEModule, "name": "se"}, 1: {"attn": EcaModule, "name": "eca"},
                2: {"attn": CbamModule, "name": "cbam"}, 3: {"attn": GlobalContext, "name": "gc"}})


def sk_net():
    return Net({1: {"conv2": SKAttention}, 2: {"conv2": SelectiveKernel}})


def sge4(c):
    return SpatialGroupEnhance(groups=4)


def sc_conv(c):
    return SCConv(c, c)


def sge_scnet():
    return Net({0: {"attn": SpatialGroupEnhance, "name": "sge"},  # groups == channels (16)
                1: {"attn": sge4, "name": "sge"}, 2: {"conv2": sc_conv}})


def affinity_net():
    return Net(after={1: NONLocalBlock2D(32), 2: Self_Attn(48),
                      3: nn.Sequential(PAM_Module(64), CAM_Module(64))})


# ----------------------------------------------------------------------------- no attention
class Swish(nn.Module):
    def forward(self, x):
        return x.mul(x.sigmoid())


class ActBlock(nn.Module):
    """Activations written out: swish, SiLU, hard swish, quick GELU, GELU."""

    def __init__(self, c, act):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.act = act

    def forward(self, x):
        x = self.conv(x)
        if self.act == "swish":
            return x * torch.sigmoid(x)
        if self.act == "hard_swish":
            return x * F.hardsigmoid(x)
        if self.act == "quick_gelu":
            return x * torch.sigmoid(1.702 * x)
        return self.act(x)


class SwishNet(nn.Module):
    """Only activations that use a sigmoid, and a final softmax: no attention at all."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 4, 1)
        self.body = nn.Sequential(ActBlock(16, "swish"), ActBlock(16, nn.SiLU()),
                                  ActBlock(16, "hard_swish"), ActBlock(16, "quick_gelu"),
                                  ActBlock(16, nn.GELU()), ActBlock(16, Swish()))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.body(self.stem(x))
        return torch.softmax(self.fc(x.mean((2, 3))), dim=1)


def plain_resnet():
    return Net()


NETWORKS = {"se_eca": se_eca_net, "cbam": cbam_net, "timm": timm_net, "sk": sk_net,
            "sge_sc": sge_scnet, "affinity": affinity_net}
