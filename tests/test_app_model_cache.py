"""The app's model cache and precision policy, in-process (no server)."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

pytest.importorskip("gradio")

from attnviz.app import catalogue, model_cache  # noqa: E402


def test_amp_setting_parses(monkeypatch):
    for v, want in (("", "auto"), ("auto", "auto"), ("0", "off"), ("off", "off"), ("1", "on"),
                    ("true", "on")):
        monkeypatch.setenv("ATTNVIZ_AMP", v)
        assert model_cache.amp_setting() == want


def _loaded(name):
    entry = catalogue.find_entry(name)
    return model_cache._load(entry)


def test_no_amp_for_lite_models_or_on_cpu(monkeypatch):
    monkeypatch.setenv("ATTNVIZ_AMP", "auto")
    loaded = _loaded("lite_cbam")
    model_cache._decide_amp(loaded)
    assert loaded.amp is False and loaded.amp_check == {}
    monkeypatch.setenv("ATTNVIZ_AMP", "1")
    model_cache._decide_amp(loaded)
    assert loaded.amp is True and loaded.amp_check == {"forced": True}


def test_amp_is_measured_for_full_size_models_on_cuda(monkeypatch):
    """On CUDA an ImageNet model's autocast is kept only when the probe analysis agrees with
    float32 (here the device is faked: autocast on a CUDA-less host changes nothing, so the two
    analyses agree exactly and autocast is kept)."""
    monkeypatch.setenv("ATTNVIZ_AMP", "auto")
    monkeypatch.setenv("ATTNVIZ_ALLOW_DOWNLOAD", "0")
    loaded = _loaded("resnet50")
    monkeypatch.setattr(model_cache, "DEVICE", types.SimpleNamespace(type="cuda"))
    with pytest.warns(UserWarning):  # torch: CUDA autocast requested without CUDA
        model_cache._decide_amp(loaded)
    check = loaded.amp_check
    assert set(check) >= {"same_top1", "max_prob_diff", "min_spearman", "exact_enough"}
    assert check["same_top1"] and check["max_prob_diff"] == 0 and check["exact_enough"]
    assert loaded.amp is True


def test_forced_amp_analysis_is_float32_for_drawing(monkeypatch):
    """Under autocast the recorded maps are bfloat16; the session keeps float32 copies."""
    from attnviz.app import inspect_tab
    from attnviz.app.examples import ensure_examples
    monkeypatch.setenv("ATTNVIZ_AMP", "1")
    path = next(p for p in ensure_examples() if p.stem == "star")
    loaded = model_cache.MODELS.get("lite_cbam")
    monkeypatch.setattr(loaded, "amp", True)
    sess = inspect_tab.analyse(str(path), "lite_cbam", "gradcam")
    assert {r.tensor.dtype for r in sess.analysis.maps} == {torch.float32}
    assert sess.analysis.attributions["gradcam"].raw.dtype == torch.float32
    assert abs(sum(p for _, p in sess.analysis.top_k) - 1) < 1e-3
    out = inspect_tab.inspect_outputs(sess, "shared")
    assert isinstance(out["top5"], dict) and len(out["top5"]) == 5
    assert np.asarray(out["legend"]).ndim == 3  # the colour legend
