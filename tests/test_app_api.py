"""The app through its API: a launched `python app.py` called with gradio_client, every api_name,
checking what comes back (not only its type), bad inputs answered with clear errors, and the
server still answering afterwards. Independent of whether trained checkpoints exist yet."""
from __future__ import annotations

import io
import json
import threading
import uuid
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

import attnviz  # noqa: E402
from attnviz.capture.recorder import list_taps  # noqa: E402

pytestmark = pytest.mark.slow  # starts a Gradio server

REQUIRED = ["/inspect", "/compare", "/affinity", "/ablate", "/evaluate", "/train", "/export",
            "/maps", "/scores", "/attribute", "/rescale", "/sanity", "/models", "/model_card"]


# ------------------------------------------------------------------------------ helpers
def path_of(v):
    """A file path from an image / file output (plain path or a {"value": path} update)."""
    if isinstance(v, dict):
        v = v.get("value", v.get("path", v.get("image")))
        if isinstance(v, dict):
            v = v.get("path")
    return v


def img(v) -> np.ndarray:
    return np.asarray(Image.open(path_of(v)).convert("RGB"))


def gallery(v) -> list[tuple[np.ndarray, str]]:
    return [(img(item["image"]), item.get("caption") or "") for item in v]


def table(v) -> tuple[list, list]:
    return v["headers"], v["data"]


def plotly(v) -> dict:
    assert isinstance(v, dict) and v.get("type") == "plotly", v
    return json.loads(v["plot"])


def inspect(client, image, model="lite_cbam", method="gradcam", scale="per map"):
    out = client.predict(handle_file(str(image)), model, method, scale, api_name="/inspect")
    keys = ["top5", "badge", "head_att", "head_attr", "details", "gallery", "legend", "summary"]
    return dict(zip(keys, out))


def expect_error(fn, *words):
    with pytest.raises(Exception) as e:
        fn()
    msg = str(e.value)
    for w in words:
        assert w.lower() in msg.lower(), msg
    return msg


# ------------------------------------------------------------------------------ tests
def test_every_required_endpoint_is_named(client):
    api = client.view_api(return_format="dict", print_info=False)
    named = api["named_endpoints"]
    missing = [n for n in REQUIRED if n not in named]
    assert not missing, f"missing api_names {missing}; have {sorted(named)}"
    params = [p["parameter_name"] for p in named["/inspect"]["parameters"]]
    assert params[:3] == ["image", "model_name", "method"], params


def test_inspect_prediction_overlays_and_summary(client, example_paths):
    star = example_paths["star"]
    r = inspect(client, star, "lite_cbam")
    conf = r["top5"]["confidences"]
    assert len(conf) == 5
    probs = [c["confidence"] for c in conf]
    assert all(0 <= p <= 1 for p in probs) and sum(probs) <= 1 + 1e-5
    assert probs == sorted(probs, reverse=True)
    assert r["top5"]["label"] == conf[0]["label"]
    original = np.asarray(Image.open(star).convert("RGB"))
    att, attr = img(r["head_att"]), img(r["head_attr"])
    assert att.shape == attr.shape == original.shape  # drawn at the image's own size
    assert np.abs(att.astype(int) - original).mean() > 5  # a colour map was blended in
    assert "CBAM spatial" in r["head_att"]["label"]
    items = gallery(r["gallery"])
    n_spatial = sum(k == "spatial" for _, _, k in list_taps(attnviz.create_model("lite_cbam")))
    assert len(items) == n_spatial + 1  # every spatial map and the attribution
    for im, _cap in items:  # the overlay at the image's size, its colour bar beneath
        assert im.shape[1:] == original.shape[1:] and im.shape[0] > original.shape[0]
    caps = [c for _, c in items]
    assert caps[0].startswith("layer1.0 · CBAM spatial · 32x32"), caps
    assert caps[-1].startswith("Grad-CAM")
    s = r["summary"]
    assert s["model"] == "lite_cbam" and s["example"] == "star" and s["mask_known"] is True
    assert len(s["top_k"]) == 5 and s["top_k"][0][0] == conf[0]["label"]
    assert len(s["maps"]) == 8 and s["attribution"] == "gradcam"
    assert s["headline"]["caption"].startswith("layer4.0 · CBAM spatial")
    assert s["agreement"] is None or -1 <= s["agreement"] <= 1
    assert ("random weights" in r["badge"]) != ("trained on shapes" in r["badge"])
    assert "Agreement" in r["details"]


