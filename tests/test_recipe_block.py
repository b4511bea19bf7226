"""The recipe of docs/architecture.md, "Adding an attention block", followed inside this file
only: an ECA block (Wang et al., "ECA-Net", CVPR 2020) with a ``channel`` tap is defined here,
gets one row in the block table and one zoo entry, and is then captured, rendered, ablated and
inspected by the unchanged library."""
import numpy as np
import pytest
import torch
from torch import nn

import attnviz
from attnviz import kinds
from attnviz import metrics
from attnviz.models.layers import Tap, get_attn
from attnviz.capture.recorder import capture
from attnviz.models import zoo
from attnviz.render.figures import figure_for, figures_for
from attnviz.render.overlay import caption


class ECA(nn.Module):
    """Global average pool -> 1-D conv of size k across channels -> sigmoid -> rescale."""

    attr_name = "eca"

    def __init__(self, channels: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.gate_tap = Tap("channel", "eca")

    def forward(self, x):
        z = self.conv(x.mean((2, 3))[:, None])[:, 0]  # (B, C)
        gate = self.gate_tap(torch.sigmoid(z))
        return x * gate[:, :, None, None]


@pytest.fixture
def eca_model(monkeypatch):
    # step 1: one row in the block table
    kinds.register_block(kinds.BlockSpec("eca", "ECA", ECA, kinds.GATE, ("channel",)))
    try:
        # step 2: one zoo entry (a lite body with the gate in every residual block)
        monkeypatch.setitem(zoo.REGISTRY, "lite_eca", zoo._lite(
            "lite_eca", block_kwargs={"attn_layer": get_attn("eca")},
            description="ECA channel gate in every block"))
        torch.manual_seed(0)
        model = attnviz.create_model("lite_eca")
        with torch.no_grad():  # a gate that differs between channels, so ablation shows
            for m in model.modules():
                if isinstance(m, ECA):
                    m.conv.weight.copy_(torch.tensor([[[2.0, -3.0, 2.0]]]))
        yield model
    finally:
        kinds.unregister_block("eca")


def test_eca_block_through_the_library(eca_model):
    model = eca_model
    assert "eca" in kinds.BLOCKS and kinds.block_display_name("eca") == "ECA"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    # captured
    with torch.no_grad(), capture(model, blocks="eca") as rec:
        out = model(x)
    assert [r.kind for r in rec.maps] == ["channel"] * 4 and {r.block for r in rec.maps} == {"eca"}
    for r in rec.maps:
        kinds.of(r).validate(r.tensor, r.meta)
        assert r.tensor.dim() == 2 and 0 <= r.tensor.min() <= r.tensor.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), out)  # capture changes nothing
    # rendered
    assert "ECA channel gate" in caption(rec.maps[0])
    figs = figures_for(rec.maps)
    assert list(figs) == ["channel"] and len(figs["channel"]) == 1
    assert "ECA" in figure_for(rec.maps[-1]).to_json()
    # ablated: each ECA tap neutralised in turn, the model back as it was afterwards
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    rows = metrics.gate_ablation(model, img)
    assert [r["block"] for r in rows] == ["eca"] * 4
    assert any(abs(r["delta_logit"]) > 1e-4 for r in rows)
    # inspected
    a = attnviz.inspect(model, img, attributions=())
    assert {(r.block, r.kind) for r in a.maps} == {("eca", "channel")}
    assert a.spatial_records == []  # a channel gate has no spatial layout


def test_unregistered_block_is_refused():
    with pytest.raises(attnviz.errors.UnknownBlockError):
        ECA(8)


# ------------------------------------------------------------------ "Adding a kind", in this file
class RowGate(nn.Module):
    """A coordinate-attention-like gate along the image height: one gate per (channel, row)."""

    attr_name = "rowgate"

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv1d(channels, channels, 1)
        self.row_tap = Tap("row_gate", "rowgate")

    def forward(self, x):
        gate = self.row_tap(torch.sigmoid(self.fc(x.mean(3))))  # (B, C, H)
        return x * gate[..., None]


@pytest.fixture
def row_gate_model(monkeypatch):
    kinds.register(kinds.KindSpec(
        "row_gate", "row gate", "(B, C, H)", 3, "Row gates",
        reduce=lambda t, meta, how: (t.amax(1) if how == "max" else t.mean(1))[..., None],
        value_label="mean row gate", figure="spatial_heatmap",
        caption_grid=lambda shape, meta: f"{shape[-1]} rows"))
    kinds.register_block(kinds.BlockSpec("rowgate", "row", RowGate, kinds.GATE, ("row_gate",)))
    try:
        monkeypatch.setitem(zoo.REGISTRY, "lite_rowgate", zoo._lite(
            "lite_rowgate", block_kwargs={"attn_layer": get_attn("rowgate")}))
        torch.manual_seed(0)
        yield attnviz.create_model("lite_rowgate")
    finally:
        kinds.unregister_block("rowgate")
        kinds.unregister("row_gate")


def test_new_kind_through_the_library(row_gate_model):
    model = row_gate_model
    assert "row_gate" in kinds.SPATIAL_KINDS
    img = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a = attnviz.inspect(model, img, attributions=())
    assert [r.kind for r in a.maps] == ["row_gate"] * 4 and len(a.spatial_records) == 4
    r = a.maps[-1]
    assert a.spatial_map(r).shape == (64, 64)  # its reduction drawn over the image
    assert caption(r).endswith(f"row row gate · {r.tensor.shape[-1]} rows")
    assert "mean row gate" in figure_for(r).to_json()
    rows = metrics.gate_ablation(model, img, neutral="mean")
    assert [x["kind"] for x in rows] == ["row_gate"] * 4
    with torch.no_grad(), capture(model, kinds="row_gate") as rec:
        model(torch.zeros(1, 3, 64, 64))
    assert len(rec.maps) == 4


@pytest.mark.slow
def test_a_kind_registered_before_the_demo_is_built_gets_its_tab(row_gate_model):
    gr = pytest.importorskip("gradio")
    from attnviz.app import build_demo
    from attnviz.app import inspect_views as IV
    demo = build_demo()
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert "Row gates" in tabs and "Affinity" in tabs
    assert "row_gate" in {k for t in IV.KIND_TABS for k in t.kinds}
    assert "gal_row_gate" in IV.KIND_OUTPUTS
    demo.close()
