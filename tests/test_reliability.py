"""Reliability of the library under threads, many requests and bad input (issue 6).

The server-level versions (8 gradio_client users, bad uploads through the API) are in
tests/test_app_reliability.py."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import attnviz
from attnviz.capture.recorder import hook_count
from attnviz.datasets import make_shapes
from attnviz.errors import AttnvizError, ImageError, WeightsError
from attnviz.analysis.inspect import inspect
from attnviz.data.images import load_image

from bad_inputs import image_cases, pickle_checkpoint

MODELS = ("lite_cbam", "lite_nonlocal", "lite_sk")


def _model(name):
    torch.manual_seed(0)
    try:
        return attnviz.create_model(name, pretrained=True)
    except WeightsError:
        return attnviz.create_model(name)


def _summary(a):
    """Everything a user gets from one analysis, as comparable arrays."""
    out = {"probs": a.probs.copy(), "target": a.target,
           "gradcam": a.attributions["gradcam"].map.copy()}
    for r in a.maps:
        out[r.tap] = r.tensor.detach().cpu().float().numpy().copy()
    return out


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
@pytest.mark.parametrize("name", MODELS)
def test_parallel_inspect_equals_serial(name):
    """8 threads x 25 requests with distinct images on one shared model return exactly what
    serial calls return; no errors; no hook left afterwards."""
    model = _model(name)
    data = make_shapes(8 * 25, seed=4321)
    serial = [_summary(inspect(model, img)) for img in data.images]
    results = [None] * len(data.images)
    errors = []

    def worker(t):
        for i in range(t, len(data.images), 8):
            try:
                results[i] = _summary(inspect(model, data.images[i]))
            except Exception as e:  # noqa: BLE001 - counted below
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, (s, p) in enumerate(zip(serial, results)):
        assert p is not None and s.keys() == p.keys(), i
        for k in s:
            if isinstance(s[k], np.ndarray):
                np.testing.assert_allclose(p[k], s[k], rtol=1e-5, atol=1e-6, err_msg=f"{i} {k}")
            else:
                assert p[k] == s[k], (i, k)
    assert hook_count(model) == 0


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_memory_flat_over_300_requests():
    """Resident memory stays within 60 MB over 300 analyses after a warm-up."""
    model = _model("lite_cbam")
    data = make_shapes(40, seed=99)
    for img in data.images[:20]:  # warm-up: allocator pools, Captum objects, caches
        inspect(model, img)
    start = _rss_mb()
    peak = start
    for i in range(300):
        inspect(model, data.images[i % 40])
        if i % 25 == 0:
            peak = max(peak, _rss_mb())
    end = _rss_mb()
    assert end - start < 60, f"RSS grew from {start:.0f} MB to {end:.0f} MB"
    assert hook_count(model) == 0


def test_bad_images_give_clear_errors_or_correct_results(tmp_path):
    model = _model("lite_cbam")
    cases = image_cases(tmp_path)
    assert len(cases) >= 13
    for name, (path, expect) in cases.items():
        if expect == "error":
            with pytest.raises(ImageError) as e:
                load_image(path)
            msg = str(e.value)
            assert len(msg) > 15 and "Traceback" not in msg, (name, msg)
        else:
            a = inspect(model, path)
            w, h = load_image(path).size
            assert a.image.shape[:2] == (h, w), name
            assert np.isfinite(a.probs).all() and abs(a.probs.sum() - 1) < 1e-4, name
            assert a.attributions["gradcam"].map.shape == (h, w), name
    # the model still works and holds no hooks after all that
    assert hook_count(model) == 0
    inspect(model, make_shapes(1, seed=1).images[0])


def test_exif_rotation_applied(tmp_path):
    path, _ = image_cases(tmp_path)["exif_rotated.jpg"]
    assert load_image(path).size == (60, 120)  # stored 120x60, orientation 6 -> portrait


def test_extreme_array_values():
    model = _model("lite_cbam")
    for arr in (np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)):
        a = inspect(model, arr)
        assert np.isfinite(a.probs).all()
        assert np.isfinite(a.attributions["gradcam"].map).all()
    with pytest.raises(AttnvizError):
        inspect(model, np.full((64, 64, 3), np.nan, np.float32))


def test_pickle_checkpoint_refused_without_running_code(tmp_path):
    flag = Path("/tmp/attnviz_pwned")
    flag.unlink(missing_ok=True)
    path = pickle_checkpoint(tmp_path / "evil.pth")
    model = attnviz.create_model("lite_cbam")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as e:
        attnviz.load_weights(model, path)
    assert "pickle" in str(e.value).lower() or "code" in str(e.value).lower()
    assert not flag.exists()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_unknown_model_name():
    with pytest.raises(attnviz.errors.UnknownModelError) as e:
        attnviz.create_model("lite_cbma")
    assert "lite_cbam" in str(e.value)  # suggests the close match