def test_inspect_with_defaults_and_display_names(client, example_paths):
    """The README's call: three inputs, the method by its display name."""
    out = client.predict(handle_file(str(example_paths["star"])), "lite_cbam", "Grad-CAM",
                         api_name="/inspect")
    assert out[7]["attribution"] == "gradcam" and len(out[0]["confidences"]) == 5
    out = client.predict(handle_file(str(example_paths["star"])), "lite_cbam · trained on shapes",
                         "ig", api_name="/inspect")  # a dropdown label and a method alias
    assert out[7]["model"] == "lite_cbam"
    assert out[7]["attribution_pending"] == "integrated_gradients"


def test_large_upload_is_downscaled_for_display(client, tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 255, (600, 1000, 3), dtype=np.uint8)).save(p)
    r = inspect(client, p, "lite_sge")
    for v in (r["head_att"], r["head_attr"]):
        assert img(v).shape == (307, 512, 3)
    assert r["summary"]["image_size"] == [1000, 600]


def test_maps_scores_and_rescale(client, example_paths):
    inspect(client, example_paths["circle"], "lite_cbam")
    maps = client.predict("per map", api_name="/maps")
    galleries = [v for v in maps if isinstance(v, list)]
    plots = [v for v in maps if isinstance(v, dict) and v.get("type") == "plotly"]
    assert any(len(g) == 4 for g in galleries)  # the four CBAM spatial maps
    titles = [plotly(p)["layout"]["title"]["text"] for p in plots]
    assert any("CBAM spatial" in t for t in titles) and any("Channel gates" in t for t in titles)
    assert any("Spatial (4)" in str(v) for v in maps)  # the note lists the kinds present
    headers, rows = table(client.predict(api_name="/scores"))
    assert headers == ["score", "map", "value", "what it means"]
    kinds, last = [], None
    for s, _m, _v, meaning in rows:
        last = s or last
        kinds.append(last)
        if s:
            assert meaning  # one line of meaning per score
    for k in ("pointing game", "deletion AUC", "insertion AUC", "rank correlation"):
        assert k in kinds, kinds
    # each AUC beside its random reference: "0.123 (random 0.456)"; the meaning names ROAD
    import re
    aucs = [re.fullmatch(r"(\d\.\d{3}) \(random (\d\.\d{3})\)", str(v))
            for (s, m, v, _), k in zip(rows, kinds) if k.endswith("AUC")]
    assert len(aucs) == 4 and all(a and 0 <= float(a[1]) <= 1 and 0 <= float(a[2]) <= 1
                                  for a in aucs), aucs
    # the example's mask is known: each AUC also for the oracle (the map the mask implies),
    # which removes the object first, so its deletion AUC sits below its random reference's
    oracle = [(k, m, v) for (s, m, v, _), k in zip(rows, kinds)
              if k.endswith("AUC") and m.startswith("oracle")]
    assert [k for k, _, _ in oracle] == ["deletion AUC", "insertion AUC"], rows
    d = re.fullmatch(r"(\d\.\d{3}) \(random (\d\.\d{3})\)", str(oracle[0][2]))
    assert float(d[1]) < float(d[2]), oracle
    assert any("ROAD" in meaning for s, m, v, meaning in rows if s == "deletion AUC")
    assert {str(v) for (s, m, v, _), k in zip(rows, kinds) if k == "pointing game"} <= \
        {"hit", "miss"}
    _, again = table(client.predict(api_name="/scores_full"))  # computed once per analysis
    assert again == rows
    att, attr, details, gal, legend = client.predict("shared", api_name="/rescale")
    assert img(att).shape == (128, 128, 3) and len(gal) == 5
    assert img(legend).shape[1] >= 200  # the colour bar stating the scale


