"""inspect: any PIL-openable image, maps at the original resolution and aligned with the image
(flip test on every spatial kind), shared forward pass, JSON-safe summary, scores."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import attnviz
from attnviz.capture.recorder import hook_count
from attnviz.analysis.inspect import Analysis, InspectError, inspect
from attnviz.capture.maps import has_spatial
from attnviz.data.images import Preprocess, preprocess


def _picture(w=140, h=90):
    """A smooth picture with no left-right symmetry."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = np.exp(-((xx - 0.25 * w) ** 2 + (yy - 0.33 * h) ** 2) / (0.01 * w * w))
    img[..., 1] = np.exp(-((xx - 0.7 * w) ** 2 + (yy - 0.66 * h) ** 2) / (0.02 * w * w))
    img[..., 2] = xx / w
    return (img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cbam():
    torch.manual_seed(0)
    return attnviz.create_model("lite_cbam")


# ------------------------------------------------------------------------------ image modes
def _files(tmp_path):
    rgb = Image.fromarray(_picture())
    out = {}
    out["rgb.png"] = rgb
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 140, dtype=np.uint8), (90, 1))))
    out["rgba.png"] = rgba
    out["l.png"] = rgb.convert("L")
    p = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    out["p_transparent.png"] = (p, {"transparency": 0})
    out["gray16.png"] = Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257))
    out["cmyk.jpg"] = rgb.convert("CMYK")
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise on display
    out["exif.jpg"] = (rgb, {"exif": exif})
    paths = {}
    for name, item in out.items():
        img, kw = item if isinstance(item, tuple) else (item, {})
        paths[name] = tmp_path / name
        img.save(paths[name], **kw)
    return paths


def test_every_image_mode(cbam, tmp_path):
    for name, path in _files(tmp_path).items():
        a = inspect(cbam, path)
        W, H = (90, 140) if name == "exif.jpg" else (140, 90)
        assert a.image.shape == (H, W, 3) and a.image.dtype == np.uint8, name
        assert a.preprocess.original_size == (W, H)
        assert a.attributions["gradcam"].map.shape == (H, W)
        for rec in a.spatial_records:
            assert a.spatial_map(rec).shape == (H, W)
        assert hook_count(cbam) == 0


def test_large_image_maps_at_original_size(cbam):
    big = np.asarray(Image.fromarray(_picture()).resize((1500, 1000)))
    a = inspect(attnviz.create_model("lite_nonlocal"), big, attributions=("gradcam", "saliency"))
    assert a.image.shape == (1000, 1500, 3)
    assert a.attributions["gradcam"].map.shape == (1000, 1500)
    assert a.attributions["saliency"].map.shape == (1000, 1500)
    rec = a.spatial_records[0]
    assert a.spatial_map(rec).shape == (1000, 1500)
    assert a.affinity_map(rec, 1200, 300).shape == (1000, 1500)


def test_analysis_contents(cbam):
    a = inspect(cbam, _picture(), attributions=("gradcam", "integrated_gradients"), top_k=3,
                explain_opts={"integrated_gradients": {"n_steps": 4}})
    assert isinstance(a, Analysis) and a.model_name == "lite_cbam"
    assert len(a.top_k) == 3 and a.top_k[0][0] == f"class {a.target}"
    assert a.probs.sum() == pytest.approx(1, abs=1e-5) and a.target == int(a.probs.argmax())
    assert [p for _, p in a.top_k] == sorted((p for _, p in a.top_k), reverse=True)
    assert {r.kind for r in a.maps} == {"channel", "spatial"} and len(a.maps) == 8
    assert set(a.attributions) == {"gradcam", "integrated_gradients"}
    assert all(att.target == a.target for att in a.attributions.values())
    stages = {"load", "preprocess", "forward_capture_gradcam", "integrated_gradients"}
    assert stages <= set(a.timings)
    summary = json.loads(json.dumps(a.to_dict()))
    assert summary["target"] == a.target and len(summary["maps"]) == 8
    with pytest.raises(InspectError, match="no spatial layout"):
        a.spatial_map(a.maps[0])
    with pytest.raises(InspectError, match="affinity"):
        a.affinity_map(a.maps[1], 3, 3)
    assert a.record(a.maps[1].tap) is a.maps[1]


