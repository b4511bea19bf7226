"""Target and layer choice (attnviz.attribution.choice): class names, layers by real path."""
import pytest
import torch
from torch import nn

import attnviz
from attnviz.attribution.choice import (
    cam_layers,
    class_choices,
    resolve_cam_layer,
    resolve_target,
)
from attnviz.errors import LayerError, TargetError


@pytest.fixture(scope="module")
def lite():
    return attnviz.create_model("lite_cbam", pretrained=True)


def test_targets_by_index_or_name(lite):
    assert resolve_target(lite, None) is None and resolve_target(lite, " ") is None
    assert resolve_target(lite, 4) == 4 and resolve_target(lite, "4") == 4
    assert resolve_target(lite, "Star") == 3 and resolve_target(lite, "3: star") == 3
    assert class_choices(lite)[3] == "3: star"
    for bad in (6, -1, "dog", 1.5, True):
        with pytest.raises(TargetError):
            resolve_target(lite, bad)
    with pytest.raises(TargetError, match="did you mean 'circle'"):
        resolve_target(lite, "circ")


def test_imagenet_names_are_searchable():
    model = attnviz.create_model("cbam_resnet50")  # random weights: only the names matter
    assert resolve_target(model, "tabby cat") == 281
    with pytest.raises(TargetError, match="tabby cat"):
        resolve_target(model, "cat")
    assert len(class_choices(model)) == 1000


def test_layers_are_the_stages_by_path(lite):
    layers = cam_layers(lite)
    assert layers == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert all(not m._forward_hooks for m in lite.modules())
    assert resolve_cam_layer(lite, "layer3") == "layer3" and resolve_cam_layer(lite, "") is None
    with pytest.raises(LayerError, match="layer4"):
        resolve_cam_layer(lite, "layer9")
    # a model whose stages sit in one container: the container's children are listed
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)))
    net.add_module("head", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    attnviz.describe(net, input_size=16)
    from attnviz.capture.discover import cam_layer_of
    assert cam_layers(net)[:2] == ["features.0", "features.2"]
    assert cam_layer_of(net) in cam_layers(net)  # the default layer is always a choice
    att = attnviz.explain(net, torch.rand(16, 16, 3).mul(255).byte().numpy(), "layercam",
                          layer=cam_layers(net)[0])
    assert att.layer == "features.0"


def test_a_box_is_a_mask():
    from attnviz.errors import InspectError
    from attnviz.analysis.inspect import box_mask
    m = box_mask("2, 1, 4, 3", (5, 6))
    assert m.sum() == 9 and m[1:4, 2:5].all() and not m[0].any()
    assert (box_mask((2, 1, 4, 3), (5, 6)) == m).all()
    for bad in ("1, 2, 3", "0, 0, 9, 2", "3, 0, 1, 2", "a, b, c, d", None):
        with pytest.raises(InspectError):
            box_mask(bad, (5, 6))
