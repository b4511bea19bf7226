"""Hostile input and load against a loopback server (issue 12): nothing may exhaust, hold or
pollute it. Each test reproduces one attack, asserts the clear message, and that the server still
answers a normal request correctly afterwards. The server runs with small limits (set through its
environment) so the attacks stay cheap."""
from __future__ import annotations

import base64
import struct
import time
import zlib
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from app_fixtures import ROOT, serve_app

pytestmark = pytest.mark.slow  # starts Gradio servers

LIMITS = {  # small limits make each attack cheap; each test states which one it reaches
    "ATTNVIZ_JOB_MAX_SECONDS": "300",
    "ATTNVIZ_SLOT_WAIT_SECONDS": "2",
    "ATTNVIZ_TRAIN_IMAGE_MAX_MP": "4",
    "ATTNVIZ_TRAIN_TOTAL_MAX_MP": "6",
    "ATTNVIZ_SESSION_MEMORY_MB": "20",
    "ATTNVIZ_USER_MODELS_MAX": "2",
    "GRADIO_HEARTBEAT_INTERVAL": "1",  # a closed page is noticed within a second
    "ATTNVIZ_EXPORT_KEEP_SECONDS": "0",  # an export's folder goes at the next export
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, runs folder, process) of a `python app.py` with the small LIMITS."""
    tmp = tmp_path_factory.mktemp("hostile")
    env = dict(TMPDIR=str(tmp), **LIMITS)
    with serve_app(tmp, env=env) as (url, proc):
        yield url, tmp / "runs", proc


@pytest.fixture
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def star():
    return ROOT / "assets" / "examples" / "star.png"


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(key)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _top1(client, image, model="lite_cbam"):
    out = client.predict(handle_file(str(image)), model, "gradcam", "per map",
                         api_name="/inspect")
    return out[0]["label"], round(out[0]["confidences"][0]["confidence"], 4)


def _call(url: str, api: str, data: list, timeout: float = 120) -> tuple[str, str]:
    """("complete" | "error", payload) of a raw /call request (what any HTTP client can send)."""
    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=timeout)
    r.raise_for_status()
    text = httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=timeout).text
    kind = "error" if "event: error" in text else "complete"
    return kind, text


def png_bomb(width: int, height: int) -> bytes:
    """A valid one-bit PNG of width x height black pixels: ~20 KB for 13000 x 13000 (169 MP),
    which decodes to 169 MB and to 507 MB as RGB."""
    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    raw = zlib.compress((b"\x00" * (1 + (width + 7) // 8)) * height, 9)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------ 1. image size
def test_data_url_bomb_is_refused_from_its_header(server, client, star):
    """A 13000 x 13000 PNG sent as a data: URL is refused before anything decodes it: a clear
    message, and the server's peak memory barely moves (Gradio's own decoding took +1.7 GB)."""
    url, _, proc = server
    before = _top1(client, star)
    data_url = "data:image/png;base64," + base64.b64encode(png_bomb(13000, 13000)).decode()
    _reset_peak(proc.pid)
    rss0 = _status_mb(proc.pid, "VmRSS")
    kind, text = _call(url, "inspect", [{"url": data_url, "path": None,
                                         "meta": {"_type": "gradio.FileData"}},
                                        "lite_cbam", "gradcam", "per map"])
    peak = _status_mb(proc.pid, "VmHWM")
    assert kind == "error" and "megapixels" in text and "13000 x 13000" in text, text[:500]
    assert peak - rss0 < 150, f"peak RSS rose by {peak - rss0:.0f} MB"
    # a small image as a data: URL still works, and so does a normal request
    small = "data:image/png;base64," + base64.b64encode(star.read_bytes()).decode()
    kind, text = _call(url, "inspect", [{"url": small, "path": None,
                                         "meta": {"_type": "gradio.FileData"}},
                                        "lite_cbam", "gradcam", "per map"])
    assert kind == "complete", text[:500]
    assert _top1(client, star) == before


def test_echoed_input_is_capped(server, client, star):
    """A 2 MB model name or image path comes back as a short message, not echoed in full."""
    url = server[0]
    name = "x" * 2_000_000
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(star)), name, "gradcam", "per map", api_name="/inspect")
    assert "Unknown model" in str(e.value) and len(str(e.value)) < 3000, len(str(e.value))
    kind, text = _call(url, "inspect", [{"path": "data:" + "A" * 1_000_000}, "lite_cbam",
                                        "gradcam", "per map"])
    assert kind == "error" and len(text) < 5000, len(text)
    assert _top1(client, star)[0] == "star"


# ------------------------------------------------------------------------------ 2. cancel
def _health(client) -> dict:
    return client.predict(api_name="/health")


def _wait_for(pred, timeout: float, what: str, step: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def test_cancel_stops_the_job_frees_the_slot_and_writes_nothing(server, client):
    """A cancelled training stops at its next step: the heavy slot is free within seconds,
    no checkpoint appears, and meanwhile an evaluation is told at once until when the server is
    busy; a cancelled evaluation stops the same way."""
    url, runs, _ = server
    job = client.submit("lite_se", "synthetic shapes", None, 20, 1024, "cancel_me",
                        api_name="/train")
    running = _wait_for(lambda: _health(client)["job"], 90, "the training did not start")
    assert "cancel_me" in running["what"]
    other = Client(url, verbose=False)
    with pytest.raises(Exception) as e:
        other.predict("lite_cbam", 50, api_name="/evaluate")
    assert "busy" in str(e.value).lower() and "ends by" in str(e.value), str(e.value)
    time.sleep(2)  # a few steps in
    job.cancel()
    # (a bound for a loaded CI machine: the first step waits for the epoch's images)
    _wait_for(lambda: _health(client)["job"] is None, 120, "the cancelled training still runs")
    time.sleep(1)
    assert not list(runs.glob("cancel_me*")) and not list(runs.glob(".training-*"))
    assert "cancel_me" not in client.predict(api_name="/models")[1]
    assert _health(client)["jobs"]["stopped"] >= 1
    # the slot is free: an evaluation runs; a cancelled one stops as well
    md = other.predict("lite_cbam", 50, api_name="/evaluate")[0]
    assert "accuracy" in md
    job = other.submit("lite_cbam", 2000, api_name="/evaluate")
    _wait_for(lambda: _health(client)["job"], 60, "the evaluation did not start")
    time.sleep(1)
    job.cancel()
    _wait_for(lambda: _health(client)["job"] is None, 120, "the cancelled evaluation still runs")
    assert other.predict("lite_cbam", 50, api_name="/evaluate")[0].count("accuracy") == 1


# ------------------------------------------------------------------------------ 3. uploads
def _zip(path: Path, members: dict) -> Path:
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _small_png(seed=0) -> bytes:
    import io

    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(b, "PNG")
    return b.getvalue()


@pytest.mark.parametrize("case,words", [
    ("total", ("megapixels in all", "downscale")),   # 4 x 4 MP > 6 MP in all
    ("one", ("3000 x 3000", "4 megapixels")),        # one image over 4 MP
    ("clash", ("both a file and a folder",)),        # a file `cat` and a folder `cat/`
    ("long", ("longer than 255",)),                  # a 300-character folder name
])
def test_hostage_and_broken_zips_are_refused_clearly(server, client, tmp_path, star, case, words):
    """Pixel-heavy zips are refused from the images' headers (nothing decoded); zips that
    cannot be unpacked say why without the server's folders in the message."""
    bomb = png_bomb(2000, 2000)
    members = {
        "total": {f"d/{c}/{i}.png": bomb for c in ("a", "b") for i in range(2)},
        "one": {"d/a/1.png": png_bomb(3000, 3000), "d/b/1.png": _small_png()},
        "clash": {"d/cat": b"x", "d/cat/1.png": _small_png(), "d/dog/1.png": _small_png(1)},
        "long": {f"d/{'c' * 300}/1.png": _small_png(), "d/dog/1.png": _small_png(1)},
    }[case]
    path = _zip(tmp_path / "upload.zip", members)
    with pytest.raises(Exception) as e:
        client.predict("lite_se", "uploaded zip of class folders", handle_file(str(path)), 1,
                       64, f"z_{case}", api_name="/train")
    msg = str(e.value)
    for w in words:
        assert w.lower() in msg.lower(), msg
    for leak in ("FileExistsError", "OSError", "attnviz_zip_", "/tmp/", "Something went wrong"):
        assert leak not in msg, msg
    assert _health(client)["job"] is None
    assert _top1(client, star)[0] == "star"


