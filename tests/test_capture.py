"""Capture: records in forward order with documented shapes and valid values, no hook left behind
(also after an exception), train/eval state and outputs unchanged, threads kept apart, filters,
and the memory budget for affinity matrices."""
import threading

import pytest
import torch

import attnviz
from attnviz.models.layers.tap import Tap, iter_taps
from attnviz.capture.recorder import capture, hook_count, intervene, list_taps
from attnviz.errors import CaptureError

# what each model records (block, kind) — every kind and every block is covered
EXPECTED = {
    "lite_resnet": set(),
    "lite_se": {("se", "channel")},
    "lite_cbam": {("cbam", "channel"), ("cbam", "spatial")},
    "lite_sk": {("sk", "kernel")},
    "lite_sge": {("sge", "group")},
    "lite_nonlocal": {("nonlocal", "affinity")},
    "lite_danet": {("danet_pam", "affinity"), ("danet_cam", "channel_affinity")},
    "lite_sagan": {("self_attn", "affinity")},
    "lite_scnet": {("scconv", "calibration")},
    "seresnet50": {("se", "channel")},
    "cbam_resnet50": {("cbam", "channel"), ("cbam", "spatial")},
    "sge_resnet50": {("sge", "group")},
    "sknet50": {("sk", "kernel")},
    "scnet50": {("scconv", "calibration")},
    "nl_resnet50": {("nonlocal", "affinity")},
    "danet_resnet50": {("danet_pam", "affinity"), ("danet_cam", "channel_affinity")},
    "sagan_resnet50": {("self_attn", "affinity")},
}
SIZE = {"scnet50": 128}  # SCConv's 4x4 pooling needs 4x4 maps in layer4


def _input(name, batch=2, seed=0):
    size = 96 if name.startswith("lite") else SIZE.get(name, 64)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _check_record(rec, batch):
    """The documented shape and valid values of one record."""
    t = rec.tensor.float()
    assert not rec.tensor.requires_grad and t.shape[0] == batch
    assert torch.isfinite(t).all(), rec
    ones = torch.ones(())
    if rec.kind == "channel":
        assert t.dim() == 2
    elif rec.kind == "spatial":
        assert t.dim() == 3
    elif rec.kind in ("group", "calibration"):
        assert t.dim() == 4
    elif rec.kind == "kernel":
        assert t.dim() == 3 and t.shape[1] >= 2
        torch.testing.assert_close(t.sum(1), ones.expand(t.shape[0], t.shape[2]))
    elif rec.kind == "affinity":
        qh, qw = rec.meta["query_hw"]
        kh, kw = rec.meta["key_hw"]
        assert t.shape[1:] == (qh * qw, kh * kw)
        torch.testing.assert_close(t.sum(-1), ones.expand(t.shape[:2]))
    elif rec.kind == "channel_affinity":
        assert t.dim() == 3 and t.shape[1] == t.shape[2]
        torch.testing.assert_close(t.sum(-1), ones.expand(t.shape[:2]))
    else:
        raise AssertionError(f"unknown kind {rec.kind}")
    assert t.min() >= 0 and t.max() <= 1, rec