def test_affinity_marks_the_query(client, example_paths):
    r = inspect(client, example_paths["ring"], "lite_nonlocal")
    assert r["summary"]["headline"]["caption"].startswith("layer3.1 · non-local affinity")
    x, y = 37, 81
    gal, fig, = client.predict(x, y, "per map", api_name="/affinity")
    items = gallery(gal)
    assert len(items) == 1 and "query (37, 81)" in items[0][1]
    im = items[0][0]
    assert im.shape[1:] == (128, 3) and im.shape[0] > 128  # overlay + colour bar
    assert (im[y, x] >= 235).all()  # the query pixel itself is marked (white, JPEG-encoded)
    ring = im[y - 12:y + 13, x - 12:x + 13].reshape(-1, 3)
    assert (ring.sum(1) < 60).sum() > 10  # and outlined in black
    f = plotly(fig)
    assert any(t.get("name") == "query" for t in f["data"])
    assert "(37, 81)" in f["layout"]["title"]["text"]
    # a different query gives a different affinity row
    gal2, _ = client.predict(100, 20, "per map", api_name="/affinity")
    assert np.abs(gallery(gal2)[0][0].astype(int) - im).mean() > 1
    expect_error(lambda: client.predict(500, 20, "per map", api_name="/affinity"), "outside")


def test_affinity_needs_an_analysis(client):
    expect_error(lambda: client.predict(10, 10, "per map", api_name="/affinity"),
                 "analysis first")


def test_slow_attribution_runs_in_the_heavy_queue(client, example_paths):
    r = inspect(client, example_paths["square"], "lite_cbam", "integrated_gradients")
    assert r["summary"]["attribution_pending"] == "integrated_gradients"
    assert r["summary"]["attribution"] == "gradcam"  # shown until IG is ready
    att, attr, details, gal, legend, = client.predict("per map", api_name="/attribute")
    assert "Integrated Gradients" in attr["label"] and "Integrated Gradients" in details
    assert img(attr).shape == (128, 128, 3)


def test_compare_two_models(client, example_paths):
    out = client.predict(handle_file(str(example_paths["cross"])), ["lite_cbam", "lite_sge"],
                         "strongest", "gradcam", "shared", api_name="/compare")
    cells, tab, legend = out[:12], out[12], out[13]
    heads = [path_of(c) if not isinstance(c, dict) else c.get("value") for c in cells[0::3]]
    assert "lite_cbam" in heads[0] and "lite_sge" in heads[1]
    for i in range(2):
        att, attr = img(cells[3 * i + 1]), img(cells[3 * i + 2])
        assert att.shape == attr.shape == (128, 128, 3)
    assert "CBAM spatial" in cells[1]["label"] and "SGE group factors" in cells[4]["label"]
    for c in cells[6:]:  # rows 3 and 4 are hidden
        assert isinstance(c, dict) and c.get("visible") is False
    headers, rows = table(tab)
    assert [r[0] for r in rows] == ["lite_cbam", "lite_sge"]
    assert headers[:3] == ["model", "weights", "prediction"]
    assert all(r[5] in ("hit", "miss") for r in rows)  # the example's mask is known
    assert img(legend).shape[1] >= 200
    expect_error(lambda: client.predict(handle_file(str(example_paths["cross"])), ["lite_cbam"],
                                        "strongest", "gradcam", "shared", api_name="/compare"),
                 "two to four")
    expect_error(lambda: client.predict(handle_file(str(example_paths["cross"])),
                                        ["lite_cbam", "nope_model"], "strongest", "gradcam",
                                        "shared", api_name="/compare"), "unknown model")


def test_ablate_one_row_per_module(client, example_paths):
    fig, tab, note = client.predict(handle_file(str(example_paths["star"])), "lite_cbam",
                                    api_name="/ablate")
    headers, rows = table(tab)
    taps = list_taps(attnviz.create_model("lite_cbam"))
    assert len(rows) == len(taps) == 8
    assert {r[0] for r in rows} == {t.rsplit(".", 1)[0] for t, _, _ in taps}
    for r in rows:
        assert abs(r[4] - r[3] - r[5]) < 1e-3 and 0 <= r[3] <= 1 and 0 <= r[4] <= 1
    f = plotly(fig)
    assert len(f["data"][0]["y"]) == 8
    assert "8 attention taps" in note
    expect_error(lambda: client.predict(handle_file(str(example_paths["star"])), "lite_resnet",
                                        api_name="/ablate"), "no attention module")


def test_sanity_check_strip(client, example_paths):
    strip, fig, tab, note = client.predict(handle_file(str(example_paths["triangle"])),
                                           "lite_cbam", "gradcam", api_name="/sanity")
    items = gallery(strip)
    assert 2 <= len(items) <= 8 and items[0][1].startswith("original weights")
    headers, rows = table(tab)
    assert rows[0][2] == 1.0 and rows[1][1] == "fc" and len(rows) >= len(items)
    assert "Spearman" in note or "Spearman" in str(plotly(fig)["data"])
    # the library's verdict: per layer changed or not, and pass / fail for the method
    assert headers[-1] == "changed" and rows[0][-1] == "no"
    assert "passes" in note or "fails" in note


