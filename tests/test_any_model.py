"""Analyses of any nn.Module: defaults when the model carries no ModelInfo, describe() to
override them, Grad-CAM's layer found automatically, gate ablation of discovered gates, and the
ImageNet-1k class names of the zoo's ImageNet architectures."""
import numpy as np
import pytest
import torch

import attnviz
import paper_nets as P
from attnviz.capture.recorder import hook_count
from attnviz.models.info import ModelInfoError, info_of


def _image(seed=0, hw=(120, 160)):
    return (np.random.default_rng(seed).random((*hw, 3)) * 255).astype(np.uint8)


@pytest.mark.slow  # ~20 s: a plain torchvision-style network, every default, several analyses
def test_plain_module_inspected_with_defaults_it_reports():
    torch.manual_seed(0)
    model = P.affinity_net().eval()
    a = attnviz.inspect(model, _image(), attributions=("gradcam", "saliency"),
                        scores={"steps": 4})
    assert a.model_name == "Net" and a.preprocess.input_size == 224
    assert a.preprocess.mean == (0.485, 0.456, 0.406)
    assert a.top_k[0][0] == f"class {a.target}"
    assert any("ImageNet mean/std" in n and "class indices" in n for n in a.notes)
    assert a.attributions["gradcam"].layer == "after.after4"  # last map larger than 1x1
    assert "Grad-CAM layer: after.after4" in a.notes
    assert {r.kind for r in a.maps} == {"affinity", "channel_affinity"}
    for r in a.spatial_records:  # discovered affinities carry their grids
        assert a.spatial_map(r).shape == (120, 160)
        assert a.affinity_map(r, 80, 60).shape == (120, 160)
    assert set(a.scores["deletion_auc"]) == {"gradcam", "saliency"}
    assert a.to_dict()["notes"] == a.notes
    assert hook_count(model) == 0


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_describe_overrides_defaults_and_refuses_bad_values():
    torch.manual_seed(0)
    model = P.se_eca_net().eval()
    names = [f"thing {i}" for i in range(10)]
    info = attnviz.describe(model, input_size=96, classes=names, cam_layer="layer3",
                            mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert info_of(model) is info and info.card["defaults"] == []
    from attnviz.data.images import normalisation
    assert normalisation(model) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    a = attnviz.inspect(model, _image(1))
    assert a.preprocess.input_size == 96 and a.preprocess.mean == (0.5, 0.5, 0.5)
    assert a.top_k[0][0] in names and a.notes == []
    assert a.attributions["gradcam"].layer == "layer3"
    att = attnviz.explain(model, _image(1), method="gradcam")
    assert att.layer == "layer3" and att.map.shape == (120, 160)
    for bad in ({"input_size": "big"}, {"input_size": 2}, {"mean": (1, 2)},
                {"std": (0.2, 0, 0.2)}, {"classes": []}, {"cam_layer": "layer9"}):
        with pytest.raises(ModelInfoError):
            attnviz.describe(model, **bad)
    other = P.se_eca_net().eval()  # inspect(info=...) describes the model for good
    a = attnviz.inspect(other, _image(2), attributions=(),
                        info=attnviz.ModelInfo("mine", "custom", 64, classes=names))
    assert a.model_name == "mine" and a.preprocess.input_size == 64 and a.top_k[0][0] in names


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_ablating_a_discovered_gate_is_exact():
    torch.manual_seed(0)
    model = P.se_eca_net().eval()
    se = next(s for s in attnviz.discover(model) if s.layer == "layer1.0.se")
    seen = {}
    h1 = model.layer1[0].se.register_forward_hook(
        lambda m, args, out: seen.update(inp=args[0], out=out))
    try:
        with torch.no_grad(), attnviz.intervene(model, {se.name: torch.ones_like}):
            model(torch.randn(2, 3, 64, 64))
    finally:
        h1.remove()
    assert torch.equal(seen["out"], seen["inp"])  # a gate of ones: SE passes its input through
    rows = attnviz.metrics.gate_ablation(model, _image(3), batch_size=8)
    assert [r["tap"] for r in rows] == [s.name for s in attnviz.discover(model)]
    assert hook_count(model) == 0


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_imagenet_architectures_name_their_classes():
    names = attnviz.imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[281] == "tabby cat" and names[0] == "tench" and names[999] == "toilet paper"
    model = attnviz.create_model("seresnet50")
    assert model.info.classes == list(names)
    assert attnviz.create_model("seresnet50", num_classes=10).info.classes is None
    a = attnviz.inspect(model, _image(4), attributions=(), top_k=3)
    assert all(n in names for n, _ in a.top_k) and a.notes == []


def test_readme_your_own_model_example_runs(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    section = (root / "README.md").read_text().split("## Your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for d in ("examples", "assets"):
        (tmp_path / d).symlink_to(root / d)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "['affinity', 'calibration', 'channel', 'channel_affinity', 'group', 'kernel', " \
           "'spatial']" in out
    assert "Discovery: 8 attention tensor(s)" in out and "ImageNet mean/std" in out
    assert (tmp_path / "my_net.safetensors").stat().st_size > 0
    cmd = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    assert "--model mine=examples/paper_style_net.py" in cmd and "--weights" in cmd
