"""Fixtures for the app tests: one `python app.py` server per test session on a free port, with
its own runs/ folder, downloads off, and a gradio_client Client for it.

    def test_x(app_url, client): ...
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
START_TIMEOUT = 180
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"  # browser screenshots
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not answer within {START_TIMEOUT} s:\n"
                       f"{log.read_text()[-4000:]}")


def app_env(tmp: Path, port: int, **extra) -> dict:
    """The environment of a test server: loopback, its own runs/ and temp folder, no downloads."""
    return dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                ATTNVIZ_RUNS_DIR=str(tmp / "runs"), ATTNVIZ_ALLOW_DOWNLOAD="0",
                GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp / "gradio"),
                PYTHONUNBUFFERED="1", **extra)


@contextlib.contextmanager
def serve_app(tmp: Path, args=(), env=None):
    """Run `python app.py *args` on a free loopback port with its runs/, Gradio temp folder and
    log under ``tmp`` (downloads off); yield (url, process); stop its process group after."""
    port = free_port()
    full_env = app_env(tmp, port, **(env or {}))
    log = tmp / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=ROOT, env=full_env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait(url, proc, log)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """(url, runs folder, process) of a running `python app.py`."""
    tmp = tmp_path_factory.mktemp("app")
    with serve_app(tmp) as (url, proc):
        yield url, tmp / "runs", proc


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    return app_server[0]


@pytest.fixture(scope="session")
def runs_dir(app_server) -> Path:
    return app_server[1]


@pytest.fixture
def client(app_url):
    """A fresh gradio_client session (its own gr.State)."""
    from gradio_client import Client
    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def example_paths() -> dict:
    """{class name: path} of the shipped synthetic examples."""
    return {p.stem: p for p in sorted(EXAMPLES.glob("*.png")) if not p.stem.endswith("_mask")}


@pytest.fixture(scope="module")
def browser():
    """Debian's headless chromium through playwright (never `playwright install`)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh dev installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


def call_raw(url: str, api: str, data: list, timeout: float = 120) -> tuple[str, str]:
    """("complete" | "error", the event stream's text) of a raw /call request: what any HTTP
    client can send, outside gradio_client's checks."""
    import httpx
    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=timeout)
    if r.status_code != 200:
        return "error", r.text
    text = httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=timeout).text
    kind = "error" if "event: error" in text else "complete"
    return kind, text
