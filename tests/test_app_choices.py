"""What is explained, where, against which ground truth, through the app's API: /inspect's
optional target (index or class name), layer (a convolutional stage by path) and mask (an upload
the size of the image; any other path refused like an image's), on a launched server."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from app_fixtures import ROOT, call_raw, serve_app
from gradio_client import Client, handle_file
from PIL import Image

import attnviz

pytestmark = pytest.mark.slow
STAR = ROOT / "assets" / "examples" / "star.png"
STAR_MASK = ROOT / "assets" / "examples" / "star_mask.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_app(tmp_path_factory.mktemp("choices")) as (url, _proc):
        yield url


def summary_of(out):
    return next(v for v in out if isinstance(v, dict) and "target_name" in v)


def test_target_layer_and_mask_through_inspect(server, tmp_path):
    client = Client(server, verbose=False)
    # the old four-argument call still explains the prediction at the default layer
    old = summary_of(client.predict(handle_file(str(STAR)), "lite_cbam", "layercam", "per map",
                                    api_name="/inspect"))
    assert old["target_name"] == "star" and old["attributions"]["layercam"]["layer"] == "layer4"
    assert old["mask_source"] == "example"  # the shipped example's own mask
    # another class by name, another layer, the user's own mask (here: the top half)
    top = np.zeros((128, 128), np.uint8)
    top[:64] = 255
    Image.fromarray(top).save(tmp_path / "top.png")
    new = summary_of(client.predict(handle_file(str(STAR)), "lite_cbam", "layercam", "per map",
                                    "triangle", "layer3", handle_file(str(tmp_path / "top.png")),
                                    api_name="/inspect"))
    att = new["attributions"]["layercam"]
    assert (new["target"], new["target_name"], att["target"], att["layer"]) == \
        (1, "triangle", 1, "layer3")
    assert new["mask_source"] == "uploaded" and new["layer"] == "layer3"
    # the same attribution as the library's
    model = attnviz.create_model("lite_cbam", pretrained=True)
    lib = attnviz.explain(model, str(STAR), "layercam", target=1, layer="layer3")
    assert att["raw_shape"] == list(lib.raw.shape)
    assert abs(att["max"] - float(lib.map.max())) < 1e-4 * max(1.0, float(lib.map.max()))
    # the scores use the uploaded mask: library's score_analysis with that mask
    scores = client.predict(api_name="/scores")
    rows, name = {}, ""
    for r in scores["data"]:  # the score's name on its first row only
        name = r[0] or name
        rows[(name, r[1])] = r[2]
    a = attnviz.inspect(model, str(STAR), attributions=["layercam"], target=1,
                        explain_opts={"layercam": {"layer": "layer3"}})
    s = attnviz.score_analysis(model, a, top.astype(bool), faithfulness=False)
    want = "hit" if s["pointing"]["layercam"] else "miss"
    got = [v for (k, m), v in rows.items() if k == "pointing game" and m == "LayerCAM"]
    assert got == [want], rows
    # the export's scores.json says what was explained, where, against which mask
    path, _note = client.predict(api_name="/export")
    path = path.get("value", path) if isinstance(path, dict) else path
    path = path.get("path", path) if isinstance(path, dict) else path
    with zipfile.ZipFile(path) as z:
        exported = json.loads(z.read("scores.json"))
    assert exported["attributions"]["layercam"]["target"] == 1
    assert exported["attributions"]["layercam"]["layer"] == "layer3"
    assert (exported["layer"], exported["mask_source"]) == ("layer3", "uploaded")
    energy = rows[("energy in object", "LayerCAM")]
    assert energy == round(float(s["energy"]["layercam"]), 3)
    # a typed box instead of a mask: the same scores as the library's with that box
    boxed = summary_of(client.predict(handle_file(str(STAR)), "lite_cbam", "layercam",
                                      "per map", "triangle", "layer3", None, "0, 0, 127, 63",
                                      api_name="/inspect"))
    assert boxed["mask_source"] == "box"
    box_rows, name = {}, ""
    for r in client.predict(api_name="/scores")["data"]:
        name = r[0] or name
        box_rows[(name, r[1])] = r[2]
    from attnviz.analysis.inspect import box_mask
    sb = attnviz.score_analysis(model, a, box_mask("0, 0, 127, 63", (128, 128)),
                                faithfulness=False)
    assert box_rows[("energy in object", "LayerCAM")] == round(float(sb["energy"]["layercam"]), 3)
    star = attnviz.score_analysis(model, a, str(STAR_MASK), faithfulness=False)
    assert abs(star["energy"]["layercam"] - s["energy"]["layercam"]) > 0.01  # the mask matters


def test_bad_choices_are_answered_clearly(server):
    client = Client(server, verbose=False)
    for args, words in (((" dog", None, None), "No class named 'dog'"),
                        ((None, "layer9", None), "layer4"),
                        ((None, None, handle_file(str(STAR_MASK.with_name("ring.png")))),
                         None)):
        with pytest.raises(Exception) as e:
            client.predict(handle_file(str(STAR)), "lite_cbam", "gradcam", "per map", *args,
                           api_name="/inspect")
        if words:
            assert words in str(e.value), str(e.value)
    # a mask path the client did not upload is refused like an image's
    kind, out = call_raw(server, "inspect", [{"path": str(STAR)}, "lite_cbam", "gradcam",
                                             "per map", None, None, {"path": "/etc/hostname"}])
    assert kind == "error" and "not uploaded to this server" in out, out[:300]
    # a raw HTTP request written before the optional inputs existed is answered as before
    kind, out = call_raw(server, "inspect", [{"path": str(STAR)}, "lite_cbam", "gradcam",
                                             "per map"])
    assert kind == "complete" and "star" in out, out[:300]
    kind, out = call_raw(server, "compare", [{"path": str(STAR)}, ["lite_cbam", "lite_se"],
                                             "strongest", "gradcam", "per map"])
    assert kind == "complete", out[:300]
    kind, out = call_raw(server, "inspect", [{"path": str(STAR)}, "lite_cbam"])  # too few
    assert kind == "error" and "input values" in out, out[:300]
    # and the server keeps serving
    ok = summary_of(client.predict(handle_file(str(STAR)), "lite_cbam", "gradcam", "per map",
                                   api_name="/inspect"))
    assert ok["target_name"] == "star"
