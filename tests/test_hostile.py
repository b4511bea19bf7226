"""Hostile input and load against a loopback server (issue 12): nothing may exhaust, hold or
pollute it. Each test reproduces one attack, asserts the clear message, and that the server still
answers a normal request correctly afterwards. The server runs with small limits (set through its
environment) so the attacks stay cheap."""
from __future__ import annotations

import base64
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from app_fixtures import ROOT, _wait, free_port

LIMITS = {  # small limits make each attack cheap; each test states which one it reaches
    "ATTNVIZ_JOB_MAX_SECONDS": "60",
    "ATTNVIZ_TRAIN_IMAGE_MAX_MP": "4",
    "ATTNVIZ_TRAIN_TOTAL_MAX_MP": "6",
    "ATTNVIZ_SESSION_MEMORY_MB": "40",
    "ATTNVIZ_USER_MODELS_MAX": "3",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, runs folder, process) of a `python app.py` with the small LIMITS."""
    tmp = tmp_path_factory.mktemp("hostile")
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               ATTNVIZ_RUNS_DIR=str(tmp / "runs"), ATTNVIZ_ALLOW_DOWNLOAD="0",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp / "gradio"),
               TMPDIR=str(tmp), PYTHONUNBUFFERED="1", **LIMITS)
    log = tmp / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait(url, proc, log)
        yield url, tmp / "runs", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


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
