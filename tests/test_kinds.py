"""attnviz.kinds: one spec per kind and one table of blocks, read by capture, maps, metrics,
render and the block factory; unknown names fail with attnviz.errors exceptions."""
import pytest
import torch

import attnviz
from attnviz.models import layers as blocks
from attnviz import kinds
from attnviz.models.layers.tap import Tap
from attnviz.capture.recorder import capture
from attnviz.errors import OptionError, UnknownBlockError, UnknownKindError
from attnviz.capture.maps import to_spatial
from attnviz.scores.metrics import neutral_map

# one lite model per kind, as the block table says
LITE_OF = {"channel": "lite_se", "spatial": "lite_cbam", "kernel": "lite_sk", "group": "lite_sge",
           "affinity": "lite_nonlocal", "channel_affinity": "lite_danet",
           "calibration": "lite_scnet"}
# kinds only discovery records (no attnviz block has them): tests/test_discover_zoo.py
FOUND_ONLY = {"multihead", "directional"}


@pytest.fixture(scope="module")
def records():
    out = {}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for kind, name in LITE_OF.items():
        model = attnviz.create_model(name)
        with torch.no_grad(), capture(model, kinds=kind) as rec:
            model(x)
        out[kind] = rec.maps
    return out


def test_every_kind_and_block_is_specified():
    assert set(kinds.KINDS) == set(LITE_OF) | FOUND_ONLY
    assert set(kinds.SPATIAL_KINDS) == {"spatial", "group", "affinity", "calibration",
                                        "multihead", "directional"}
    assert set(blocks.BLOCKS) == {"se", "cbam", "sk", "sge", "nonlocal", "danet_pam",
                                  "danet_cam", "self_attn", "scconv"}
    for b in kinds.all_blocks():
        assert b.slot in kinds.SLOTS and b.kinds and b.display_name
        assert blocks.get_attn(b.name) is b.block_class()
    assert kinds.block("cbam").kinds == ("channel", "spatial")
    assert kinds.block_names("conv") == ("sk", "scconv")


def test_unknown_names_raise_attnviz_errors():
    with pytest.raises(UnknownKindError, match="unknown kind 'gates'"):
        kinds.get("gates")
    with pytest.raises(UnknownBlockError, match="eca"):
        blocks.get_attn("eca")
    with pytest.raises(UnknownKindError):
        Tap("gates", "se")
    with pytest.raises(UnknownBlockError):
        Tap("channel", "eca")
    with pytest.raises(UnknownKindError, match="declares"):
        Tap("spatial", "se")  # SE's table row has a channel tap only
    model = attnviz.create_model("lite_cbam")
    with pytest.raises(UnknownKindError) as e, capture(model, kinds="gates"):
        pass
    assert isinstance(e.value, OptionError) and isinstance(e.value, ValueError)


def test_specs_validate_reduce_and_neutralise_captured_tensors(records):
    for kind, recs in records.items():
        spec = kinds.get(kind)
        assert recs and all(r.kind == kind for r in recs)
        for r in recs:
            spec.validate(r.tensor, r.meta)  # the shape contract holds for real captures
            m = to_spatial(r)
            assert (m is None) == (not spec.spatial)
            if m is not None:
                assert m.dim() == 3 and m.shape[0] == 2
            n = neutral_map(kind, r.tensor)
            assert n.shape == r.tensor.shape
            if kind in ("affinity", "channel_affinity", "kernel"):  # softmax weights: uniform
                axis = 1 if kind == "kernel" else -1
                torch.testing.assert_close(n.sum(axis), torch.ones_like(n.sum(axis)))
                assert n.std() < 1e-6
            else:
                assert bool((n == 1).all())
        with pytest.raises(OptionError):
            spec.validate(recs[0].tensor[0])  # one dimension short


def test_group_reduce_max_and_affinity_key_grid(records):
    g = records["group"][0]
    torch.testing.assert_close(to_spatial(g, reduce="max"), g.tensor.float().amax(1))
    a = records["affinity"][0]
    kh, kw = a.meta["key_hw"]
    assert to_spatial(a).shape[1:] == (kh, kw)
    with pytest.raises(OptionError, match="keys"):
        kinds.get("affinity").validate(a.tensor[..., :-1], a.meta)


def test_each_kind_has_a_figure(records):
    from attnviz.render.figures import figure_for
    for kind, recs in records.items():
        spec = kinds.get(kind)
        assert callable(spec.figure_builder())
        fig = figure_for(recs[0], max_size=32)
        assert fig.layout.title.text
    with pytest.raises(OptionError, match="unknown figure option"):
        figure_for(records["spatial"][0], max_sise=32)