# ------------------------------------------------------------------------------ 4. sessions
def test_session_memory_is_bounded_and_freed(server, client, tmp_path, star):
    """Seven sessions that each analysed a 2.25-megapixel image hold at most the 20 MB limit
    together (each would keep ~16 MB); the least recently used one is told its analysis was
    dropped; a page that closes frees its analysis at once."""
    import threading

    import numpy as np
    from PIL import Image
    url, _, proc = server
    y, x = np.mgrid[0:1500, 0:1500]
    big = tmp_path / "big.png"
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(big)
    clients = [Client(url, verbose=False) for _ in range(7)]
    for c in clients:
        c.predict(handle_file(str(big)), "lite_cbam", "gradcam", "per map", api_name="/inspect")
    held = _health(client)["sessions"]
    assert held["mb"] <= held["max_mb"] == 20 and held["evicted"] >= 3, held
    with pytest.raises(Exception, match="dropped to free server memory"):
        clients[0].predict(api_name="/export")
    assert clients[-1].predict(api_name="/export")[0]  # the latest one is whole
    # a browser page that closes: its heartbeat connection ends, the unload event frees it
    page = Client(url, verbose=False)
    page.predict(handle_file(str(star)), "lite_cbam", "gradcam", "per map", api_name="/inspect")
    freed = _health(client)["sessions"]["freed"]
    stop = threading.Event()

    def heartbeat():
        with httpx.stream("GET", f"{url}gradio_api/heartbeat/{page.session_hash}",
                          timeout=30) as r:
            for _ in r.iter_lines():
                if stop.is_set():
                    break
    t = threading.Thread(target=heartbeat)
    t.start()
    time.sleep(2)
    stop.set()
    t.join(10)
    _wait_for(lambda: _health(client)["sessions"]["freed"] > freed, 30,
              "the closed page's analysis was not freed")
    with pytest.raises(Exception, match="freed when its page was closed"):
        page.predict(api_name="/export")
    assert _top1(client, star)[0] == "star"


