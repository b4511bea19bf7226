"""Module labels and the headline map under any naming: timm (``stages.0.blocks.1.attn``),
torchvision (``layer1.0.se``), flat (``features.7.se``) and a wrapper around a ResNet. Labels are
distinct within every (block, kind) group, the app's captions and ablation bars use them, and the
headline comes from the deepest stage whatever the stage is called."""
import numpy as np
import pytest
import torch
from torch import nn

import attnviz
from attnviz.analysis.headline import deepest_stage, headline_record
from attnviz.analysis.labels import (
    group_labels,
    module_labels,
    record_labels,
    stage_keys,
)
from attnviz.models.layers.cbam import CBAM
from attnviz.capture.recorder import capture, hook_count

# ------------------------------------------------------------------------------ pure paths
TIMM = [f"stages.{s}.blocks.{b}.attn" for s in range(4) for b in range(2)]
TORCHVISION = [f"layer{s}.{b}.se" for s in range(1, 5) for b in range(3)]
FLAT = [f"features.{i}.se" for i in (3, 7, 11, 15)]


@pytest.mark.parametrize("paths,expect", [
    (TIMM, {"stages.0.blocks.1.attn": "stages.0.blocks.1", "stages.3.blocks.0.attn":
            "stages.3.blocks.0"}),
    (TORCHVISION, {"layer1.0.se": "layer1.0", "layer4.2.se": "layer4.2"}),
    (FLAT, {"features.7.se": "features.7", "features.15.se": "features.15"}),
    (["backbone.body.layer1.0.se", "backbone.body.layer2.0.se"],
     {"backbone.body.layer1.0.se": "layer1.0"}),
    (["head.sa"], {"head.sa": "head"}),
    (["layer3.1"], {"layer3.1": "layer3.1"}),  # a block inserted into a stage: its index kept
])
def test_labels_are_short_and_distinct_for_any_naming(paths, expect):
    labels = module_labels(paths)
    assert len(set(labels.values())) == len(paths)
    for p, want in expect.items():
        assert labels[p] == want
    assert not any(lab.split(".")[0].isdigit() for lab in labels.values())


def test_labels_keep_what_differs_at_the_end():
    labels = module_labels(["blocks.1.attn", "blocks.1.attn_last", "blocks.2.attn"])
    assert len(set(labels.values())) == 3
    assert labels["blocks.1.attn_last"].endswith("attn_last")


def test_group_labels_label_within_each_group():
    items = [(f"{p}.gate", p, "se") for p in TORCHVISION] + [("head.sa.tap", "head.sa", "sa")]
    labels = group_labels(items)
    assert labels["layer3.1.se.gate"] == "layer3.1" and labels["head.sa.tap"] == "head"


@pytest.mark.parametrize("paths,deepest,n", [
    (TIMM, "stages.3", 4), (TORCHVISION + ["head.nl"], "head", 5), (FLAT, "features.15", 4),
    (["backbone.body.layer1.0.se", "backbone.body.layer4.1.se"], "backbone.body.layer4", 2)])
def test_stages_for_any_naming(paths, deepest, n):
    keys = stage_keys(paths)
    assert len({k for k in keys.values()}) == n
    assert max(keys.values())[1] == deepest


# ------------------------------------------------------------------------------ real captures
class _Block(nn.Module):
    def __init__(self, c, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride, 1)
        self.attn = CBAM(c, reduction=4)

    def forward(self, x):
        return self.attn(torch.relu(self.conv(x)))


class _Stage(nn.Module):
    def __init__(self, c, n, stride):
        super().__init__()
        self.blocks = nn.Sequential(*[_Block(c, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x):
        return self.blocks(x)


class TimmLike(nn.Module):
    """stages.N.blocks.M.attn, as timm's CBAM/ECA ResNets and ConvNeXts name things."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, 2, 1)
        self.stages = nn.Sequential(*[_Stage(c, 2, 2 if s else 1) for s in range(4)])
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


class FlatLike(nn.Module):
    """features.N.attn in one nn.Sequential."""

    def __init__(self, c=8):
        super().__init__()
        layers = [nn.Conv2d(3, c, 3, 2, 1)]
        for _ in range(3):
            layers += [nn.Conv2d(c, c, 3, 2, 1), nn.ReLU(), CBAM(c, reduction=4)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def _records(model, size=64):
    torch.manual_seed(0)
    model.eval()
    with capture(model) as rec, torch.no_grad():
        model(torch.rand(1, 3, size, size))
    assert hook_count(model) == 0
    return rec.maps


@pytest.mark.parametrize("make,deepest_prefix", [(TimmLike, "stages.3."),
                                                 (FlatLike, "features.9.")])
def test_captions_distinct_and_headline_deepest_on_real_captures(make, deepest_prefix):
    from attnviz.app import views as V
    recs = _records(make())
    spatial = [r for r in recs if r.kind == "spatial"]
    caps = [V.map_caption(r, recs) for r in spatial]
    assert len(set(caps)) == len(spatial) >= 3, caps
    labels = record_labels(recs)
    assert len(set(labels.values())) == len(spatial)  # channel and spatial share a label
    head = headline_record(recs)
    assert head is not None and head.layer.startswith(deepest_prefix), head.layer
    assert all(r.layer.startswith(deepest_prefix) for r in deepest_stage(recs))


def test_torchvision_names_match_the_app_captions_users_know():
    from attnviz.app import views as V
    recs = _records(attnviz.create_model("lite_cbam"))
    caps = [V.map_caption(r, recs) for r in recs if r.kind == "spatial"]
    assert caps[0].startswith("layer1.0 · CBAM spatial")
    assert headline_record(recs).layer.startswith("layer4.")


def test_ablation_bars_one_per_module_for_timm_names():
    """gate_ablation on stages.N.blocks.M names: one distinct bar name per ablated tap (the
    bars merged 16 modules into 2 before)."""
    from attnviz.scores.metrics import gate_ablation
    model = TimmLike().eval()
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    attnviz.describe(model, input_size=64, classes=[f"c{i}" for i in range(5)])
    from attnviz.app.experiment_tab import ablation_names
    rows = gate_ablation(model, img)
    names = ablation_names(rows)
    assert len(rows) == 16 and len(set(names)) == 16, names
    assert "stages.2.blocks.1 · CBAM spatial" in names


def test_channel_gate_chart_names_each_module_by_its_label():
    from attnviz.render.figures import channel_gate_bars
    recs = [r for r in _records(TimmLike()) if r.kind == "channel"]
    fig = channel_gate_bars(recs)
    names = [t.name for t in fig.data]
    assert len(set(names)) == len(recs) == 8
    assert names[1].startswith("stages.0.blocks.1 (")


def test_headline_skips_a_deeper_stage_without_a_spatial_map():
    """DANet's head: the position map (head.sa) runs before the channel affinity (head.sc),
    which has no spatial layout; the headline is the position map, not nothing."""
    model = attnviz.create_model("lite_danet").eval()
    with torch.no_grad(), capture(model) as rec:
        model(torch.randn(1, 3, 128, 128))
    kinds_seen = [r.kind for r in rec.maps]
    assert kinds_seen[-1] == "channel_affinity"  # the deepest record is not spatial
    head = headline_record(rec.maps)
    assert head is not None and head.tap.startswith("head.sa") and head.kind == "affinity"