def _forward_order(model, x):
    """Tap names in the order they run, seen by plain hooks of our own."""
    order, handles = [], []
    for name, tap in iter_taps(model):
        handles.append(tap.register_forward_hook(lambda m, a, o, name=name: order.append(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_records_every_tap_in_forward_order(name):
    model = attnviz.create_model(name)
    x = _input(name)
    with torch.no_grad(), capture(model) as rec:
        model(x)
    assert {(r.block, r.kind) for r in rec.maps} == EXPECTED[name]
    assert [r.tap for r in rec.maps] == _forward_order(model, x)
    assert len(rec.maps) == len(list_taps(model))
    modules = dict(model.named_modules())
    for r in rec.maps:
        _check_record(r, 2)
        assert r.layer == r.tap.rsplit(".", 1)[0] and r.layer in modules
        assert isinstance(modules[r.tap], Tap) and modules[r.tap].kind == r.kind
    assert hook_count(model) == 0


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_record_shapes_of_imagenet_models():
    model = attnviz.create_model("nl_resnet50")
    with torch.no_grad(), capture(model) as rec:
        model(torch.randn(1, 3, 128, 128))
    (aff,) = rec.maps
    assert aff.layer == "layer3.5" and aff.shape == (1, 64, 16)
    assert aff.meta["query_hw"] == (8, 8) and aff.meta["key_hw"] == (4, 4)
    model = attnviz.create_model("danet_resnet50")
    with torch.no_grad(), capture(model) as rec:
        model(torch.randn(1, 3, 64, 64))
    assert [(r.layer, r.shape) for r in rec.maps] == [("head.sa", (1, 64, 64)),
                                                      ("head.sc", (1, 512, 512))]
    model = attnviz.create_model("sknet50")
    with torch.no_grad(), capture(model, layers="layer4.0") as rec:
        model(torch.randn(1, 3, 64, 64))
    assert [(r.layer, r.shape) for r in rec.maps] == [("layer4.0.conv2.attn", (1, 2, 1024))]


def test_cbam_records_both_gates_with_their_grid():
    model = attnviz.create_model("lite_cbam")
    with torch.no_grad(), capture(model) as rec:
        model(torch.randn(1, 3, 128, 128))
    assert [(r.layer, r.kind, r.shape) for r in rec.maps[:2]] == [
        ("layer1.0.cbam.ChannelGate", "channel", (1, 32)),
        ("layer1.0.cbam.SpatialGate", "spatial", (1, 32, 32))]
    assert rec.maps[-1].shape == (1, 16, 16)


def test_records_are_detached_copies_of_what_ran():
    model = attnviz.create_model("lite_se")
    x = torch.randn(1, 3, 96, 96, requires_grad=True)
    with capture(model) as rec:
        model(x).sum().backward()
    assert all(not r.tensor.requires_grad for r in rec.maps)
    assert x.grad is not None


# -- hooks, state and outputs ------------------------------------------------------------------
def test_no_hook_remains_after_the_block_or_an_exception():
    model = attnviz.create_model("lite_cbam")
    assert hook_count(model) == 0
    with capture(model):
        assert hook_count(model) == len(list_taps(model))
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model):
            model(torch.randn(1, 3, 96, 96))
            raise RuntimeError("boom")
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError):  # the model itself fails half-way (wrong channel count)
        with capture(model):
            model(torch.randn(1, 4, 96, 96))
    assert hook_count(model) == 0
    with pytest.raises(ValueError):
        with intervene(model, {"layer1.0.cbam.SpatialGate.spatial_tap": torch.ones_like}):
            raise ValueError
    assert hook_count(model) == 0


def test_bad_options_leave_no_hook():
    model = attnviz.create_model("lite_cbam")
    for kwargs in ({"kinds": "attention"}, {"layers": "layer9"}, {"max_queries": 0},
                   {"budget_mb": 0}):
        with pytest.raises(CaptureError):
            with capture(model, **kwargs):
                pass
    with pytest.raises(CaptureError, match="no attention tap"):
        with intervene(model, {"layer1.0.se.gate_tap": torch.ones_like}):
            pass
    assert hook_count(model) == 0


def test_train_eval_state_is_unchanged():
    model = attnviz.create_model("lite_cbam").train()
    with capture(model):
        model(torch.randn(2, 3, 96, 96))
    assert all(m.training for m in model.modules())
    model.eval()
    model.layer2[0].bn1.train()  # a mixed state comes back as it was
    before = {n: m.training for n, m in model.named_modules()}
    with capture(model):
        model.train()  # even if someone flips it inside the block
        model(torch.randn(2, 3, 96, 96))
    assert {n: m.training for n, m in model.named_modules()} == before


@pytest.mark.parametrize("name", ["lite_cbam", "lite_sk", "lite_sge", "lite_nonlocal", "lite_danet",
                                  "lite_scnet", "seresnet50", "nl_resnet50"])
def test_outputs_are_bit_identical_with_and_without_capture(name):
    model = attnviz.create_model(name)
    x = _input(name)
    with torch.no_grad():
        plain = model(x)
        with capture(model, affinity_dtype=torch.float16, max_queries=4):
            captured = model(x)
        again = model(x)
    assert torch.equal(plain, captured) and torch.equal(plain, again)


def test_intervene_replaces_a_gate_and_only_inside_the_block():
    model = attnviz.create_model("lite_cbam")
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        plain = model(x)
        with intervene(model, {"layer2.0.cbam.SpatialGate.spatial_tap": torch.ones_like}):
            with capture(model, layers="layer2.0.cbam.SpatialGate") as rec:
                ablated = model(x)
        after = model(x)
    assert not torch.equal(plain, ablated) and torch.equal(plain, after)
    assert rec.maps[0].tensor.eq(1).all()  # capture sees the replaced gate


def test_nested_captures_both_record():
    model = attnviz.create_model("lite_se")
    with torch.no_grad(), capture(model) as outer:
        with capture(model, layers="layer1") as inner:
            model(torch.randn(1, 3, 96, 96))
        model(torch.randn(1, 3, 96, 96))
    assert len(inner.maps) == 1 and len(outer.maps) == 8


# -- threads -----------------------------------------------------------------------------------
def test_threads_capturing_on_one_shared_model_stay_apart():
    model = attnviz.create_model("lite_nonlocal")
    inputs = [torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    refs = []
    for x in inputs:
        with torch.no_grad(), capture(model) as rec:
            model(x)
        refs.append([r.tensor for r in rec.maps])
    assert not torch.allclose(refs[0][0], refs[1][0], atol=1e-3)  # the test can tell them apart
    iterations, errors = 25, []
    barrier = threading.Barrier(3)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(iterations):
                with torch.no_grad(), capture(model) as rec:
                    model(inputs[i])
                got = [r.tensor for r in rec.maps]
                assert len(got) == len(refs[i]), f"thread {i}: {len(got)} records"
                for g, r in zip(got, refs[i]):
                    torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def bystander():  # forward passes without capture must not show up anywhere
        barrier.wait()
        with torch.no_grad():
            for _ in range(iterations):
                model(torch.randn(1, 3, 96, 96))

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    threads.append(threading.Thread(target=bystander))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]
    assert hook_count(model) == 0


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_threads_entering_and_leaving_captures_at_a_high_rate():
    """Hooks are added and removed while other threads run forward passes through the same taps
    (PyTorch may then call a just-removed hook without its kwargs): nothing may fail or leak."""
    model = attnviz.create_model("lite_se")
    x = torch.randn(1, 3, 32, 32)
    errors = []

    def worker():
        try:
            for _ in range(300):
                with torch.no_grad(), capture(model) as rec:
                    model(x)
                assert len(rec.maps) == 4, len(rec.maps)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    intra_op = torch.get_num_threads()
    torch.set_num_threads(1)  # short forward passes: more hook changes while others iterate
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        torch.set_num_threads(intra_op)
    assert not errors, repr(errors[0])
    assert hook_count(model) == 0


# -- filters -----------------------------------------------------------------------------------
def test_layer_kind_and_block_filters():
    model = attnviz.create_model("lite_cbam")
    x = torch.randn(1, 3, 96, 96)

    def taps(**kwargs):
        with torch.no_grad(), capture(model, **kwargs) as rec:
            model(x)
        return [r.tap for r in rec.maps]

    stages = range(1, 5)
    assert taps(kinds="spatial") == [f"layer{i}.0.cbam.SpatialGate.spatial_tap" for i in stages]
    assert taps(kinds=["channel"]) == [f"layer{i}.0.cbam.ChannelGate.gate_tap" for i in stages]
    assert taps(layers="layer2") == ["layer2.0.cbam.ChannelGate.gate_tap",
                                     "layer2.0.cbam.SpatialGate.spatial_tap"]
    assert taps(layers=["layer1.0.cbam.SpatialGate", "layer4*ChannelGate"]) == [
        "layer1.0.cbam.SpatialGate.spatial_tap", "layer4.0.cbam.ChannelGate.gate_tap"]
    assert taps(layers="layer3", kinds="spatial") == ["layer3.0.cbam.SpatialGate.spatial_tap"]
    assert taps(blocks="se") == []
    danet = attnviz.create_model("lite_danet")
    with torch.no_grad(), capture(danet, blocks="danet_cam") as rec:
        danet(x)
    assert [r.kind for r in rec.maps] == ["channel_affinity"]
    with pytest.raises(CaptureError, match="unknown kind"):
        taps(kinds="gate")
    with pytest.raises(CaptureError, match="matches no attention tap"):
        taps(layers="layer2.1")


# -- memory budget -----------------------------------------------------------------------------
def _affinity(model, x, **kwargs):
    with torch.no_grad(), capture(model, kinds="affinity", **kwargs) as rec:
        model(x)
    return rec


def test_float16_affinities():
    model, x = attnviz.create_model("lite_nonlocal"), torch.randn(1, 3, 128, 128)
    full = _affinity(model, x).maps[0]
    rec = _affinity(model, x, affinity_dtype=torch.float16)
    (half,) = rec.maps
    assert half.tensor.dtype == torch.float16 and half.meta["dtype"] == "float16"
    assert full.shape == half.shape == (1, 256, 64)
    torch.testing.assert_close(half.tensor.float(), full.tensor, atol=1e-3, rtol=1e-2)
    assert rec.memory["bytes_full"] == 256 * 64 * 4 and rec.memory["bytes_kept"] == 256 * 64 * 2
    assert rec.memory["affinity_dtype"] == "torch.float16"


def test_max_queries_keeps_evenly_spaced_rows():
    model, x = attnviz.create_model("lite_nonlocal"), torch.randn(1, 3, 128, 128)
    full = _affinity(model, x).maps[0]
    rec = _affinity(model, x, max_queries=10)
    (capped,) = rec.maps
    idx = capped.meta["query_index"]
    assert capped.shape == (1, 10, 64) and len(idx) == 10 and idx[0] == 0 and idx[-1] == 255
    assert torch.equal(capped.tensor, full.tensor[:, idx])
    assert capped.meta["query_hw"] == (16, 16)  # the grid is still described
    assert rec.memory["affinity_capped"] == 1 and rec.memory["max_queries"] == 10
    assert rec.memory["bytes_kept"] == 10 * 64 * 4


def test_budget_mb_is_honoured_and_reported():
    model, x = attnviz.create_model("lite_danet"), torch.randn(1, 3, 128, 128)
    budget_mb = 0.05  # the PAM affinity is 256x256 float32 = 0.25 MB; the CAM one 16 KB
    with torch.no_grad(), capture(model, budget_mb=budget_mb) as rec:
        model(x)
    pam, cam = rec.maps
    budget = budget_mb * 2 ** 20
    assert pam.tensor.dtype == torch.float16 and pam.meta["bytes_kept"] <= budget
    assert pam.shape[2] == 256 and pam.shape[1] < 256 and "query_index" in pam.meta
    assert pam.meta["bytes_full"] == 256 * 256 * 4
    assert cam.tensor.dtype == torch.float32 and cam.shape == (1, 64, 64)  # under budget: as is
    assert rec.memory["budget_mb"] == budget_mb and rec.memory["affinity_capped"] == 1
    assert rec.memory["bytes_kept"] == pam.meta["bytes_kept"] + cam.meta["bytes_kept"]
    assert rec.memory["bytes_full"] == 256 * 256 * 4 + 64 * 64 * 4


def test_a_tap_added_after_a_capture_is_recorded():
    """Hook points are cached per model; registering a submodule anywhere invalidates the cache."""
    model = attnviz.create_model("lite_se")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), capture(model) as rec:
        model(x)
    assert len(rec.maps) == 4
    block = model.layer1[0]
    block.extra_tap = Tap("channel", "se")
    forward = block.forward
    block.forward = lambda t: (block.extra_tap(t.mean((2, 3))), forward(t))[1]
    with torch.no_grad(), capture(model) as rec:
        model(x)
    assert len(rec.maps) == 5 and rec.maps[0].tap == "layer1.0.extra_tap"
