"""Batched analysis: explain and inspect on a list of images (or a batch tensor) with per-image
targets give, image by image, what the per-image calls give, from batched passes."""
import numpy as np
import pytest
import torch

import attnviz
from attnviz.capture.recorder import hook_count
from attnviz.errors import AttnvizError, ImageError
from attnviz.data.images import preprocess


@pytest.fixture(scope="module")
def model():
    return attnviz.create_model("lite_cbam", pretrained=True)


@pytest.fixture(scope="module")
def images():
    """Shapes images of several sizes (the pretrained model tells them apart)."""
    from attnviz.datasets import make_shapes
    data = make_shapes(5, seed=4242, size=128)
    ims = [data.images[0], data.images[1], np.asarray(attnviz.load_image(data.images[2])
                                                      .resize((160, 96))), data.images[3],
           data.images[4]]
    return ims


def _close(a, b):
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "saliency", "integrated_gradients"])
def test_explain_batch_equals_per_image(model, images, method):
    opts = {"n_steps": 4, "internal_batch_size": 8} if method == "integrated_gradients" else {}
    targets = [None, 2, None, 0, 4]
    calls = {"n": 0}
    h = model.stem.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    try:
        batch = attnviz.explain(model, images, method, target=targets, batch_size=3, **opts)
    finally:
        h.remove()
    singles = [attnviz.explain(model, im, method, target=t, **opts)
               for im, t in zip(images, targets)]
    assert len(batch) == len(images)
    preds = set()
    for b, s, t in zip(batch, singles, targets):
        assert b.map.shape == s.map.shape and b.target == s.target
        assert t is None or b.target == t
        preds.add(b.target)
        _close(b.raw, s.raw)
        _close(b.map, s.map)
    assert len(preds) > 1  # the test can tell the images apart
    if method == "gradcam":  # 2 passes of <= 3 images (+ 1 forward for the mixed targets)
        assert calls["n"] <= 4
    assert hook_count(model) == 0


def test_explain_batch_tensor_and_array(model, images):
    same = [images[i] for i in (0, 1, 3, 4)]  # 128 x 128 each
    arr = np.stack(same)
    x = torch.cat([preprocess(model, im)[0] for im in same])
    from_arr = attnviz.explain(model, arr, target=1)
    from_x = attnviz.explain(model, x, target=[1, 1, 1, 1])
    for a, b, im in zip(from_arr, from_x, same):
        assert a.target == b.target == 1 and a.map.shape == (128, 128)
        _close(a.map, b.map)
        _close(a.map, attnviz.explain(model, im, target=1).map)
    # explain_tensor on a batch: one Attribution, a target per sample
    from attnviz.attribution.explain import explain_tensor
    att = explain_tensor(model, x, preprocess(model, same[0])[1], "gradcam", target=[0, 1, 2, 3])
    assert att.target == [0, 1, 2, 3] and att.map.shape == (4, 128, 128)
    assert att.raw.shape[:2] == (4, 1)  # Grad-CAM's raw: on the layer grid, one channel


def test_batch_errors(model, images):
    with pytest.raises(AttnvizError, match="3 targets for 5 images"):
        attnviz.explain(model, images, target=[1, 2, 3])
    with pytest.raises(ImageError, match="normalised model input"):
        attnviz.explain(model, torch.zeros(2, 3, 64, 64))
    with pytest.raises(ImageError, match="no image"):
        attnviz.inspect(model, [])


def test_inspect_batch_equals_per_image(model, images):
    targets = [None, 3, None, None, 1]
    batch = attnviz.inspect(model, images, attributions=("gradcam", "saliency"), target=targets,
                            batch_size=4)
    assert len(batch) == len(images)
    for a, im, t in zip(batch, images, targets):
        s = attnviz.inspect(model, im, attributions=("gradcam", "saliency"), target=t)
        assert a.target == s.target and [n for n, _ in a.top_k] == [n for n, _ in s.top_k]
        assert a.image.shape == s.image.shape
        _close(a.probs, s.probs)
        assert [r.tap for r in a.maps] == [r.tap for r in s.maps]
        for r, q in zip(a.maps, s.maps):
            assert r.shape == q.shape and r.meta == q.meta
            _close(r.tensor, q.tensor)
        for k in ("gradcam", "saliency"):
            _close(a.attributions[k].map, s.attributions[k].map)
            assert a.attributions[k].target == s.attributions[k].target
        _close(a.spatial_map(a.maps[1]), s.spatial_map(s.maps[1]))
    assert batch[0].timings["batch"] == 4 and batch[4].timings["batch"] == 1
    assert hook_count(model) == 0


def test_inspect_paths_batches_a_folder_and_reports_bad_files(model, images, tmp_path):
    from PIL import Image
    from attnviz.analysis.paths import inspect_paths
    from attnviz.data.batch import image_paths
    for i, im in enumerate(images[:3]):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("skipped")
    paths = image_paths(tmp_path)
    assert [p.name for p in paths] == ["0.png", "1.png", "2.png", "3.png"]
    seen = []
    rows = inspect_paths(model, paths, batch_size=2, on_result=lambda p, a: seen.append(p))
    assert [r["path"] for r in rows] == [str(p) for p in paths] and len(seen) == 3
    assert set(rows[3]) == {"path", "error"} and "3.png" in rows[3]["error"]
    for r, p in zip(rows[:3], paths):
        one = attnviz.inspect(model, str(p)).to_dict()
        assert r["target"] == one["target"] and r["image_size"] == one["image_size"]
        assert [m["tap"] for m in r["maps"]] == [m["tap"] for m in one["maps"]]
        np.testing.assert_allclose([p for _, p in r["top_k"]], [p for _, p in one["top_k"]],
                                   rtol=1e-4, atol=1e-6)