# ------------------------------------------------------------------------------ 5. user models
MARKUP = ["<img src=x onerror=alert(1)>"] + [f"<b>c{i}</b>" for i in range(5)]


def test_user_models_are_private_capped_and_escaped(server, client, star, tmp_path):
    """A model trained by one session is not offered to another; names are compared ignoring
    case; class names with markup are refused at training and shown escaped from an older card;
    the count limit (2 here) refuses one more."""
    import json
    import shutil
    url, runs, _ = server
    other = Client(url, verbose=False)
    client.predict("lite_se", "synthetic shapes", None, 1, 64, "mine", api_name="/train")
    assert "mine" in client.predict(api_name="/models")[1]
    assert "mine" not in other.predict(api_name="/models")[1]
    with pytest.raises(Exception, match="(?i)unknown model"):
        other.predict(handle_file(str(star)), "mine", "gradcam", "per map", api_name="/inspect")
    for name, words in (("MINE", "ignoring case"), ("Lite_CBAM", "shipped")):
        with pytest.raises(Exception) as e:
            other.predict("lite_se", "synthetic shapes", None, 1, 64, name, api_name="/train")
        assert words in str(e.value), str(e.value)
    # a class folder with markup is refused
    zpath = _zip(tmp_path / "x.zip", {f"d/{c}/{i}.png": _small_png(i)
                                      for c in (MARKUP[0], "dog") for i in range(4)})
    with pytest.raises(Exception) as e:
        other.predict("lite_se", "uploaded zip of class folders", handle_file(str(zpath)), 1, 64,
                      "marked", api_name="/train")
    assert "class folder names" in str(e.value).lower() and "<img" not in str(e.value), e.value
    # an older card (shared, no owner) whose class names carry markup is shown escaped
    card = json.loads((runs / "mine.json").read_text())
    card.pop("owner", None)
    card.update(name="legacy", classes=MARKUP, weights_file="legacy.safetensors")
    (runs / "legacy.json").write_text(json.dumps(card))
    shutil.copy(runs / "mine.safetensors", runs / "legacy.safetensors")
    md = other.predict("legacy", api_name="/model_card")[0]
    details = other.predict(handle_file(str(star)), "legacy", "gradcam", "per map",
                            api_name="/inspect")[4]
    head = other.predict(handle_file(str(star)), ["legacy", "lite_cbam"], "strongest",
                         "gradcam", "per map", api_name="/compare")[0]
    head = head.get("value") if isinstance(head, dict) else head
    for text in (md, details, head):
        assert "<img" not in text and "<b>" not in text and "&lt;" in text, text
    # two models trained here: the limit
    with pytest.raises(Exception) as e:
        other.predict("lite_se", "synthetic shapes", None, 1, 64, "third", api_name="/train")
    assert "limit is 2 models" in str(e.value), str(e.value)
    assert _top1(other, star)[0] == "star"