def test_class_names_and_target(cbam):
    model = attnviz.create_model("lite_se")
    model.info.classes = ["circle", "triangle", "square", "star", "cross", "ring"]
    a = inspect(model, _picture(), target=4, attributions=())
    assert a.target == 4 and a.target_name == "cross"
    assert all(n in model.info.classes for n, _ in a.top_k)
    assert a.attributions == {} and "forward_capture" in a.timings
    with pytest.raises(InspectError, match="not a class"):
        inspect(model, _picture(), target=6, attributions=())


def test_one_forward_one_backward(cbam):
    """Capture + prediction + Grad-CAM of the predicted class: one forward, one backward."""
    calls = {"fwd": 0, "bwd": 0}
    h1 = cbam.stem.register_forward_hook(lambda *a: calls.__setitem__("fwd", calls["fwd"] + 1))
    h2 = cbam.fc.register_full_backward_hook(
        lambda *a: calls.__setitem__("bwd", calls["bwd"] + 1))
    try:
        a = inspect(cbam, _picture())
    finally:
        h1.remove()
        h2.remove()
    assert calls == {"fwd": 1, "bwd": 1}
    assert len(a.maps) == 8 and "gradcam" in a.attributions
    # the same Grad-CAM as a separate call for the predicted class
    ref = attnviz.explain(cbam, _picture(), "gradcam", target=a.target)
    torch.testing.assert_close(a.attributions["gradcam"].raw, ref.raw)
    assert hook_count(cbam) == 0


def test_capture_options_and_center_crop(cbam):
    a = inspect(cbam, _picture(200, 100), capture_opts={"kinds": ["spatial"]},
                mode="center_crop")
    assert {r.kind for r in a.maps} == {"spatial"}
    m = a.spatial_map(a.maps[0])
    assert m.shape == (100, 200)
    left, _, right, _ = a.preprocess.crop_box
    assert m[:, : int(left) - 1].max() == 0 and m[:, int(right) + 1:].max() == 0
    nl = inspect(attnviz.create_model("lite_nonlocal"), _picture(200, 100), mode="center_crop")
    with pytest.raises(InspectError, match="outside"):
        nl.affinity_map(nl.spatial_records[0], 5, 50)


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_scores(cbam):
    img = _picture()
    mask = np.zeros(img.shape[:2], bool)
    mask[20:60, 20:70] = True
    opts = {"steps": 8, "batch_size": 9}  # fewer curve steps: the same code, a quarter the time
    a = inspect(cbam, img, attributions=("gradcam", "saliency"), mask=mask, scores=opts)
    s = a.scores
    labels = [r.label for r in a.spatial_records]
    assert set(s["pointing"]) == set(labels) | {"gradcam", "saliency"}
    assert all(isinstance(v, bool) for v in s["pointing"].values())
    assert all(0 <= v <= 1 for v in s["energy"].values())
    assert set(s["deletion_auc"]) == {"gradcam", "saliency"}
    assert all(0 <= v <= 1 for v in s["insertion_auc"].values())
    # every AUC has its random reference: a seeded random map of the method's grid
    assert set(s["random_deletion_auc"]) == set(s["random_insertion_auc"]) == {"gradcam",
                                                                                "saliency"}
    assert s["removal"] == "road"
    from attnviz.scores import faithfulness as Fm
    x, _ = preprocess(cbam, img)
    grid = a.attributions["gradcam"].raw.shape[-2:]
    ref = Fm.deletion_auc(cbam, (x, Preprocess((128, 128), 128)), Fm.random_map(grid, 128),
                          a.target, **opts)
    assert s["random_deletion_auc"]["gradcam"] == pytest.approx(ref, abs=1e-6)
    assert s["random_deletion_auc"]["saliency"] != s["random_deletion_auc"]["gradcam"]
    assert set(s["rank_correlation"]) == set(labels) and s["rank_correlation_with"] == "gradcam"
    assert all(-1 <= v <= 1 for v in s["rank_correlation"].values())
    json.dumps(a.to_dict())
    mask_img = Image.fromarray(mask.astype(np.uint8) * 255)
    b = inspect(cbam, img, mask=mask_img, scores=opts)
    assert b.scores["pointing"] == {k: v for k, v in s["pointing"].items() if k != "saliency"}
    assert inspect(cbam, img).scores == {}


