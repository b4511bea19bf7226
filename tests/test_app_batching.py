"""Concurrent analyses of one model share one batched pass, and each answer equals the
analysis of its image alone (real model, real Captum, real threads; no server)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("gradio")

from attnviz.app import analysis  # noqa: E402
from attnviz.app.batching import Batcher  # noqa: E402
from attnviz.app.model_cache import MODELS  # noqa: E402
from attnviz.data.images import load_image  # noqa: E402

from app_fixtures import EXAMPLES  # noqa: E402


def _same(a, b):
    assert a.top_k == b.top_k or [c for c, _ in a.top_k] == [c for c, _ in b.top_k]
    np.testing.assert_allclose(a.probs, b.probs, rtol=1e-4, atol=1e-5)
    assert [r.tap for r in a.maps] == [r.tap for r in b.maps]
    for ra, rb in zip(a.maps, b.maps):
        torch.testing.assert_close(ra.tensor.float(), rb.tensor.float(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.attributions["gradcam"].map, b.attributions["gradcam"].map,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_name", ["lite_cbam", "lite_danet"])
def test_concurrent_analyses_are_batched_and_equal_single_ones(model_name, monkeypatch):
    batcher = Batcher()
    monkeypatch.setattr(analysis, "BATCHER", batcher)
    model = MODELS.get(model_name).model
    images = [load_image(p) for p in sorted(EXAMPLES.glob("*.png"))
              if not p.stem.endswith("_mask")][:5]
    alone = [analysis._run_inspect(model, im, ["gradcam"]) for im in images]
    assert batcher.passes == len(images) and batcher.images == len(images)  # idle: one each
    # hold the model's pass so that every request arrives while it "runs", then release
    key = (id(model), ("gradcam",), False, repr(None), repr(None))
    gate = batcher.run_lock(key)
    out = [None] * len(images)

    def ask(i):
        out[i] = analysis._run_inspect(model, images[i], ["gradcam"])

    with gate:
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        deadline = time.time() + 30
        while time.time() < deadline:  # all of them waiting in one batch
            with batcher._lock:
                b = batcher._pending.get(key)
                if b is not None and len(b.items) == len(images):
                    break
            time.sleep(0.01)
    for t in threads:
        t.join(60)
    assert batcher.passes == len(images) + 1, "the held requests ran as one pass"
    assert batcher.images == 2 * len(images)
    for a, b in zip(out, alone):
        _same(a, b)


def test_a_failing_image_fails_only_its_own_request():
    batcher = Batcher()
    key = "k"
    gate = batcher.run_lock(key)
    results, errors = {}, {}

    def single(x):
        if x == "bad":
            raise ValueError("bad image")
        return x.upper()

    def batch(xs):
        return [single(x) for x in xs]

    def ask(x):
        try:
            results[x] = batcher.run(key, x, single, batch)
        except ValueError as e:
            errors[x] = str(e)

    with gate:
        threads = [threading.Thread(target=ask, args=(x,)) for x in ("a", "bad", "c")]
        for t in threads:
            t.start()
        while True:
            with batcher._lock:
                b = batcher._pending.get(key)
                if b is not None and len(b.items) == 3:
                    break
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert results == {"a": "A", "c": "C"} and errors == {"bad": "bad image"}


def test_batching_is_off_unless_asked_for():
    """Off (the default), each request runs its own pass: answers are exactly the serial ones."""
    off = Batcher(enabled=False)
    calls = []
    assert off.run("k", 3, single=lambda x: calls.append(x) or x * 2,
                   batch=lambda xs: pytest.fail("batched while off")) == 6
    assert calls == [3] and off.passes == 1 and off.images == 1
    import os
    assert analysis.BATCHER.enabled == (os.environ.get("ATTNVIZ_BATCH", "0") == "1")