# ------------------------------------------------------------------------------ 6. small leaks
def test_exports_affinity_and_health_leave_nothing_behind(server, client, star):
    """Export folders do not pile up; /affinity on a model without affinity says why; /health
    tells hooks held by running requests from leaked ones (none) while requests run."""
    import threading
    url, _, proc = server
    tmp = server[1].parent  # the server's TMPDIR
    _top1(client, star)
    for _ in range(3):
        assert Path(client.predict(api_name="/export")[0]).is_file()
    assert len(list(tmp.glob("attnviz_export_*"))) <= 1
    with pytest.raises(Exception, match="no position-affinity module"):
        client.predict(10, 10, "per map", api_name="/affinity")
    stop, readings = threading.Event(), []

    def load():
        c = Client(url, verbose=False)
        while not stop.is_set():
            _top1(c, star)
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(15):
            readings.append(_health(client)["models"]["lite_cbam"])
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    for h in readings:
        assert h["hooks_leaked"] == 0 and h["hooks"] == h["hooks_in_flight"], h
    assert _health(client)["models"]["lite_cbam"]["hooks"] == 0


# ------------------------------------------------------------------------------ in-process
def test_job_limits_and_the_busy_answer():
    """A job over its wall time stops at its next check; a second job is told what runs and
    until when; a failed job frees the slot."""
    import threading

    from attnviz.app import jobs
    job = jobs.Job("training t", max_seconds=0)
    with pytest.raises(jobs.JobStopped, match="time limit"):
        job.check()
    inside, release = threading.Event(), threading.Event()

    def hold():
        with jobs.heavy_job("training holder", max_seconds=600):
            inside.set()
            release.wait(20)
    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(20)
    with pytest.raises(jobs.Busy, match=r"training holder started at .* ends by .* UTC"):
        with jobs.heavy_job("an evaluation", wait=0.1):
            pass
    assert jobs.current()["what"] == "training holder"
    release.set()
    t.join(20)
    with pytest.raises(ValueError):
        with jobs.heavy_job("a failing job", wait=5):
            raise ValueError("boom")
    assert jobs.current() is None
    with jobs.heavy_job("the next job", wait=5):
        assert jobs.current()["what"] == "the next job"


def test_zip_reading_stops_at_the_next_image(tmp_path, monkeypatch):
    """An exception from the progress callback (a cancelled request) stops the reading at once;
    the temporary folder goes with it."""
    from attnviz.datasets import load_image_folder
    path = _zip(tmp_path / "set.zip", {f"d/{c}/{i}.png": _small_png(i)
                                       for c in ("a", "b") for i in range(10)})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen = []

    class Stop(Exception):
        pass

    def progress(d):
        seen.append(d["stage"])
        if d["stage"] == "read" and d["done"] == 3:
            raise Stop
    with pytest.raises(Stop):
        load_image_folder(path, progress=progress)
    assert seen.count("read") == 3 and seen.count("check") == 20
    assert list(scratch.iterdir()) == []  # the unpacked files are gone
    data = load_image_folder(path, max_total_pixels=20 * 40 * 40)
    assert len(data) == 20
    with pytest.raises(Exception, match="megapixels in all"):
        load_image_folder(path, max_total_pixels=19 * 40 * 40)


def test_readme_lists_every_limit():
    """The README's reliability section names every limit variable the app reads."""
    import re
    src = (ROOT / "attnviz" / "app" / "limits.py").read_text()
    readme = (ROOT / "README.md").read_text().split("## Reliability", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r'"(ATTNVIZ_[A-Z_]+)"', src))
    assert len(names) >= 12
    assert sorted(n for n in names if n not in readme) == []
