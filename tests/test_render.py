"""Renderings: overlays, scales and every figure builder on every kind of capture record."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import attnviz
from attnviz.capture.recorder import AttentionMap
from attnviz.capture.maps import affinity_row, to_spatial
from attnviz.render import (Normaliser, affinity_explorer, affinity_overlay, bars_figure,
                            channel_affinity_heatmap, channel_gate_bars, channel_order, colorbar,
                            colorize, figure_for, figure_kb, figures_for, fit, group_factor_grid,
                            kernel_selection_bars, line_figure, overlay, overlay_record,
                            shared_range, shared_zrange, spatial_heatmap, to_png_bytes,
                            widen, with_colorbar)
from attnviz.render.figures import displayed_values
from attnviz.render.static import figure_png

LITE = ("lite_se", "lite_cbam", "lite_sk", "lite_sge", "lite_nonlocal", "lite_danet",
        "lite_sagan", "lite_scnet")
KINDS = {"channel", "spatial", "group", "kernel", "affinity", "channel_affinity", "calibration"}


@pytest.fixture(scope="module")
def records():
    """Records of one 128 px forward pass of every lite model with random weights."""
    torch.manual_seed(0)
    out = []
    x = torch.randn(1, 3, 128, 128)
    for name in LITE:
        model = attnviz.create_model(name)
        with torch.no_grad(), attnviz.capture(model) as rec:
            model(x)
        out += rec.maps
    assert {r.kind for r in out} == KINDS
    return out


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)  # 300x200: not square, not 128


def check(fig):
    assert len(fig.data) > 0 and all(_has_values(t) for t in fig.data)
    assert fig.layout.title.text
    for axis in ("xaxis", "yaxis"):  # labelled axes (in a grid, at least one of them)
        assert any(fig.layout[k].title.text for k in fig.layout if k.startswith(axis)), axis
    assert figure_kb(fig) < 1024


def _has_values(trace):
    vals = trace.z if trace.type == "heatmap" else trace.y
    return vals is not None and len(vals) > 0


def zranges(fig) -> set:
    """The (zmin, zmax) pairs of a figure's colour scales (heatmaps and shared colour axes)."""
    out = set()
    for t in fig.data:
        if t.type == "heatmap":
            ca = fig.layout[t.coloraxis] if t.coloraxis else None
            out.add((ca.cmin, ca.cmax) if ca else (t.zmin, t.zmax))
    return out


def one_range(fig) -> tuple:
    (r,) = zranges(fig)
    return r


def nearest_query(rec, x, y, hw):
    """Row index in rec.tensor of the query cell holding image pixel (x, y) (capped: the kept
    query nearest it), computed independently of the renderer."""
    qh, qw = rec.meta["query_hw"]
    q = min(int(y / hw[0] * qh), qh - 1) * qw + min(int(x / hw[1] * qw), qw - 1)
    if "query_index" in rec.meta:
        kept = np.asarray(rec.meta["query_index"])
        return int(np.argmin(np.abs(kept - q)))
    return q


# -- figures ----------------------------------------------------------------------------------
def test_figure_for_every_record(records):
    for rec in records:
        fig = figure_for(rec, qx=40, qy=100, image_hw=(128, 128))
        check(fig)
        assert fig.layout.hovermode is not False
        assert all(t.hovertemplate or t.hoverinfo == "skip" for t in fig.data)


def test_spatial_heatmap_on_spatial_kinds(records):
    for rec in records:
        if rec.kind in ("spatial", "group", "calibration", "affinity"):
            fig = spatial_heatmap(rec)
            check(fig)
            assert fig.layout.yaxis.autorange == "reversed"
            assert "x" in fig.data[0].hovertemplate and "y" in fig.data[0].hovertemplate
    fig = spatial_heatmap(np.random.rand(20, 30), "plain array")
    check(fig)
    assert np.asarray(fig.data[0].z).shape == (20, 30)


def test_channel_gates_sorted_with_selector(records):
    chans = [r for r in records if r.kind == "channel"]
    fig = channel_gate_bars(chans)
    check(fig)
    assert len(fig.data) == len(chans) and fig.layout.updatemenus
    y = np.asarray(fig.data[0].y)
    assert np.all(np.diff(y) <= 0)
    gate = chans[0].tensor[0].numpy()
    np.testing.assert_allclose(gate[np.asarray(fig.data[0].customdata)], y, rtol=1e-6)
    check(channel_gate_bars(np.random.rand(10), "a vector"))


