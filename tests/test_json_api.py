"""The lean JSON route (attnviz/app/json_api.py) against a real `python app.py`: the same
answer as Gradio's /inspect, and hostile input refused with a clear message while the server
keeps serving (paths outside the uploads, data: URL bombs, oversized bodies, broken JSON, wrong
types, unknown fields and models, a full house)."""
from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from app_fixtures import ROOT, serve_app
from bad_inputs import image_cases, png_header_bomb
from gradio_client import Client, handle_file
from PIL import Image

from attnviz.tools.serving_client import RawClient

pytestmark = pytest.mark.slow

STAR = ROOT / "assets" / "examples" / "star.png"
LIMITS = {"ATTNVIZ_REQUEST_MAX_MB": "1", "ATTNVIZ_DATA_URL_MAX_MB": "0.5"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("json_api")
    with serve_app(tmp, env=LIMITS) as (url, proc):
        yield url


def post(url, body, raw: bool = False, timeout: float = 120):
    data = body if raw else json.dumps(body)
    return httpx.post(url + "attnviz/api/inspect", content=data, timeout=timeout,
                      headers={"Content-Type": "application/json"})


def refused(r, status: int, *words: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    out = r.json()
    assert set(out) == {"error", "title"} and out["error"], out
    for w in words:
        assert w.lower() in out["error"].lower(), out
    assert len(r.text) < 3000  # nothing echoed in full
    return out


def decode(data_url: str) -> np.ndarray:
    head, _, body = data_url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(body))).convert("RGB"))


def test_the_answer_is_gradios_inspect(server):
    c = RawClient(server)
    path = c.upload(STAR)
    r = post(server, {"image": path, "model": "lite_cbam", "method": "gradcam"})
    assert r.status_code == 200, r.text[:300]
    lean = r.json()
    g = Client(server, verbose=False).predict(handle_file(str(STAR)), "lite_cbam", "gradcam",
                                              "per map", api_name="/inspect")
    top5, _, head_att, head_attr, details, gallery, legend, summary = g
    assert lean["top5"] == {c["label"]: pytest.approx(c["confidence"], abs=1e-6)
                            for c in top5["confidences"]}
    for k in ("top_k", "agreement", "overlays", "headline", "attribution"):
        assert lean["summary"][k] == summary[k], k
    assert lean["agreement"] == details
    assert lean["images"]["head_att"]["label"] == head_att["label"]
    assert "CBAM spatial" in lean["images"]["head_att"]["label"]
    att = decode(lean["images"]["head_att"]["data"])
    ref = np.asarray(Image.open(head_att["value"]).convert("RGB"))
    assert att.shape == ref.shape == (128, 128, 3)
    assert np.abs(att.astype(int) - ref).mean() < 1  # the same JPEG of the same overlay
    assert [t["caption"] for t in lean["gallery"]] == [g["caption"] for g in gallery]
    assert all(decode(t["data"]).shape[1] == 128 for t in lean["gallery"])
    assert decode(lean["images"]["legend"]["data"]).shape == np.asarray(
        Image.open(legend)).shape[:2] + (3,)
    # without the gallery: the same analysis, no tiles
    r = post(server, {"image": path, "model": "lite_cbam", "gallery": False})
    assert r.status_code == 200 and r.json()["gallery"] == []
    assert r.json()["summary"]["top_k"] == lean["summary"]["top_k"]
    models = httpx.get(server + "attnviz/api/models").json()["models"]
    assert "lite_cbam" in models and "lite_danet" in models


