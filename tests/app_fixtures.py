"""Fixtures for the app tests: one `python app.py` server per test session on a free port, with
its own runs/ folder, downloads off, and a gradio_client Client for it; headless Chromium and
the opening every browser test makes (:func:`open_app`).

    def test_x(app_url, client): ...
    def test_y(browser, app_url):
        pg = open_app(browser.new_page(), app_url, until="scored")  # the first analysis scored
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
TIMEOUT = 60_000  # ms a browser test waits for the page
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


# the first screen's analysis drew its prediction (the top 5 with its percentages)
PREDICTED = ("() => document.querySelector('#av-top5') && "
             "/\\d+%/.test(document.querySelector('#av-top5').innerText)")
# an analysis of ``name`` is shown: the status names it, nothing is stale, its tiles are there
DRAWN = ("(name) => { const s = document.querySelector('#av-status');"
         " const r = document.getElementById('av-right');"
         " const imgs = [...document.querySelectorAll('#av-gal-all img')];"
         " return s && s.innerText.includes(name) && !r.classList.contains('av-stale') &&"
         " imgs.length >= 2; }")
# an analysis of ``name`` is shown with its scores (a later switch must not race its chain)
SCORED = ("(name) => { const s = document.querySelector('#av-status');"
          " const r = document.getElementById('av-right');"
          " return s && s.innerText.includes(name) && !r.classList.contains('av-stale') &&"
          " document.querySelector('#av-scores').innerText.includes('AUC'); }")


def wait_drawn(pg, name: str, timeout: float = TIMEOUT) -> None:
    """Until the analysis of ``name`` is shown: status names it, nothing stale, tiles there."""
    pg.wait_for_function(DRAWN, arg=name, timeout=timeout)


def wait_scored(pg, name: str = ".png", timeout: float = TIMEOUT) -> None:
    """Until the analysis of ``name`` is shown with its scores."""
    pg.wait_for_function(SCORED, arg=name, timeout=timeout)


def open_app(pg, url: str, until: str = "page", name: str = ".png",
             timeout: float = TIMEOUT):
    """Open the app at ``url`` in playwright page ``pg`` and wait until ``until``: "page" (its
    controls are there), "predicted" (the first screen's analysis drew its top 5), "drawn"
    (the analysis of ``name`` is shown, its tiles included) or "scored" (and its scores).
    The page's script errors are collected in ``pg.errors``. Returns ``pg``."""
    if until not in ("page", "predicted", "drawn", "scored"):
        raise ValueError(f"open_app: unknown until={until!r}")
    if not hasattr(pg, "errors"):
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(url, timeout=timeout)
    pg.wait_for_selector("#av-analyse", timeout=timeout)
    if until == "predicted":
        pg.wait_for_function(PREDICTED, timeout=timeout)
    elif until == "drawn":
        wait_drawn(pg, name, timeout)
    elif until == "scored":
        wait_scored(pg, name, timeout)
    return pg
