"""Random initialisation is seeded per model name: the same weights on every call (and so on
every machine), another draw with ``seed=`` or ATTNVIZ_SEED, the caller's RNG untouched, and the
app's evicted-and-rebuilt model gives the same maps and prediction."""
import numpy as np
import pytest
import torch

import attnviz
from attnviz.errors import OptionError
from attnviz.models.registry import model_seed


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_create_model_twice_gives_identical_weights():
    a, b = attnviz.create_model("seresnet50"), attnviz.create_model("seresnet50")
    assert _same(a, b)
    assert torch.equal(a.conv1.weight, b.conv1.weight)


def test_seed_changes_the_draw_and_names_have_their_own_streams(monkeypatch):
    a = attnviz.create_model("lite_se")
    assert not _same(a, attnviz.create_model("lite_se", seed=1))
    assert _same(attnviz.create_model("lite_se", seed=1), attnviz.create_model("lite_se", seed=1))
    monkeypatch.setenv("ATTNVIZ_SEED", "1")
    assert _same(attnviz.create_model("lite_se"), attnviz.create_model("lite_se", seed=1))
    monkeypatch.setenv("ATTNVIZ_SEED", "one")
    with pytest.raises(OptionError, match="ATTNVIZ_SEED"):
        attnviz.create_model("lite_se")
    monkeypatch.delenv("ATTNVIZ_SEED")
    assert model_seed("lite_se") != model_seed("lite_cbam")
    assert model_seed("lite_se") == 1633186971  # pinned: the same on every machine and Python


def test_caller_rng_is_left_alone():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    attnviz.create_model("lite_cbam")
    assert torch.equal(torch.rand(3), want)


@pytest.mark.slow
def test_app_rebuilt_random_model_gives_the_same_maps():
    """The app's cache evicts a random-weights model and builds it again: same prediction, same
    maps (it said harmonica, then bathtub, then leopard before)."""
    from attnviz.app.catalogue import BADGE_RANDOM
    from attnviz.app.model_cache import ModelCache
    cache = ModelCache(maxsize=1)
    img = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)

    def analyse(ld):
        a = attnviz.inspect(ld.model, img, attributions=("gradcam",))
        return a.top_k[0], [r.tensor.clone() for r in a.maps]

    first = cache.get("cbam_resnet50")
    assert first.badge == BADGE_RANDOM
    top1, maps = analyse(first)
    cache.get("seresnet50")  # evicts cbam_resnet50
    assert "cbam_resnet50" not in cache.cached()
    again = cache.get("cbam_resnet50")
    assert again is not first and cache.loads == 3
    top2, maps2 = analyse(again)
    assert top1 == top2
    assert len(maps) == len(maps2) and all(torch.equal(x, y) for x, y in zip(maps, maps2))