def test_an_image_as_a_data_url_and_an_example(server):
    b = io.BytesIO()
    Image.open(STAR).save(b, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(b.getvalue()).decode()
    a = post(server, {"image": url, "model": "lite_sge"})
    e = post(server, {"image": str(STAR), "model": "lite_sge"})  # a shipped example: allowed
    assert a.status_code == e.status_code == 200, (a.text[:300], e.text[:300])
    assert a.json()["summary"]["top_k"] == e.json()["summary"]["top_k"]


def test_images_at_the_size_they_are_shown(server, tmp_path):
    """A large upload: the headline overlays at the display size (512 px, shown full screen on
    request), the gallery tiles at TILE_SIDE (shown 4-5 to a row)."""
    from attnviz.app.inspect_views import TILE_SIDE
    p = tmp_path / "wide.png"
    x = np.linspace(0, 255, 1000)[None, :, None]
    Image.fromarray(np.broadcast_to(x, (600, 1000, 3)).astype(np.uint8)).save(p)
    r = post(server, {"image": RawClient(server).upload(p), "model": "lite_cbam"})
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert decode(out["images"]["head_att"]["data"]).shape == (307, 512, 3)
    tiles = [decode(t["data"]) for t in out["gallery"]]
    assert len(tiles) == 5 and all(t.shape[1] == TILE_SIDE for t in tiles)
    assert all(t.shape[0] > round(TILE_SIDE * 0.6) for t in tiles)  # the overlay, then its bar


@pytest.mark.parametrize("path", ["/etc/passwd", str(ROOT / "app.py"), "../../../etc/hostname",
                                  str(ROOT / "assets" / "examples"), "/proc/self/environ",
                                  "x" * 5000, "a\x00b"])
def test_a_path_not_uploaded_here_is_refused(server, path):
    refused(post(server, {"image": path}), 400, "not uploaded to this server")


def test_hostile_images_are_refused_and_odd_ones_analysed(server, tmp_path):
    c = RawClient(server)
    for name, (p, expect) in image_cases(tmp_path / "imgs").items():
        r = post(server, {"image": c.upload(p), "model": "lite_cbam"})
        if expect == "ok":
            assert r.status_code == 200, (name, r.text[:300])
            assert len(r.json()["top5"]) == 5
        else:
            refused(r, 400)
    bomb = "data:image/png;base64," + base64.b64encode(png_header_bomb()).decode()
    refused(post(server, {"image": bomb}), 400, "megapixels")


def test_bad_requests_are_refused_with_a_message(server):
    path = RawClient(server).upload(STAR)
    refused(post(server, b"{not json", raw=True), 400, "JSON object")
    refused(post(server, b"[1, 2, 3]", raw=True), 400, "JSON object")
    refused(post(server, b"\xff\xfe\x00", raw=True), 400, "JSON object")
    refused(post(server, b"[" * 100_000 + b"]" * 100_000, raw=True), 400, "JSON object")
    refused(post(server, {}), 400, "send an image")
    refused(post(server, {"image": 5}), 400, "'image' must be")
    refused(post(server, {"image": path, "model": ["lite_cbam"]}), 400, "'model' must be")
    refused(post(server, {"image": path, "model": "no_such_model"}), 400, "unknown model")
    refused(post(server, {"image": path, "method": "magic"}), 400)
    refused(post(server, {"image": path, "scale": "z" * 100_000}), 400, "(100000 characters)")
    refused(post(server, {"image": path, "gallery": "yes"}), 400, "'gallery'")
    refused(post(server, {"image": path, "evil": 1}), 400, "unknown field")
    refused(post(server, {"image": path, "target": "no such class"}), 400)
    refused(post(server, {"image": path, "box": "1, 2"}), 400)
    refused(post(server, {"image": path, "mask": "/etc/passwd"}), 400, "not uploaded")
    # over the request limit (1 MB here): 413 before the body is read
    r = post(server, {"image": "data:image/png;base64," + "A" * 2_000_000})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    refused(httpx.get(server + "attnviz/api/inspect"), 405)
    refused(httpx.post(server + "attnviz/api/nothing" + "x" * 5000), 404, "characters")
    # still serving, and no analysis kept by the route's requests
    health = Client(server, verbose=False)
    before = health.predict(api_name="/health")["sessions"]["sessions"]
    for _ in range(3):
        r = post(server, {"image": path, "model": "lite_cbam"})
        assert r.status_code == 200 and len(r.json()["gallery"]) == 5
    after = health.predict(api_name="/health")
    assert after["sessions"]["sessions"] == before
    assert after["models"]["lite_cbam"]["hooks_leaked"] == 0


def test_a_full_house_is_told_to_come_back():
    """Admission: at most `running` at once and `waiting` more; beyond that a clear 429."""
    import threading

    import anyio

    from attnviz.app.json_api import Admission, Refusal
    gate = threading.Event()
    adm = Admission(running=1, waiting=1)
    results = []

    async def main():
        async def one():
            try:
                results.append(await adm.run(gate.wait, 30))
            except Refusal as r:
                results.append(r)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
            await anyio.sleep(0.3)
            gate.set()

    anyio.run(main)
    refusals = [r for r in results if isinstance(r, Refusal)]
    assert len(results) == 3 and len(refusals) == 1
    assert refusals[0].status == 429 and "busy" in refusals[0].message
    assert adm.inside == 0


def test_the_readme_example_runs_as_written(server, tmp_path):
    import re
    import subprocess
    import sys
    section = (ROOT / "README.md").read_text().split("the lean JSON route", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"http://127.0.0.1:7860"', repr(server.rstrip("/")))
    script = tmp_path / "lean_example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CBAM spatial" in out.stdout and "lite_cbam" in out.stdout
