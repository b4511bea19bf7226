"""What users met (issue 21), through the app's API on a real server: the framing stays with a
slow attribution and a new colour scale, under a shared scale captions name the map's own range
and the shared one, the export marks the affinity query and counts its figures, the ablation
says what its chart plots, Evaluate refuses ImageNet models in words that fit; and, without a
server, the badges of your own models and the colour bar's numbers."""
from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

from test_app_api import expect_error, gallery, inspect, path_of, plotly  # noqa: E402


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A picture that is none of the synthetic examples (a lite model must frame its label)."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 255, (96, 120, 3), dtype=np.uint8)
    a[30:60, 40:80] = (240, 200, 40)
    path = tmp_path_factory.mktemp("ux") / "photo.png"
    Image.fromarray(a).save(path)
    return path


@pytest.mark.slow
def test_framing_stays_after_a_slow_attribution_and_a_rescale(client, photo):
    r = inspect(client, photo, "lite_cbam", "smoothgrad")
    assert "knows only" in r["details"]
    _, _, details, gal, _ = client.predict("per map", api_name="/attribute")
    assert "SmoothGrad" in details and "knows only" in details, details
    assert any(c.startswith("SmoothGrad") for _, c in gallery(gal))
    _, _, details, _, _ = client.predict("shared", api_name="/rescale")
    assert "knows only" in details, details


@pytest.mark.slow
def test_shared_scale_captions_say_which_range_is_which(client, example_paths):
    inspect(client, example_paths["star"], "lite_cbam")
    _, _, details, gal, _ = client.predict("shared", api_name="/rescale")
    caps = [c for _, c in gallery(gal) if "CBAM spatial" in c]
    assert caps and all(re.search(r"own [\d.e-]+–[\d.e-]+ · shared [\d.e-]+–[\d.e-]+", c)
                        for c in caps), caps
    own = {re.search(r"own ([^ ]+)", c).group(1) for c in caps}
    shared = {re.search(r"shared ([^ ]+)", c).group(1) for c in caps}
    assert len(shared) == 1 and len(own) > 1  # one shared range, each map its own
    assert "own" in details and "shared" in details
    _, _, _, gal, _ = client.predict("per map", api_name="/rescale")
    assert not any("shared" in c for _, c in gallery(gal))


@pytest.mark.slow
def test_export_marks_the_affinity_query_and_counts_figures(client, example_paths):
    inspect(client, example_paths["ring"], "lite_nonlocal")
    x, y = 37, 81
    client.predict(x, y, "per map", api_name="/affinity")
    path, note = client.predict(api_name="/export")
    with zipfile.ZipFile(path_of(path)) as z:
        names = z.namelist()
        (aff,) = [n for n in names if n.startswith("overlays/") and "affinity" in n]
        im = np.asarray(Image.open(z.open(aff)).convert("RGB"))
    html = [n for n in names if n.startswith("figures/") and n.endswith(".html")]
    n = int(re.search(r"(\d+) figures?", note).group(1))
    assert n == len(html) and "figures/plotly.min.js" in names, (note, names)
    k = im.shape[1] / 128  # the ring example is 128 px; the export is never upscaled
    qx, qy = round(x * k), round(y * k)
    assert tuple(im[qy, qx]) == (255, 255, 255), im[qy, qx]  # the query marked
    r = max(12, im.shape[1] // 10)
    ring = im[qy - r:qy + r + 1, qx - r:qx + r + 1].reshape(-1, 3)
    assert (ring.sum(1) < 60).sum() > 10  # outlined in black


@pytest.mark.slow
def test_ablation_note_names_what_the_chart_plots(client, example_paths):
    inspect(client, example_paths["star"], "lite_cbam")
    fig, _, note = client.predict(handle_file(str(example_paths["star"])), "lite_cbam",
                                    api_name="/ablate")
    xtitle = plotly(fig)["layout"]["xaxis"]["title"]["text"]
    said = re.search(r"Bars: \*\*(\w+) change\*\*", note).group(1)
    assert xtitle.startswith(said), (xtitle, note)


@pytest.mark.slow
def test_evaluate_refuses_an_imagenet_model_in_words_that_fit(client):
    expect_error(lambda: client.predict("seresnet50", 50, "synthetic shapes", None,
                                        api_name="/evaluate"), "ImageNet architecture")
    expect_error(lambda: client.predict("lite_cbam", 50, "zip of class folders", None,
                                        api_name="/evaluate"), "zip")
    note, _, result = client.predict("lite_cbam", 50, "synthetic shapes", None,
                                     api_name="/evaluate")
    assert result["n"] == 50 and "synthetic" in note


# ------------------------------------------------------------------------------ no server
def _entry(**kw):
    from attnviz.app.catalogue import Entry
    return Entry(**{"name": "tiny", "arch": "custom", "family": "external",
                    "badge": "your model (tiny.py)", **kw})


def test_own_model_badge_says_where_the_weights_came_from(tmp_path):
    from attnviz.app.framing import entry_badge_md
    without = entry_badge_md(_entry())
    assert "file's own code" in without and "✓" not in without and "av-trained" not in without
    with_file = entry_badge_md(_entry(path=tmp_path / "tiny.safetensors"))
    assert "--weights tiny.safetensors" in with_file and "✓" not in with_file


def test_colour_bar_ends_drop_float_noise():
    from attnviz.render.overlay import range_labels
    assert range_labels(1.05e-17, 0.0532) == ("0", "0.0532")
    assert range_labels(-0.25, 0.5) == ("-0.25", "0.5")
    assert range_labels(0.206, 0.983) == ("0.206", "0.983")


def test_dataset_classes_follow_the_models_labels():
    from attnviz.datasets import ShapesData, with_classes
    from attnviz.errors import DatasetError
    data = ShapesData(np.zeros((3, 8, 8, 3), np.uint8), np.array([0, 1, 1]), None, ["Dog", "cat"])
    out = with_classes(data, ["cat", "dog", "fox"])
    assert out.classes == ["cat", "dog", "fox"] and out.labels.tolist() == [1, 0, 0]
    with pytest.raises(DatasetError, match="match none"):
        with_classes(data, ["fox", "owl"])
    with pytest.raises(DatasetError, match="labels"):
        with_classes(data, None)
