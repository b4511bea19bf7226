"""`python app.py --model FILE.py`: a network written in the papers' style (examples/
paper_style_net.py, which does not import attnviz) served beside the shipped models, with its
weights (safetensors), labels and input size; /inspect on it returns every kind it has. A file
that cannot be served stops the app at start-up with a message naming it."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from app_fixtures import EXAMPLES, ROOT, app_env, free_port, serve_app  # noqa: E402

pytestmark = pytest.mark.slow  # starts Gradio servers

EXAMPLE = ROOT / "examples" / "paper_style_net.py"
KINDS = {"channel", "spatial", "kernel", "group", "affinity", "calibration", "channel_affinity"}
LABELS = [f"label {i}" for i in range(10)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("external")
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import paper_style_net
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    torch.manual_seed(3)
    model = paper_style_net.create_model()
    save_file(model.state_dict(), tmp / "net.safetensors")
    (tmp / "labels.txt").write_text("\n".join(LABELS) + "\n")
    args = ["--model", f"mine={EXAMPLE}", "--weights", str(tmp / "net.safetensors"),
            "--labels", str(tmp / "labels.txt"), "--input-size", "96"]
    with serve_app(tmp, args) as (url, _proc):
        yield Client(url, verbose=False), model


def test_inspect_returns_every_kind_of_the_users_model(served):
    client, model = served
    out = client.predict(handle_file(str(EXAMPLES / "star.png")), "mine", "gradcam",
                         "per map", api_name="/inspect")
    top5, badge, summary = out[0], out[1], out[7]
    assert summary["model"] == "mine"
    assert {m["kind"] for m in summary["maps"]} == KINDS
    layers = {(m["layer"], m["kind"]) for m in summary["maps"]}
    assert ("layer2.attn.SpatialGate", "spatial") in layers
    assert ("cam", "channel_affinity") in layers
    assert ("layer3.conv2", "kernel") in layers and ("nonlocal_block", "affinity") in layers
    assert all(c["label"] in LABELS for c in top5["confidences"])
    assert "your model" in badge and "net.safetensors" in badge
    assert any("ImageNet mean/std" in n for n in summary["notes"])  # what was assumed
    assert not any("class indices" in n for n in summary["notes"])  # --labels was given
    # the weights served are the file's: the app's prediction is this model's prediction
    import attnviz
    attnviz.describe(model, input_size=96, classes=LABELS)
    local = attnviz.inspect(model.eval(), str(EXAMPLES / "star.png"), attributions=())
    assert top5["label"] == local.top_k[0][0]
    names = client.predict(api_name="/models")[1]
    assert names[0] == "mine" and "lite_cbam" in names


def test_evaluate_offers_your_model_on_its_own_class_folders(served, tmp_path):
    """Evaluate with --model: the user's model on a zip of class folders named after its labels
    (the accuracy the library gives on the same images), never the "ImageNet model" refusal;
    synthetic shapes are refused in words that say what to do. The badge says where the
    weights came from, without a ✓."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    import attnviz
    from attnviz.datasets import load_image_folder, with_classes
    from attnviz.scores.evaluate import evaluate
    client, model = served
    msg = ""
    try:
        client.predict("mine", 50, "synthetic shapes", None, api_name="/evaluate")
    except Exception as e:  # noqa: BLE001 - the message is what is checked
        msg = str(e)
    assert "its own 10 classes" in msg and "zip of class folders" in msg, msg
    assert "ImageNet" not in msg
    rng = np.random.default_rng(1)
    zpath = tmp_path / "mine.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for cls in ("label 3", "label 7"):
            for i in range(6):
                b = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(
                    b, format="PNG")
                z.writestr(f"{cls}/{i:02d}.png", b.getvalue())
    note, _, result = client.predict("mine", 50, "zip of class folders", handle_file(str(zpath)),
                                     api_name="/evaluate")
    assert result["n"] == 12 and "12 uploaded images in 2 class folders" in note, note
    attnviz.describe(model, input_size=96, classes=LABELS)
    want = evaluate(model.eval(), data=with_classes(load_image_folder(zpath, size=96), LABELS))
    assert result["accuracy"] == pytest.approx(want["accuracy"])
    badge = client.predict(handle_file(str(EXAMPLES / "star.png")), "mine", "gradcam",
                           "per map", api_name="/inspect")[1]
    assert "--weights net.safetensors" in badge and "✓" not in badge, badge


@pytest.mark.parametrize("args, words", [
    (["--model", "missing_file.py"], ["missing_file.py", "no such file"]),
    (["--model", "tests/paper_nets.py:nothing_here"], ["paper_nets.py", "nothing_here"]),
    (["--model", "tests/paper_nets.py:sge4"], ["paper_nets.py", "building the model failed"]),
    (["--model", "tests/paper_nets.py:Flatten", "--weights", "app.py"], ["weights", "app.py"]),
    (["--model", "a=tests/paper_nets.py", "--input-size", "big"], ["--input-size big"]),
    (["--weights", "app.py"], ["must follow the --model"]),
    (["--model", "lite_cbam=tests/paper_nets.py:se_eca_net"], ["taken by a shipped model"]),
    (["--serve"], ["unknown argument", "--model"]),
])
def test_a_model_that_cannot_be_served_is_refused_clearly(args, words, monkeypatch):
    from attnviz.models.external import ExternalModelError, register_args
    monkeypatch.chdir(ROOT)
    with pytest.raises(ExternalModelError) as e:
        register_args(args)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_app_stops_at_start_up_naming_the_file(tmp_path):
    bad = tmp_path / "broken_net.py"
    bad.write_text("import torch\nraise RuntimeError('broken on purpose')\n")
    r = subprocess.run([sys.executable, "app.py", "--model", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env=app_env(tmp_path, free_port()))
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("attnviz: ") and "broken_net.py failed to import" in last
    assert "RuntimeError: broken on purpose" in last
