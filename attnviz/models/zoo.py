"""Model configurations: the published ImageNet architectures and the lite models for 96-128 px
images. Each entry builds a :class:`ResNet` body with a block and attention given by parameter."""
from __future__ import annotations


from .layers import get_attn
from .residual import BasicBlock, Bottleneck, SCBottleneck, SKBasic, SKBottleneck
from .resnet import ModelInfo, ResNet
from .info import imagenet_classes

R50 = (3, 4, 6, 3)
R101 = (3, 4, 23, 3)
LITE_INPUT = 128
LITE_NUM_CLASSES = 6


def _imagenet(name, block, layers=R50, cam_layer="layer4", **kw):
    def build(num_classes=1000):
        model = ResNet(block, layers, num_classes=num_classes, **kw)
        model.info = ModelInfo(name=name, family="imagenet", input_size=224, resize=256,
                               cam_layer=cam_layer)
        if num_classes == 1000:  # the ImageNet-1k names (also with random weights)
            model.info.classes = list(imagenet_classes())
        return model
    return build


# stand-alone attention factories (channels -> module), from attnviz.kinds' block table
_nonlocal = get_attn("nonlocal")
_self_attn = get_attn("self_attn")


IMAGENET = {
    "resnet50": _imagenet("resnet50", Bottleneck),
    "seresnet50": _imagenet("seresnet50", Bottleneck, block_kwargs={"attn_layer": get_attn("se")}),
    "cbam_resnet50": _imagenet("cbam_resnet50", Bottleneck,
                               block_kwargs={"attn_layer": get_attn("cbam")}),
    "sge_resnet50": _imagenet("sge_resnet50", Bottleneck,
                              block_kwargs={"attn_layer": get_attn("sge"),
                                            "attn_kwargs": {"groups": 64}}),
    "sknet50": _imagenet("sknet50", SKBottleneck, block_kwargs={"groups": 32, "base_width": 4}),
    "scnet50": _imagenet("scnet50", SCBottleneck),
    "scnet101": _imagenet("scnet101", SCBottleneck, R101),
    "nl_resnet50": _imagenet("nl_resnet50", Bottleneck, inserts={3: [(5, _nonlocal)]}),
    "danet_resnet50": _imagenet("danet_resnet50", Bottleneck, strides=(1, 2, 1, 1),
                                dilations=(1, 1, 2, 4), head="danet", head_width=512),
    "sagan_resnet50": _imagenet("sagan_resnet50", Bottleneck, inserts={3: [(-1, _self_attn)]}),
}

# Lite models: stem /4 (two 3x3/2 convs), one residual block per stage, output stride 8, the last
# two stages dilated so the deepest maps are 16x16 at 128 px.
LITE_WIDTHS = (32, 64, 96, 128)
LITE_BODY = dict(layers=(1, 1, 1, 1), widths=LITE_WIDTHS, strides=(1, 2, 1, 1),
                 dilations=(1, 1, 2, 2), stem="lite", stem_width=32)


def _lite(name, block=BasicBlock, description="", **kw):
    def build(num_classes=LITE_NUM_CLASSES):
        body = dict(LITE_BODY)
        body.update(kw)
        model = ResNet(block, num_classes=num_classes, **body)
        # Grad-CAM's default layer is the last stage for every model, the DANet ones included
        # (measured on lite_danet, 1000 fresh images: pointing 0.87 on layer4, 0.85 on head)
        cam = f"layer{len(body['layers'])}"
        model.info = ModelInfo(name=name, family="lite", input_size=LITE_INPUT, cam_layer=cam)
        model.info.card["description"] = description
        return model
    return build


LITE = {
    "lite_resnet": _lite("lite_resnet", description="plain baseline, no attention"),
    "lite_se": _lite("lite_se", block_kwargs={"attn_layer": get_attn("se"),
                                              "attn_kwargs": {"reduction": 8}},
                     description="SE channel gate in every block"),
    "lite_cbam": _lite("lite_cbam", block_kwargs={"attn_layer": get_attn("cbam"),
                                                  "attn_kwargs": {"reduction": 8}},
                       description="CBAM channel + spatial gates in every block"),
    "lite_sk": _lite("lite_sk", SKBasic, block_kwargs={"groups": 4, "sk_kwargs":
                                                       {"min_attn_channels": 16}},
                     description="two-branch SK conv (3x3, 3x3 dilation 2) in every block"),
    "lite_sge": _lite("lite_sge", block_kwargs={"attn_layer": get_attn("sge"),
                                                "attn_kwargs": {"groups": 8}},
                      description="SGE with 8 groups in every block"),
    "lite_nonlocal": _lite("lite_nonlocal", inserts={3: [(-1, _nonlocal)]},
                           description="non-local block after stage 3 (16x16 queries)"),
    "lite_danet": _lite("lite_danet", head="danet", head_width=64,
                        description="DANet head: PAM + CAM on the 16x16 output"),
    "lite_sagan": _lite("lite_sagan", inserts={3: [(-1, _self_attn)]},
                        description="SAGAN self-attention after stage 3"),
    "lite_scnet": _lite("lite_scnet", SCBottleneck, block_kwargs={"expansion": 1},
                        description="self-calibrated convolutions in every block"),
}

# Link-task bodies: the lite body's first three stages, then the attention block and the linear
# head, so that nothing but a linear readout follows the affinity. With the block inside stage 3
# of four (lite_nonlocal), stage 4's convolutions can complete an answer from keys the query only
# ranks (README, "A task whose reader is fixed"); here the query's row itself must fetch it. The
# names and shapes of stem, stages and block match the lite model's, so its checkpoints warm-start
# these bodies (``python -m attnviz.train --init``).
LITE_LAST_BODY = dict(layers=(1, 1, 1), widths=LITE_WIDTHS[:3], strides=(1, 2, 1),
                      dilations=(1, 1, 2))

LINK = {
    "lite_nonlocal_last": _lite("lite_nonlocal_last", inserts={3: [(-1, _nonlocal)]},
                                description="stages 1-3, then the non-local block, then the "
                                            "linear head (16x16 queries)", **LITE_LAST_BODY),
    "lite_sagan_last": _lite("lite_sagan_last", inserts={3: [(-1, _self_attn)]},
                             description="stages 1-3, then SAGAN self-attention, then the linear "
                                         "head (16x16 queries)", **LITE_LAST_BODY),
    "lite_danet_last": _lite("lite_danet_last", head="danet", head_width=64,
                             description="stages 1-3, then the DANet head (PAM + CAM, a 3x3 conv "
                                         "after each), then the linear head (16x16 queries)",
                             **LITE_LAST_BODY),
    "lite_pam_last": _lite("lite_pam_last", head="danet_pam", head_width=64,
                           description="stages 1-3, then the DANet head's position-attention "
                                       "branch alone (PAM, a 3x3 conv), then the linear head",
                           **LITE_LAST_BODY),
}

REGISTRY = {**LITE, **LINK, **IMAGENET}
