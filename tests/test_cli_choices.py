"""`attnviz inspect` with --attribution (any method), --target, --layer and --masks DIR: the
scores.json numbers are the library's (score_analysis with the same mask)."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import attnviz
from attnviz.cli import main

pytestmark = pytest.mark.slow


def test_cli_explains_the_class_and_layer_asked_and_scores_against_the_masks(tmp_path):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    for name in ("star", "ring", "cross"):
        shutil.copy(f"assets/examples/{name}.png", images / f"{name}.png")
    w, h = Image.open(images / "star.png").size
    top = np.zeros((h, w), np.uint8)
    top[: h // 2] = 255
    Image.fromarray(top).save(masks / "star.png")  # the user's own ground truth
    Image.fromarray(top[:10, :10]).save(masks / "cross.png")  # the wrong size: reported
    rc = main(["inspect", str(images), "--model", "lite_cbam", "--out", str(out),
               "--attribution", "Grad-CAM++,layercam", "--target", "triangle", "--layer",
               "layer3", "--masks", str(masks), "--steps", "4", "--quiet"])
    assert rc == 1  # cross.png's mask does not fit: skipped and said so
    index = json.loads((out / "index.json").read_text())
    assert [f["image"].endswith("cross.png") for f in index["failed"]] == [True]
    assert "mask is 10 x 10" in index["failed"][0]["error"]
    star = json.loads((out / "star" / "scores.json").read_text())
    for m in ("gradcam++", "layercam"):
        assert star["attributions"][m]["target"] == 1
        assert star["attributions"][m]["layer"] == "layer3"
    ring = json.loads((out / "ring" / "scores.json").read_text())
    assert "pointing" not in ring["scores"]  # no mask for ring.png: no localisation score
    model = attnviz.create_model("lite_cbam", pretrained=True)
    a = attnviz.inspect(model, str(images / "star.png"), attributions=["gradcam++", "layercam"],
                        target=1, explain_opts={m: {"layer": "layer3"}
                                                for m in ("gradcam++", "layercam")})
    s = attnviz.score_analysis(model, a, top.astype(bool), steps=4)
    for key in ("pointing", "energy"):
        for m in ("gradcam++", "layercam"):
            # the CLI ran the images as one batch: float noise of 1e-8, the same computation
            assert star["scores"][key][m] == pytest.approx(s[key][m], abs=1e-6), (key, m)
    assert star["scores"]["rank_correlation"] == pytest.approx(s["rank_correlation"], abs=1e-6)
    overlays = {p.name for p in (out / "star" / "overlays").iterdir()}
    assert {"attribution_gradcampp.png", "attribution_layercam.png"} <= overlays