def test_evaluate_small(client):
    note, tab, result = client.predict("lite_cbam", 50, api_name="/evaluate")
    assert 0 <= result["accuracy"] <= 1 and result["n"] == 50
    assert "accuracy" in note
    headers, rows = table(tab)
    assert rows[0][0].startswith("Grad-CAM")
    assert any(r[1] == "spatial" for r in rows)


def test_export_zip(client, example_paths, tmp_path):
    inspect(client, example_paths["ring"], "lite_danet")
    client.predict(api_name="/scores")
    path, note = client.predict(api_name="/export")
    with zipfile.ZipFile(path_of(path)) as z:
        names = z.namelist()
        assert "image.png" in names and "scores.json" in names and "maps.npz" in names
        pngs = [n for n in names if n.startswith("overlays/") and n.endswith(".png")]
        htmls = [n for n in names if n.startswith("figures/") and n.endswith(".html")]
        assert pngs and htmls
        html = z.read(htmls[0]).decode()  # plotly.js beside the figures: they open offline
        assert "cdn.plot.ly" not in html and 'src="plotly.min.js"' in html
        assert len(z.read("figures/plotly.min.js")) > 1_000_000
        s = json.loads(z.read("scores.json"))
        assert s["model"] == "lite_danet" and len(s["top_k"]) == 5 and s["scores_table"]
        assert s["faithfulness"]  # a lite model scores at once
        for f in s["faithfulness"].values():  # numbers with their random reference
            assert {"deletion", "insertion", "random_deletion", "random_insertion",
                    "removal", "seed"} <= set(f) and f["removal"] == "road"
        npz = np.load(io.BytesIO(z.read("maps.npz")))
        aff = [k for k in npz.files if k.endswith("__affinity")]
        assert aff and npz[aff[0]].shape == (1, 256, 256)
        assert any(k.startswith("attribution__gradcam") for k in npz.files)
        Image.open(io.BytesIO(z.read(pngs[0]))).verify()
    assert "maps.npz" in note


def test_models_and_cards(client):
    tab, names = client.predict(api_name="/models")
    headers, rows = table(tab)
    assert set(attnviz.list_models("lite")) | set(attnviz.list_models("imagenet")) <= set(names)
    assert not set(attnviz.list_models("link")) & set(names)  # link-task bodies: Statistics tab
    assert names.index("lite_cbam") < names.index("resnet50")  # lite models first
    row = rows[names.index("cbam_resnet50")]
    assert row[2] == "random weights" and row[3].endswith(" M")
    md, card = client.predict("lite_danet", api_name="/model_card")
    assert "## lite_danet" in md and "Parameters:" in md
    expect_error(lambda: client.predict("no_such_model", api_name="/model_card"),
                 "unknown model")


def test_train_a_model_then_inspect_it(client, example_paths, runs_dir):
    name = f"t_{uuid.uuid4().hex[:6]}"
    out = client.predict("lite_se", "synthetic shapes", None, 1, 64, name, api_name="/train")
    note, card = out[0], out[1]
    assert name in note and card["name"] == name and card["architecture"] == "lite_se"
    assert (runs_dir / f"{name}.safetensors").is_file()
    tab, names = client.predict(api_name="/models")
    assert name in names
    r = inspect(client, example_paths["star"], name)
    assert r["summary"]["model"] == name and "trained here" in r["badge"]
    expect_error(lambda: client.predict("lite_se", "synthetic shapes", None, 1, 64, name,
                                        api_name="/train"), "already trained")
    expect_error(lambda: client.predict("lite_se", "synthetic shapes", None, 1, 64,
                                        "lite_cbam", api_name="/train"), "shipped")
    expect_error(lambda: client.predict("lite_se", "synthetic shapes", None, 1, 64,
                                        "../evil", api_name="/train"), "name")
    expect_error(lambda: client.predict("lite_se", "uploaded zip of class folders", None, 1, 64,
                                        "zipless", api_name="/train"), "zip")