# ------------------------------------------------------------------------------ flip test
def _symmetric(name, size=121):
    """A lite model made exactly left-right equivariant: every conv kernel averaged with its
    mirror image, SGE weights randomised (they start constant), SCConv's pooling made exact on
    odd grids, and an input size at which every stride-2 layer sees an odd grid (121 -> 61 -> 31
    -> 16: sampling positions then mirror onto each other). Any misalignment of a map with the
    image (off by one, a transposed reshape, a wrong resize) breaks map(flip(x)) = flip(map(x))."""
    torch.manual_seed(0)
    model = attnviz.create_model(name)
    model.info.input_size = size
    with torch.no_grad():
        for mod_name, mod in model.named_modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.copy_((mod.weight + mod.weight.flip(-1)) / 2)
            if mod_name.endswith("sge"):
                nn.init.normal_(mod.weight)
                nn.init.normal_(mod.bias)
            if mod_name.endswith("scconv.k2") and mod_name.startswith(("layer1", "layer2")):
                mod[0] = nn.Identity()  # 4x4 pooling on a 31 x 31 grid drops a border
    return model


def _close(a, b, what):
    scale = float(np.abs(a).max()) + 1e-12
    err = float(np.abs(a - b).max()) / scale
    assert err < 1e-3, f"{what}: map(flip(img)) differs from flip(map(img)) by {err:.3g}"


@pytest.mark.parametrize("name", ["lite_cbam", "lite_sge", "lite_scnet", "lite_nonlocal",
                                  "lite_danet", "lite_sagan"])
def test_flipping_the_image_flips_every_map(name):
    model = _symmetric(name)
    img = _picture(140, 90)
    flipped = np.ascontiguousarray(img[:, ::-1])
    a = inspect(model, img)
    b = inspect(model, flipped, target=a.target)
    recs = [(ra, rb) for ra, rb in zip(a.maps, b.maps) if has_spatial(ra)]
    assert recs and {r.kind for r, _ in recs} == {r.kind for r in a.spatial_records}
    for ra, rb in recs:
        assert ra.tap == rb.tap
        ma, mb = a.spatial_map(ra), b.spatial_map(rb)
        assert float(ma.max() - ma.min()) > 1e-6, f"{ra.label} is constant: test would be void"
        _close(mb, ma[:, ::-1], ra.label)
        if ra.kind in ("group", "calibration"):
            _close(b.spatial_map(rb, reduce="max"), a.spatial_map(ra, reduce="max")[:, ::-1],
                   ra.label + " max")
        if ra.kind == "affinity":  # one query row: query mirrored, answer mirrored
            qh, qw = ra.meta["query_hw"]
            for iy, ix in ((1, 2), (qh // 2, qw - 3)):
                x, y = (ix + 0.5) * 140 / qw, (iy + 0.5) * 90 / qh
                _close(b.affinity_map(rb, 140 - x, y), a.affinity_map(ra, x, y)[:, ::-1],
                       f"{ra.label} row ({ix}, {iy})")
    ga, gb = a.attributions["gradcam"].map, b.attributions["gradcam"].map
    assert ga.max() > 0
    _close(gb, ga[:, ::-1], "gradcam")
    # and the test has teeth: the unflipped maps do not match
    assert float(np.abs(gb - ga).max()) > 0.05 * float(ga.max())


# ------------------------------------------------------------------------------ threads
@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_threads_sharing_a_model(cbam):
    """Concurrent analyses on one shared model: each gets its own maps and its own Grad-CAM."""
    import threading
    imgs = [_picture(), np.ascontiguousarray(_picture()[::-1])]
    ref = [inspect(cbam, im, attributions=("gradcam", "saliency")) for im in imgs]
    errors, results = [], []

    def work(i):
        try:
            for _ in range(3):
                results.append((i % 2, inspect(cbam, imgs[i % 2],
                                               attributions=("gradcam", "saliency"))))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(results) == 12
    for k, a in results:
        assert len(a.maps) == len(ref[k].maps)
        for r, q in zip(a.maps, ref[k].maps):
            torch.testing.assert_close(r.tensor, q.tensor)
        for m in ("gradcam", "saliency"):
            torch.testing.assert_close(a.attributions[m].raw, ref[k].attributions[m].raw)
    assert hook_count(cbam) == 0


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_score_options(cbam):
    a = inspect(cbam, _picture(), scores={"steps": 8})
    assert set(a.scores["deletion_auc"]) == {"gradcam"}
    with pytest.raises(InspectError, match="score option"):
        inspect(cbam, _picture(), scores={"stepz": 8})
