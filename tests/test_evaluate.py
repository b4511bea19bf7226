"""attnviz.evaluate: every figure present and in range on random lite models, exact figures on a
constructed case, accuracy consistent with train.accuracy, CLI and model-card merge."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import attnviz
from attnviz.models.layers.tap import Tap
from attnviz.capture.recorder import hook_count
from attnviz.datasets import ShapesData, make_shapes
from attnviz.scores.evaluate import evaluate, format_table, main, write_card
from attnviz.models.resnet import ModelInfo
from attnviz.training.train import TEST_SEED, accuracy


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _in_unit(v):
    return v is not None and 0.0 <= v <= 1.0


def _check_result(r, n):
    assert r["n"] == n and _in_unit(r["accuracy"])
    for k in ("pointing", "energy"):
        assert _in_unit(r["gradcam"][k]) and _in_unit(r["chance"][k])
    for layer, v in r["attention"].items():
        assert _in_unit(v["pointing"]) and _in_unit(v["energy"]), layer
    for kind, v in r["kinds"].items():
        for k in ("pointing_mean", "energy_mean", "pointing_deepest", "energy_deepest"):
            assert _in_unit(v[k]), (kind, k)
        assert v["deepest_layer"] == v["layers"][-1]
    json.dumps(r)  # JSON-ready


def test_random_lite_cbam_all_keys():
    torch.manual_seed(0)
    model = attnviz.create_model("lite_cbam")
    model.train()  # evaluate runs in eval mode and restores the mode
    seen = []
    r = evaluate(model, n=12, batch_size=5, progress=seen.append)
    assert model.training and hook_count(model) == 0
    _check_result(r, 12)
    assert r["seed"] == TEST_SEED and r["trained"] is False
    assert r["gradcam"]["layer"] == model.info.cam_layer == "layer4"
    assert r["gradcam"]["grid"] == [16, 16]
    assert list(r["attention"]) == [f"layer{i}.0.cbam.SpatialGate" for i in (1, 2, 3, 4)]
    assert list(r["kinds"]) == ["spatial"] and r["kinds"]["spatial"]["deepest_layer"] == \
        "layer4.0.cbam.SpatialGate"
    assert [p["done"] for p in seen] == [5, 10, 12] and all(p["total"] == 12 for p in seen)
    # the accuracy from the Grad-CAM pass equals a plain forward pass's
    assert r["accuracy"] == round(accuracy(model, make_shapes(12, TEST_SEED)), 4)
    assert "Grad-CAM layer4" in format_table(r)


@pytest.mark.parametrize("name, kind", [("lite_sge", "group"), ("lite_scnet", "calibration"),
                                        ("lite_nonlocal", "affinity"), ("lite_danet", "affinity"),
                                        ("lite_se", None), ("lite_resnet", None)])
def test_random_lite_models_every_spatial_kind(name, kind):
    torch.manual_seed(0)
    model = attnviz.create_model(name)
    r = evaluate(model, n=4, batch_size=4)
    _check_result(r, 4)
    assert list(r["kinds"]) == ([kind] if kind else [])
    if name == "lite_danet":
        assert list(r["attention"]) == ["head.sa"] and r["gradcam"]["layer"] == "layer4"


def test_deterministic():
    torch.manual_seed(0)
    model = attnviz.create_model("lite_sge")
    a, b = evaluate(model, n=6, seed=7), evaluate(model, n=6, seed=7)
    for r in (a, b):
        r.pop("seconds")
    assert a == b


# ------------------------------------------------------------------------------ known answers
class Toy(nn.Module):
    """Logit 0 = mean of a 1x1 conv summing the (normalised) colour channels, so Grad-CAM of
    class 0 on ``feat`` is that sum, ReLU'd: positive exactly on the white square. A spatial tap
    sees sigmoid(feat), which also peaks on the square."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 1, 1, bias=False)
        nn.init.ones_(self.feat.weight)
        self.gate = nn.Module()
        self.gate.spatial_tap = Tap("spatial", "cbam")
        self.info = ModelInfo("toy", "lite", 32, cam_layer="feat")

    def forward(self, x):
        f = self.feat(x)[:, 0]
        g = self.gate.spatial_tap(torch.sigmoid(f))
        s = f.mean((1, 2)) + 0 * g.mean((1, 2))
        return torch.stack([s, torch.full_like(s, -1e3)], 1)


