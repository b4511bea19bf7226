"""attnviz.score_analysis scores an existing Analysis on the input it kept: the same numbers as
inspect(..., scores=...), for a subset of attributions, with another reference, and by hand-built
analyses (no kept input) through one preprocessing of their image."""
import dataclasses

import numpy as np
import pytest

import attnviz
from attnviz.errors import UnknownOptionError


@pytest.fixture(scope="module")
def setup():
    model = attnviz.create_model("lite_cbam")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[20:60, 30:70] = True
    a = attnviz.inspect(model, image, attributions=("gradcam", "saliency"), mask=mask,
                        scores={"steps": 4, "batch_size": 5})
    return model, image, mask, a


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_same_scores_as_inspect(setup):
    model, image, mask, a = setup
    assert a.input is not None and a.input.shape[-1] == a.preprocess.input_size
    s = attnviz.score_analysis(model, a, mask, steps=4, batch_size=5)
    assert set(s) == set(a.scores)
    for key in ("pointing", "energy", "deletion_auc", "insertion_auc", "rank_correlation"):
        assert s[key].keys() == a.scores[key].keys() and s[key]
        for k in s[key]:
            assert s[key][k] == pytest.approx(a.scores[key][k], abs=1e-5), (key, k)
    assert s["rank_correlation_with"] == "gradcam"
    for r in a.spatial_records:
        assert a.agreement(r, "gradcam") == pytest.approx(s["rank_correlation"][r.label])


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_subset_reference_and_hand_built_analysis(setup):
    model, image, mask, a = setup
    s = attnviz.score_analysis(model, a, faithfulness=False, reference="saliency")
    assert "pointing" not in s and "deletion_auc" not in s
    assert s["rank_correlation_with"] == "saliency"
    assert s["rank_correlation"] != attnviz.score_analysis(model, a, faithfulness=False)[
        "rank_correlation"]
    only = attnviz.score_analysis(model, a, attributions=["saliency"], steps=4, batch_size=5)
    assert list(only["deletion_auc"]) == ["saliency"]
    assert only["deletion_auc"]["saliency"] == pytest.approx(a.scores["deletion_auc"]["saliency"],
                                                             abs=1e-5)  # batched differently
    bare = dataclasses.replace(a, input=None)  # e.g. an Analysis rebuilt from saved arrays
    again = attnviz.score_analysis(model, bare, attributions=["gradcam"], steps=4, batch_size=5)
    assert again["deletion_auc"]["gradcam"] == pytest.approx(a.scores["deletion_auc"]["gradcam"],
                                                             abs=1e-5)
    with pytest.raises(UnknownOptionError, match="no \\['occlusion'\\]"):
        attnviz.score_analysis(model, a, attributions=["occlusion"])



@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_mask_gives_the_oracle_row(setup):
    """With a mask, the deletion / insertion curves also score the map the mask implies (the
    oracle), with the same numbers as faithfulness() of oracle_map(mask) on the model input
    called by hand; it is not taken for an attribution, and there is none without a mask."""
    from attnviz.scores.faithfulness import faithfulness, oracle_map

    model, image, mask, a = setup
    s = attnviz.score_analysis(model, a, mask, attributions=["gradcam"], steps=4, batch_size=5)
    o = s["oracle"]
    assert "oracle (mask)" not in s["deletion_auc"] and list(s["deletion_auc"]) == ["gradcam"]
    on_input = a.preprocess.to_input(mask.astype(np.float32)).numpy() >= 0.5
    by_hand = faithfulness(model, (a.input, a.input_grid()), {"o": oracle_map(on_input)},
                           target=a.target, steps=4, batch_size=5)["o"]
    for k in ("deletion", "insertion", "random_deletion", "random_insertion"):
        assert o[k] == pytest.approx(getattr(by_hand, k), abs=1e-5), k
    assert "oracle" not in attnviz.score_analysis(model, a, attributions=["gradcam"], steps=4,
                                                  batch_size=5)


@pytest.mark.slow
def test_oracle_row_beats_random_on_the_shipped_task():
    """On the shipped model's own task, over several seeds' images with their true masks, the
    oracle's deletion AUC is below its random reference's (removing the object hurts the class
    more than removing random pixels) on the mean and on most images."""
    from attnviz.data.synthetic import make_shapes

    model = attnviz.create_model("lite_cbam", pretrained=True)
    gaps = []
    for seed in (11, 12, 13):
        data = make_shapes(3, seed=seed, size=model.info.input_size)
        for img, mask in zip(data.images, data.masks, strict=True):
            a = attnviz.inspect(model, img)
            o = attnviz.score_analysis(model, a, mask, steps=8, batch_size=9)["oracle"]
            gaps.append(o["random_deletion"] - o["deletion"])
    assert np.mean(gaps) > 0.2 and np.mean(np.asarray(gaps) > 0) >= 0.75, gaps