def test_kernel_selection(records):
    ks = [r for r in records if r.kind == "kernel"]
    fig = kernel_selection_bars(ks)
    check(fig)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == ks[0].shape[1]
    total = sum(np.asarray(b.y, float) for b in bars)
    np.testing.assert_allclose(total, 1.0, atol=1e-4)  # shares of a softmax over branches
    assert any(t.type == "box" for t in fig.data)


def test_group_grid_shares_one_scale(records):
    rec = next(r for r in records if r.kind == "group")
    fig = group_factor_grid(rec, max_groups=4)
    check(fig)
    assert len(fig.data) == 5  # the mean and 4 groups
    assert {t.coloraxis for t in fig.data} == {"coloraxis"}
    ca = fig.layout.coloraxis
    assert ca.cmin < ca.cmax


def test_affinity_explorer_marks_query(records):
    rec = next(r for r in records if r.kind == "affinity" and r.block == "nonlocal")
    fig = affinity_explorer(rec, qx=100, qy=20, image_hw=(128, 128))
    check(fig)
    z = np.asarray(fig.data[0].z)
    assert z.shape == tuple(rec.meta["key_hw"])
    marker = fig.data[1]
    kh, kw = rec.meta["key_hw"]
    assert marker.x[0] == pytest.approx(100 / 128 * kw - 0.5)
    assert marker.y[0] == pytest.approx(20 / 128 * kh - 0.5)
    # the row shown is the query's own row
    qh, qw = rec.meta["query_hw"]
    q = int(20 / 128 * qh) * qw + int(100 / 128 * qw)
    np.testing.assert_allclose(z.ravel(), rec.tensor[0, q].numpy(), rtol=1e-6)


def test_big_matrices_stay_small():
    g = torch.Generator().manual_seed(0)
    cam = AttentionMap("head.sc", "head.sc.tap", "danet_cam", "channel_affinity",
                       torch.randn(1, 512, 512, generator=g).softmax(-1))
    fig = channel_affinity_heatmap(cam, max_size=128)
    check(fig)
    assert np.asarray(fig.data[0].z).shape == (128, 128)
    # block means of a row-stochastic matrix reordered: every row still averages 1/C
    np.testing.assert_allclose(np.asarray(fig.data[0].z).mean(1), 1 / 512, rtol=1e-4)
    pam = AttentionMap("head.sa", "head.sa.tap", "danet_pam", "affinity",
                       torch.randn(1, 784, 784, generator=g).softmax(-1),
                       {"query_hw": (28, 28), "key_hw": (28, 28)})
    for fig in (affinity_explorer(pam, 300, 10, (448, 448)), spatial_heatmap(pam),
                figure_for(pam)):
        check(fig)
    capped = AttentionMap("x", "x.tap", "nonlocal", "affinity", pam.tensor[:, ::7],
                          {"query_hw": (28, 28), "key_hw": (28, 28),
                           "query_index": torch.arange(0, 784, 7)})
    check(affinity_explorer(capped, 50, 50, (100, 100)))


def test_many_layers_many_channels_stay_small():
    """ImageNet-sized models: 16 gate layers of 2048 channels, 16 SK layers of 1024, 64 groups
    at 112x112, calibration at 112x112, a 3136x784 affinity: every figure under 1 MB."""
    g = torch.Generator().manual_seed(0)

    def rec(kind, block, t, **meta):
        return AttentionMap(f"layer{rec.n}.0.{block}", f"layer{rec.n}.0.{block}.tap", block, kind,
                            t, meta)
    rec.n = 0
    gates = [rec("channel", "se", torch.rand(1, 2048, generator=g)) for _ in range(16)]
    kernels = [rec("kernel", "sk", torch.rand(1, 2, 1024, generator=g).softmax(1))
               for _ in range(16)]
    fig = kernel_selection_bars(kernels)
    check(fig)
    boxes = [t for t in fig.data if t.type == "box"]
    assert len(boxes) == 16 and all(len(b.y) <= 256 for b in boxes)
    w = kernels[0].tensor[0, 0].numpy()  # rank sample keeps the extremes
    assert np.asarray(boxes[0].y).min() == w.min() and np.asarray(boxes[0].y).max() == w.max()
    for fig in (channel_gate_bars(gates),
                group_factor_grid(rec("group", "sge", torch.rand(1, 64, 112, 112, generator=g))),
                figure_for(rec("calibration", "scconv", torch.rand(1, 64, 112, 112, generator=g))),
                figure_for(rec("affinity", "nonlocal", torch.rand(1, 3136, 784, generator=g),
                               query_hw=(56, 56), key_hw=(28, 28)), qx=10, qy=200,
                           image_hw=(224, 224)),
                spatial_heatmap(np.random.rand(1000, 700))):
        check(fig)