SQ = (slice(10, 16), slice(10, 16))  # the white square; the maps' maximum is at (10, 10)


def _toy_data():
    img = np.zeros((32, 32, 3), np.uint8)
    img[SQ] = 255
    exact = np.zeros((32, 32), bool)
    exact[SQ] = True
    beside = np.zeros((32, 32), bool)
    beside[10:16, 4:8] = True  # nearest pixel (10, 7): 3 px from the maximum
    far = np.zeros((32, 32), bool)
    far[25:31, 25:31] = True
    masks = np.stack([exact, beside, far] * 2)
    return ShapesData(np.stack([img] * 6), np.zeros(6, np.int64), masks, ["a", "b"],
                      meta={"source": "toy"}), img


@pytest.mark.parametrize("tolerance, expected", [(3, 2 / 3), (2.9, 1 / 3), (0, 1 / 3),
                                                 (30, 1.0)])
def test_constructed_case_pointing(tolerance, expected):
    data, img = _toy_data()
    r = evaluate(Toy().eval(), data=data, batch_size=4, tolerance=tolerance)
    assert r["accuracy"] == 1.0 and r["n"] == 6 and r["masked_images"] == 6
    assert r["gradcam"]["pointing"] == pytest.approx(expected, abs=1e-4)
    spatial = r["attention"]["gate"]
    assert spatial["kind"] == "spatial" and spatial["grid"] == [32, 32]
    assert spatial["pointing"] == pytest.approx(expected, abs=1e-4)
    # energy: Grad-CAM is positive only on the square; the sigmoid map leaks a little
    assert r["gradcam"]["energy"] == pytest.approx(1 / 3, abs=1e-4)
    x = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 -
         torch.tensor(ModelInfo("t", "lite", 32).mean)[:, None, None]) / \
        torch.tensor(ModelInfo("t", "lite", 32).std)[:, None, None]
    sig = torch.sigmoid(x.sum(0)).numpy()
    expected_energy = np.mean([sig[m].sum() / sig.sum() for m in data.masks[:3]])
    assert spatial["energy"] == pytest.approx(expected_energy, abs=1e-4)
    # chance: the share of pixels within `tolerance` of each mask, by brute force
    yy, xx = np.mgrid[:32, :32]
    share = []
    for m in data.masks[:3]:
        ys, xs = np.nonzero(m)
        d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
        share.append((d2.min(-1) <= tolerance ** 2).mean())
    assert r["chance"]["pointing"] == pytest.approx(np.mean(share), abs=1e-4)
    assert r["chance"]["energy"] == pytest.approx(np.mean([m.mean() for m in data.masks[:3]]),
                                                  abs=1e-4)


def test_images_without_masks_are_skipped():
    data, _ = _toy_data()
    data.masks[1:] = False  # only the exact mask remains
    r = evaluate(Toy().eval(), data=data, batch_size=4)
    assert r["masked_images"] == 1 and r["gradcam"]["pointing"] == 1.0
    data.masks = None
    r = evaluate(Toy().eval(), data=data)
    assert r["gradcam"] is None and r["chance"] is None and r["accuracy"] == 1.0


def test_wrong_input_size_and_classes_refused():
    data, _ = _toy_data()
    with pytest.raises(attnviz.errors.AttnvizError, match="32 x 32"):
        evaluate(attnviz.create_model("lite_resnet"), data=data)
    three = ShapesData(data.images, data.labels, data.masks, ["a", "b", "c"])
    with pytest.raises(attnviz.errors.AttnvizError, match="classes"):
        evaluate(Toy().eval(), data=three)