def test_train_on_an_uploaded_zip(client, tmp_path, example_paths):
    rng = np.random.default_rng(0)
    zpath = tmp_path / "pets.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            for i in range(8):
                a = rng.integers(0, 60, (48, 48, 3), dtype=np.uint8)
                a[12:36, 12:36] = colour
                b = io.BytesIO()
                Image.fromarray(a).save(b, format="PNG")
                z.writestr(f"{cls}/{i:03d}.png", b.getvalue())
    name = f"z_{uuid.uuid4().hex[:6]}"
    out = client.predict("lite_cbam", "uploaded zip of class folders", handle_file(str(zpath)),
                         1, 64, name, api_name="/train")
    card = out[1]
    assert card["classes"] == ["blue", "red"] and "user image folder" in card["training"]["data"]
    r = inspect(client, example_paths["circle"], name)
    labels = [c["label"] for c in r["top5"]["confidences"]]
    assert sorted(labels) == ["blue", "red"]  # the uploaded classes, not the shapes
    bad = tmp_path / "notzip.zip"
    bad.write_text("hello")
    expect_error(lambda: client.predict("lite_cbam", "uploaded zip of class folders",
                                        handle_file(str(bad)), 1, 64, f"{name}x",
                                        api_name="/train"), "zip")


def test_bad_inputs_give_clear_errors_and_the_server_keeps_serving(client, example_paths,
                                                                   tmp_path):
    good = example_paths["star"].read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.png").write_text("this is not an image\n" * 50)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 6000)).save(bomb)  # 54 megapixels in a few kB
    expect_error(lambda: inspect(client, tmp_path / "truncated.png"), "not an image",
                 "truncated")
    expect_error(lambda: inspect(client, tmp_path / "text.png"), "not an image")
    expect_error(lambda: inspect(client, bomb), "megapixels")
    expect_error(lambda: inspect(client, example_paths["star"], "no_such_model"),
                 "unknown model", "available")
    expect_error(lambda: inspect(client, example_paths["star"], 12345), "unknown model")
    expect_error(lambda: inspect(client, example_paths["star"], "lite_cbam", "magic"),
                 "attribution method")
    expect_error(lambda: client.predict(None, "lite_cbam", "gradcam", "per map",
                                        api_name="/inspect"), "image")
    expect_error(lambda: client.predict(api_name="/export"), "analysis first")
    r = inspect(client, example_paths["star"], "lite_cbam")  # still serving
    assert len(r["top5"]["confidences"]) == 5


def test_malformed_http_calls_are_refused_with_a_reason(app_url, client, example_paths):
    import requests
    url = app_url + "gradio_api/call/inspect"

    def call(data):
        eid = requests.post(url, json={"data": data}, timeout=30).json()["event_id"]
        return requests.get(f"{url}/{eid}", timeout=60).text
    assert "input values" in call([None])  # wrong number of inputs
    outside = {"path": str(example_paths["star"]), "meta": {"_type": "gradio.FileData"}}
    assert "not uploaded" in call([outside, "lite_cbam", "gradcam", "per map"])
    no_file = {"path": None, "url": "nowhere", "meta": {"_type": "gradio.FileData"}}
    assert "uploaded file" in call([no_file, "lite_cbam", "gradcam", "per map"])
    r = inspect(client, example_paths["star"], "lite_cbam")  # still serving
    assert len(r["top5"]["confidences"]) == 5


def test_concurrent_clients_get_consistent_answers(app_url, example_paths):
    from gradio_client import Client
    jobs = [("lite_cbam", "star"), ("lite_nonlocal", "ring"), ("lite_sk", "cross"),
            ("lite_cbam", "star")]
    results, errors = {}, []

    def work(i, model, ex):
        try:
            c = Client(app_url, verbose=False)
            for k in range(2):
                r = inspect(c, example_paths[ex], model)
                # the weights are part of the key: a checkpoint may land between two calls
                results[(i, k)] = (model, ex, r["summary"]["weights"], r["summary"]["top_k"])
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i, m, e)) for i, (m, e) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 8
    by = {}
    for model, ex, weights, top in results.values():
        by.setdefault((model, ex, weights), []).append(top)
    for tops in by.values():
        ref = tops[0]
        for t in tops[1:]:
            assert [n for n, _ in t] == [n for n, _ in ref]
            assert np.allclose([p for _, p in t], [p for _, p in ref], atol=1e-5)