def test_kernel_three_branches_every_branch_spread():
    g = torch.Generator().manual_seed(0)
    ks = [AttentionMap(f"layer{i}.0.attn", f"layer{i}.0.attn", "sk", "kernel",
                       torch.rand(1, 3, 40, generator=g).softmax(1)) for i in range(1, 4)]
    fig = kernel_selection_bars(ks, branch_names=["3x3", "5x5", "7x7"])
    check(fig)
    bars = [t for t in fig.data if t.type == "bar"]
    np.testing.assert_allclose(sum(np.asarray(b.y, float) for b in bars), 1.0, atol=1e-5)
    boxes = [t for t in fig.data if t.type == "box"]
    assert len(boxes) == 9 and {b.offsetgroup for b in boxes} == {"0", "1", "2"}
    b = boxes[4]  # layer 2, branch 1: every channel, hover names the channel
    np.testing.assert_allclose(np.asarray(b.y), ks[1].tensor[0, 1].numpy(), rtol=1e-6)
    assert list(b.customdata) == list(range(40))
    png = figure_png(fig)
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).std() > 5


def test_channel_order_groups_similar_channels():
    rng = np.random.default_rng(0)
    block = np.kron(np.eye(4), np.ones((8, 8))) + 0.01 * rng.random((32, 32))
    perm = rng.permutation(32)
    m = block[perm][:, perm]
    m /= m.sum(1, keepdims=True)
    group = (perm // 8)  # block of each shuffled channel
    order = channel_order(m, "pca")
    assert sorted(order) == list(range(32))
    assert np.count_nonzero(np.diff(group[order])) == 3, group[order]  # four contiguous blocks
    order = channel_order(m, "argmax")
    assert sorted(order) == list(range(32))
    assert np.all(np.diff(m.argmax(1)[order]) >= 0)  # rows sorted by their most attended channel
    assert list(channel_order(m, None)) == list(range(32))


def test_figures_for_groups_and_shares(records):
    figs = figures_for(records, shared=True)
    assert set(figs) == KINDS
    assert len(figs["channel"]) == 1 and len(figs["kernel"]) == 1
    spatial = figs["spatial"]
    assert len({(f.data[0].zmin, f.data[0].zmax) for f in spatial}) == 1
    lo, hi = shared_range([r for r in records if r.kind == "spatial"])
    assert (spatial[0].data[0].zmin, spatial[0].data[0].zmax) == pytest.approx((lo, hi))
    per_map = figures_for([r for r in records if r.kind == "spatial"])["spatial"]
    assert len({(f.data[0].zmin, f.data[0].zmax) for f in per_map}) > 1
    for group in figs.values():
        for fig in group:
            check(fig)


def test_shared_scale_every_kind(records):
    """Shared: one (zmin, zmax) for every figure of a kind, covering what each shows. Per map:
    each figure spans its own map's range."""
    hw = (200, 300)
    q = dict(qx=250, qy=40, image_hw=hw)
    shared = figures_for(records, shared=True, **q)
    per_map = figures_for(records, **q)
    for kind in ("spatial", "group", "calibration", "affinity", "channel_affinity"):
        recs = [r for r in records if r.kind == kind]
        ranges = set().union(*(zranges(f) for f in shared[kind]))
        assert len(ranges) == 1, (kind, ranges)
        want = widen(*shared_range([displayed_values(r, **q) for r in recs]))
        assert ranges.pop() == pytest.approx(want), kind  # (a constant kind: widened)
        for rec, fig in zip(recs, per_map[kind]):
            vals = displayed_values(rec, **q)
            if kind == "channel_affinity":  # the matrix shown: block means when large
                vals = np.asarray(fig.data[0].z)
            lo, hi = float(vals.min()), float(vals.max())
            if hi - lo > 1e-6:  # (constant maps get a widened range)
                assert one_range(fig) == pytest.approx((lo, hi)), rec.label
    # affinity rows: the shared range is over the query's rows, not over whole matrices
    aff = [r for r in records if r.kind == "affinity"]
    rows = [affinity_row(r, 40 / 200, 250 / 300)[0][0].numpy() for r in aff]
    assert shared_zrange(aff, **q) == pytest.approx(shared_range(rows))


def test_shared_scale_across_models(records):
    """Maps of three models (CBAM spatial, SGE groups, SCNet calibration) on one scale."""
    picks = [next(r for r in records if r.kind == k) for k in ("spatial", "group",
                                                                "calibration")]
    lo, hi = shared_zrange(picks)
    lows = [float(displayed_values(r).min()) for r in picks]
    highs = [float(displayed_values(r).max()) for r in picks]
    assert (lo, hi) == pytest.approx((min(lows), max(highs)))
    figs = [figure_for(r, zmin=lo, zmax=hi) for r in picks]
    for fig in figs:
        assert one_range(fig) == pytest.approx((lo, hi))
    # overlays on the shared scale: a model's maximum is the top colour only for the model
    # holding the shared maximum
    img = np.zeros((64, 64, 3), np.uint8)
    top = colorize(np.array([[1.0]]))[0, 0]
    hits = [bool((overlay(img, to_spatial(r)[0], alpha=1.0, norm=(lo, hi)) == top)
                 .all(-1).any()) for r in picks]
    assert hits == [h == max(highs) for h in highs]


def test_affinity_row_is_nearest_query(records):
    hw = (200, 300)
    affs = [r for r in records if r.kind == "affinity"]
    capped = AttentionMap("x", "x.tap", "self_attn", "affinity", affs[-1].tensor[:, ::5],
                          dict(affs[-1].meta, query_index=torch.arange(0, affs[-1].shape[1], 5)))
    for rec in affs + [capped]:
        for x, y in ((0, 0), (299, 199), (250, 40), (151.7, 99.2)):
            fig = affinity_explorer(rec, x, y, hw)
            want = rec.tensor[0, nearest_query(rec, x, y, hw)].reshape(rec.meta["key_hw"])
            np.testing.assert_allclose(np.asarray(fig.data[0].z), want.numpy(), rtol=1e-6)
            assert fig.data[1].x[0] == pytest.approx(x / hw[1] * rec.meta["key_hw"][1] - 0.5)
            # the overlay shows the same row, upsampled to the image, with the query marked
            img = np.zeros(hw + (3,), np.uint8)
            got = affinity_overlay(img, rec, x, y, alpha=1.0)
            plain = overlay(img, want, alpha=1.0)
            assert got.shape == img.shape
            away = np.ones(hw, bool)
            away[max(0, int(y) - 20):int(y) + 21, max(0, int(x) - 20):int(x) + 21] = False
            np.testing.assert_array_equal(got[away], plain[away])
            assert not np.array_equal(got[~away], plain[~away])


def test_as_rgb_inputs():
    from attnviz.render.overlay import as_rgb
    a16 = np.full((4, 5, 3), 65535, np.uint16)
    assert as_rgb(a16).dtype == np.uint8 and as_rgb(a16).max() == 255
    la = np.zeros((4, 5, 2), np.uint8)
    la[..., 0] = 9
    assert as_rgb(la).shape == (4, 5, 3) and (as_rgb(la) == 9).all()
    assert as_rgb(np.ones((4, 5))).max() == 255


def test_bars_and_lines():
    fig = bars_figure(["a", "b", "c"], [0.1, -0.3, 0.5], "ablation", "probability change",
                      "module")
    check(fig)
    assert list(fig.data[0].y) == ["b", "a", "c"]  # plotly draws the last category on top
    x = np.linspace(0, 1, 11)
    check(line_figure({"deletion": (x, 1 - x), "insertion": x}, "curves", "fraction", "p"))


def test_static_png(records):
    seen = set()
    for rec in records:
        if rec.kind in seen:
            continue
        seen.add(rec.kind)
        png = figure_png(figure_for(rec))
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 100 and img.std() > 5


# -- overlays ---------------------------------------------------------------------------------
def test_overlay_resolution_and_dtype(image, records):
    m = np.random.rand(7, 9)
    for cmap in ("jet", "inferno", "viridis", "turbo"):
        for norm in ("minmax", "fixed", "percentile", (0.2, 0.8), Normaliser("minmax")):
            out = overlay(image, m, colormap=cmap, norm=norm)
            assert out.shape == image.shape and out.dtype == np.uint8
    for rec in records:
        if rec.kind in ("spatial", "group", "calibration", "affinity"):
            assert overlay_record(image, rec).shape == image.shape
    with pytest.raises(ValueError):
        overlay(image, m, colormap="nope")
    grey = overlay(image[..., 0], m)
    assert grey.shape == image.shape


def test_overlay_alpha_extremes(image):
    m = np.random.rand(5, 5)
    np.testing.assert_array_equal(overlay(image, m, alpha=0.0), image)
    assert not np.array_equal(overlay(image, m, alpha=1.0), image)


def test_marker_drawn_at_query(image):
    m = np.zeros((8, 8))
    plain = overlay(image, m, norm="fixed")
    marked = overlay(image, m, norm="fixed", mark=(120, 30))
    assert not np.array_equal(plain[30, 120], marked[30, 120])
    far = (70, 20)  # far from the marker: unchanged
    assert np.array_equal(plain[far[1], far[0]], marked[far[1], far[0]])


def test_affinity_overlay(image, records):
    rec = next(r for r in records if r.kind == "affinity")
    out = affinity_overlay(image, rec, 140, 80)
    assert out.shape == image.shape and out.dtype == np.uint8
    plain = overlay(image, rec.tensor[0, 0].reshape(rec.meta["key_hw"]))
    assert not np.array_equal(out[80, 140], plain[80, 140])


def test_per_map_norm_spans_colormap(image):
    h, w = image.shape[:2]
    m = np.tile(np.linspace(3.0, 7.0, w, dtype=np.float32), (h, 1))  # at image resolution
    out = overlay(image, m, alpha=1.0, colormap="viridis")
    ends = colorize(np.array([[0.0, 1.0]]), "viridis")[0]
    np.testing.assert_array_equal(out[0, 0], ends[0])
    np.testing.assert_array_equal(out[0, -1], ends[1])


def test_shared_norm_equal_scales(image):
    a = np.zeros(image.shape[:2], np.float32)
    a[:, 75:] = 1.0
    b = 2 * a
    b[:, :30] = 1.0  # b holds the value 1 at x < 30, a at x >= 75
    lo, hi = shared_range([a, b])
    assert (lo, hi) == (0.0, 2.0)
    norm = Normaliser.shared([a, b])
    assert norm.range(a) == norm.range(b) == (0.0, 2.0)
    oa = overlay(image, a, alpha=1.0, norm=norm)
    ob = overlay(image, b, alpha=1.0, norm=(lo, hi))
    np.testing.assert_array_equal(oa[0, 100], ob[0, 10])  # equal values, equal colours
    assert not np.array_equal(oa[0, 100], ob[0, 100])  # 1 and 2 differ on the shared scale
    # per map, each map's maximum takes the top colour whatever its value
    np.testing.assert_array_equal(overlay(image, a, alpha=1.0)[0, 100],
                                  overlay(image, b, alpha=1.0)[0, 100])


def test_constant_map_gets_middle_colour(image):
    out = overlay(image, np.full((4, 4), 0.7), alpha=1.0)
    np.testing.assert_array_equal(out[10, 10], colorize(np.array([[0.5]]))[0, 0])


def test_colorbar_fit_png(image):
    bar = colorbar(0.0, 1.0, "jet", "gate", width=200)
    assert bar.dtype == np.uint8 and bar.shape[1] == 200 and bar.shape[0] < 60
    tall = overlay(image, np.random.rand(4, 4), colorbar=True, label="scale")
    assert tall.shape[1] == image.shape[1] and tall.shape[0] > image.shape[0]
    m = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(overlay(image, m, colorbar=True)[:image.shape[0]],
                                  overlay(image, m))
    assert with_colorbar(image, 0, 1).shape[0] == tall.shape[0]
    big = np.zeros((1000, 600, 3), np.uint8)
    assert fit(big, 512).shape == (512, 307, 3) and fit(image, 512).shape == image.shape
    png = to_png_bytes(image)
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, image)


def test_render_knows_nothing_of_gradio():
    src = Path(attnviz.__file__).parent / "render"
    for f in src.glob("*.py"):
        assert "gradio" not in f.read_text(), f


def test_assets_small_and_listed():
    """assets/ (made by scripts/make_assets.py): each PNG under 300 KB, the renderings under 4 MB
    in all, each listed in GALLERY.md. The app's examples/ and screenshots are not ours."""
    assets = Path(__file__).resolve().parent.parent / "assets"
    gallery = assets / "GALLERY.md"
    if not gallery.exists():
        pytest.skip("assets not rendered yet (python scripts/make_assets.py)")
    ours = [f for f in assets.iterdir() if f.is_file() and not f.name.startswith("screenshot")
            and f.name != "GALLERY.md"]
    text = gallery.read_text()
    assert sum(f.stat().st_size for f in ours) < 4 * 2**20
    for f in ours:
        if f.suffix == ".png":
            assert f.stat().st_size < 300 * 1024, f.name
        assert f"({f.name})" in text, f"{f.name} is not in GALLERY.md"