# ------------------------------------------------------------------------------ CLI and card
def test_cli_json_and_table(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--model", "lite_se", "--random", "--n", "4", "--batch-size", "4",
                 "--json", str(out), "--threads", "1", "--faithfulness", "0", "--sanity",
                 "0"]) == 0
    r = json.loads(out.read_text())
    _check_result(r, 4)
    assert r["model"] == "lite_se" and "top-1 accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--model", "lite_se", "--random", "--write-card"])


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_cli_write_card_and_all(tmp_path, capsys):
    """--models-dir: read the checkpoint there and merge the figures into its card; --model all
    evaluates every checkpoint found and prints the Markdown summary."""
    torch.manual_seed(1)
    model = attnviz.create_model("lite_cbam")
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "lite_cbam.safetensors"))
    (tmp_path / "lite_cbam.json").write_text(json.dumps({"name": "lite_cbam", "keep": 1}))
    args = ["--n", "4", "--batch-size", "4", "--models-dir", str(tmp_path), "--steps", "4"]
    assert main(["--model", "all", "--write-card", "--json", str(tmp_path / "all.json"),
                 "--markdown", *args]) == 0
    card = json.loads((tmp_path / "lite_cbam.json").read_text())
    assert card["keep"] == 1 and card["evaluation"]["n"] == 4 and card["evaluation"]["trained"]
    assert card["test_accuracy"] == card["evaluation"]["accuracy"]
    assert card["gradcam_pointing"] == card["evaluation"]["gradcam"]["pointing"]
    everything = json.loads((tmp_path / "all.json").read_text())
    assert list(everything) == ["lite_cbam"]
    # same weights, same images: the same figures as evaluate() on the model itself
    direct = evaluate(attnviz.load_weights(attnviz.create_model("lite_cbam"),
                                           tmp_path / "lite_cbam.safetensors"), n=4)
    assert direct["accuracy"] == card["test_accuracy"] and \
        direct["attention"] == card["evaluation"]["attention"]
    printed = capsys.readouterr().out
    assert "| lite_cbam |" in printed and "spatial" in printed
    # deletion / insertion with intervals by default, in the card and the Markdown table
    f = card["evaluation"]["faithfulness"]
    assert f["images"] == 4 and f["steps"] == 4 and f["removal"] == "road"
    assert "oracle (mask)" in printed and "bootstrap" in printed
    # the sanity check's verdict per method, by default on 4 images
    san = card["evaluation"]["sanity"]
    assert set(san) == {"gradcam", "spatial"} and san["gradcam"]["images"] == 4
    assert "verdict" in printed and "Adebayo" in printed
    assert main(["--model", "lite_sge", *args]) == 2  # no checkpoint there


def test_write_card_merges(tmp_path):
    card = {"name": "lite_se", "val_accuracy": 0.97, "classes": ["a"], "evaluation": {"old": 1}}
    (tmp_path / "lite_se.json").write_text(json.dumps(card))
    result = {"accuracy": 0.96, "gradcam": {"pointing": 0.9, "energy": 0.5}, "n": 500}
    write_card("lite_se", result, tmp_path)
    new = json.loads((tmp_path / "lite_se.json").read_text())
    assert new["evaluation"] == result and new["test_accuracy"] == 0.96
    assert new["gradcam_pointing"] == 0.9
    assert new["val_accuracy"] == 0.97 and new["classes"] == ["a"] and new["name"] == "lite_se"
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(attnviz.errors.AttnvizError, match="no model card"):
        write_card("lite_cbam", result, tmp_path)


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_faithfulness_with_bootstrap_intervals():
    """Deletion / insertion (ROAD) for Grad-CAM, each kind, the oracle and random, each with a
    95% interval over the images that holds its mean; the trained model's oracle beats random."""
    from attnviz.scores import faithfulness_eval as FE
    model = attnviz.create_model("lite_cbam", pretrained=True)
    r = evaluate(model, n=6, batch_size=3, faithfulness=True, steps=4, seed=TEST_SEED + 7)
    f = r["faithfulness"]
    assert f["images"] == 6 and f["removal"] == "road"
    assert list(f["maps"]) == ["Grad-CAM", "spatial", "oracle (mask)", "random"]
    for name, e in f["maps"].items():
        for k in ("deletion", "insertion"):
            lo, hi = e[f"{k}_ci"]
            assert lo <= e[k] <= hi and 0 <= lo and hi <= 1
        assert ("deletion_vs_random_ci" in e) == (name != "random")
    o = f["maps"]["oracle (mask)"]
    assert o["deletion_vs_random_ci"][1] < 0 < o["insertion_vs_random_ci"][0]
    assert "beats random" in format_table(r)
    # only the first images when asked for a number; none by default
    assert evaluate(model, n=4, batch_size=2, faithfulness=2, steps=2)["faithfulness"][
        "images"] == 2
    assert evaluate(model, n=2)["faithfulness"] is None
    # the bootstrap interval: a point for constant values, wider for a wider spread
    assert FE.bootstrap_ci([0.3] * 5) == [0.3, 0.3]
    narrow = FE.bootstrap_ci(np.linspace(0.4, 0.6, 50))
    wide = FE.bootstrap_ci(np.linspace(0.0, 1.0, 50))
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
