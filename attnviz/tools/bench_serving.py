"""The serving benchmark: what the app adds to the engine, measured against a real server.

    python -m attnviz.tools.bench_serving [--quick] [--models lite_cbam,lite_danet] [--json out]

For each lite model and each of the app's two HTTP paths, timed alternately in one run (so
that a busy host slows all alike): Gradio's API (a raw-HTTP client: the call, its event stream
and every image the answer names) and the lean JSON route (``POST /attnviz/api/inspect``, one
exchange, images inline), each ``/inspect`` beside its own floor (a call that does nothing:
Gradio's ``/models``, the route's ``GET /attnviz/api/models``), and ``attnviz.inspect`` in this
process (the engine). Target: ``/inspect`` median minus the floor's median <= 3x the in-process
median. Then each path's server CPU time per ``/inspect`` (read from ``/proc`` over many calls)
against the in-process CPU time (target <= 3x), requests/s with p50/p95 for 1, 8 and 16 light
raw-HTTP clients on each path, and a headless browser's upload-to-first-results time. Each
figure is printed beside its target with the load average, since on a shared machine every
timing moves with the load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
import attnviz
from .serving_client import RawClient

ROOT = Path(__file__).resolve().parents[2]
LITE = ("lite_cbam", "lite_danet", "lite_sge", "lite_nonlocal", "lite_se", "lite_sk",
        "lite_sagan", "lite_scnet")
TARGET_RATIO = 3.0
TARGET_CPU_RATIO = 3.0


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python app.py`` on a free loopback port with its own temp folders (stopped on exit)."""

    def __init__(self, env: dict | None = None):
        self.tmp = Path(tempfile.mkdtemp(prefix="attnviz-serve-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1",
                        GRADIO_SERVER_PORT=str(self.port), GRADIO_ANALYTICS_ENABLED="False",
                        ATTNVIZ_ALLOW_DOWNLOAD="0", ATTNVIZ_RUNS_DIR=str(self.tmp / "runs"),
                        GRADIO_TEMP_DIR=str(self.tmp / "gradio"), **(env or {}))

    def __enter__(self):
        import urllib.request
        self.log = open(self.tmp / "app.log", "wb")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        t0 = time.time()
        while time.time() - t0 < 300:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited: {(self.tmp / 'app.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "gradio_api/info", timeout=5)
                return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("app.py did not start in 300 s")

    def __exit__(self, *exc):
        import signal
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)  # its runs/, Gradio cache and log


def _sample_image() -> Path:
    return ROOT / "assets" / "examples" / "star.png"


def _median_ms(xs) -> float:
    return 1e3 * statistics.median(xs)


def _pct_ms(xs, q) -> float:
    xs = sorted(xs)
    return 1e3 * xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_ratio(server: Server, model: str, reps: int) -> dict:
    """Per path (Gradio's API; the lean JSON route): HTTP /inspect and HTTP /models, with
    in-process attnviz.inspect, all timed alternately; then each path's server CPU per
    /inspect over many calls against the in-process CPU."""
    from PIL import Image

    c = RawClient(server.url)
    path = c.upload(_sample_image())
    args = [c.file(path), model, "gradcam", "per map"]
    body = {"image": path, "model": model, "method": "gradcam", "scale": "per map"}
    import torch
    torch.set_num_threads(1)  # as the server runs each analysis (attnviz.app.capacity)
    net = attnviz.create_model(model, pretrained=True).eval()
    pil = Image.open(_sample_image()).convert("RGB")
    kb = {"gradio": [], "lean": []}

    def gradio():
        out = c.call("inspect", args)
        kb["gradio"].append((c.fetch_files(out) + len(json.dumps(out))) / 1024)

    def lean():
        before = c.received
        c.lean("inspect", body)
        kb["lean"].append((c.received - before) / 1024)

    def lib():
        attnviz.inspect(net, pil, attributions=("gradcam",))  # what the app's /inspect runs

    steps = {"gradio": gradio, "gradio_models": lambda: c.call("models", []),
             "lean": lean, "lean_models": lambda: c.lean("models"), "lib": lib}
    for f in steps.values():
        f()  # warm: the model loaded on both sides
    times = {k: [] for k in steps}
    load0 = loadavg()
    for _ in range(reps):
        for k, f in steps.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    # CPU: the server's per /inspect (over many calls) and this process's per inspect
    n = max(10, reps)
    cpu = {}
    for k in ("gradio", "lean"):
        cpu0 = proc_cpu_seconds(server.proc.pid)
        for _ in range(n):
            steps[k]()
        cpu[k] = (proc_cpu_seconds(server.proc.pid) - cpu0) / n
    t0 = time.process_time()
    for _ in range(n):
        lib()
    lib_cpu = (time.process_time() - t0) / n
    c.close()
    med = {k: _median_ms(v) for k, v in times.items()}
    out = {"model": model, "reps": reps, "inprocess_inspect_ms": med["lib"],
           "inprocess_cpu_ms": 1e3 * lib_cpu, "load": round((load0 + loadavg()) / 2, 2)}
    for k in ("gradio", "lean"):
        over = med[k] - med[f"{k}_models"]
        out[k] = {"http_inspect_ms": med[k], "http_models_ms": med[f"{k}_models"],
                  "overhead_ratio": over / med["lib"], "response_kb": statistics.median(kb[k]),
                  "server_cpu_ms": 1e3 * cpu[k],
                  "cpu_ratio": cpu[k] / lib_cpu if lib_cpu else float("nan")}
    return out


def bench_clients(server: Server, model: str, clients: int, per_client: int,
                  route: str = "gradio") -> dict:
    """``clients`` raw-HTTP clients, each ``per_client`` /inspect calls back to back, through
    Gradio's API (``route="gradio"``: the call, its events and every image) or the lean JSON
    route (``"lean"``)."""
    warm = RawClient(server.url)
    path = warm.upload(_sample_image())
    body = {"image": path, "model": model, "method": "gradcam", "scale": "per map"}
    warm.call("inspect", [warm.file(path), model, "gradcam", "per map"])
    warm.lean("inspect", body)
    lat, errors, lock = [], [], threading.Lock()

    def user():
        c = RawClient(server.url)
        for _ in range(per_client):
            t0 = time.perf_counter()
            try:
                if route == "lean":
                    c.lean("inspect", body)
                else:
                    c.fetch_files(c.call("inspect", [c.file(path), model, "gradcam",
                                                     "per map"]))
                with lock:
                    lat.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted and shown
                with lock:
                    errors.append(repr(e)[:200])
        c.close()

    load0 = loadavg()
    cpu0 = proc_cpu_seconds(server.proc.pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=user) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = proc_cpu_seconds(server.proc.pid) - cpu0
    return {"route": route, "clients": clients, "requests": len(lat), "errors": len(errors),
            "error_samples": errors[:2], "rps": len(lat) / wall,
            "p50_ms": _pct_ms(lat, 0.5) if lat else None,
            "p95_ms": _pct_ms(lat, 0.95) if lat else None,
            "server_cpu_ms_per_request": 1e3 * cpu / max(1, len(lat)),
            "load": round((load0 + loadavg()) / 2, 2)}


def bench_browser(server: Server, model: str, uploads: int = 3) -> dict | None:
    """Headless Chromium (Debian's /usr/bin/chromium through playwright): an upload's time to
    its first results (the status line names the file: prediction and headline maps are on
    the page) and to its scores. None when chromium or playwright is missing."""
    chromium = Path("/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not chromium.exists():
        return None
    from PIL import Image
    tmp = Path(tempfile.mkdtemp(prefix="attnviz-bench-browser-"))
    first, scores = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), headless=True,
                              args=["--no-sandbox", "--disable-gpu"])
        pg = b.new_page(viewport={"width": 1280, "height": 800})
        pg.goto(server.url, timeout=120_000)
        pg.wait_for_function("() => /AUC/.test((document.querySelector('#av-scores') || "
                             "{}).innerText || '')", timeout=120_000)
        for i in range(uploads):
            path = tmp / f"upload{i}.png"
            Image.open(_sample_image()).convert("RGB").rotate(90 * (i + 1)).save(path)
            t0 = time.perf_counter()
            pg.set_input_files("#av-image input[type=file]", str(path))
            pg.wait_for_function("(n) => ((document.querySelector('#av-status') || {})"
                                 ".innerText || '').includes(n)", arg=path.name,
                                 timeout=120_000, polling=20)
            first.append(time.perf_counter() - t0)
            pg.wait_for_function("() => /AUC/.test((document.querySelector('#av-scores') || "
                                 "{}).innerText || '')", timeout=120_000, polling=20)
            scores.append(time.perf_counter() - t0)
            time.sleep(1)
        b.close()
    return {"model": model, "uploads": uploads, "first_results_ms": _median_ms(first),
            "scores_ms": _median_ms(scores), "load": loadavg()}


def run(quick: bool = False, models=None) -> dict:
    models = list(models or (("lite_cbam", "lite_danet", "lite_sge") if quick else LITE))
    reps = 8 if quick else 25
    out = {"load_start": loadavg(), "cores": os.cpu_count(), "ratio": [], "clients": []}
    with Server() as server:
        for m in models:
            out["ratio"].append(bench_ratio(server, m, reps))
        for route in ("gradio", "lean"):
            for n in (1, 8, 16):
                out["clients"].append(bench_clients(server, models[0], n, 4 if quick else 10,
                                                    route))
    with Server() as server:  # a fresh server: the browser's page opens on its default model
        out["browser"] = bench_browser(server, "default")
    out["load_end"] = loadavg()
    return out


ROUTES = {"gradio": "Gradio's API (/gradio_api/call/inspect, its events, then each image)",
          "lean": "the lean JSON route (POST /attnviz/api/inspect, images inline)"}


def table(r: dict) -> str:
    """Markdown tables of a run, each figure beside its target."""
    def ok(v, target):
        return "ok" if v <= target else "over"

    lines = []
    for route, title in ROUTES.items():
        lines += [f"**{title}**", "",
                  "| model | HTTP /inspect ms | HTTP /models ms | in-process inspect ms | "
                  f"(inspect - models) / in-process (target <= {TARGET_RATIO:g}) | answer KB | "
                  f"server CPU ms / request | in-process CPU ms | CPU ratio (target <= "
                  f"{TARGET_CPU_RATIO:g}) | load |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for x in r["ratio"]:
            y = x[route]
            lines.append(
                f"| {x['model']} | {y['http_inspect_ms']:.0f} | {y['http_models_ms']:.1f} | "
                f"{x['inprocess_inspect_ms']:.1f} | {y['overhead_ratio']:.1f}x "
                f"({ok(y['overhead_ratio'], TARGET_RATIO)}) | {y['response_kb']:.0f} | "
                f"{y['server_cpu_ms']:.0f} | {x['inprocess_cpu_ms']:.0f} | "
                f"{y['cpu_ratio']:.1f}x ({ok(y['cpu_ratio'], TARGET_CPU_RATIO)}) | "
                f"{x['load']:.1f} |")
        lines.append("")
    lines += ["| raw-HTTP clients | route | requests/s | p50 ms | p95 ms | "
              "server CPU ms / request | errors | load |", "|---|---|---|---|---|---|---|---|"]
    for x in r["clients"]:
        lines.append(f"| {x['clients']} | {x.get('route', 'gradio')} | {x['rps']:.1f} | "
                     f"{x['p50_ms'] or 0:.0f} | {x['p95_ms'] or 0:.0f} | "
                     f"{x['server_cpu_ms_per_request']:.0f} | {x['errors']} | {x['load']:.1f} |")
    br = r.get("browser")
    if br:
        lines += ["", "| browser (headless Chromium) | upload to first results ms (target <= 500) "
                  "| upload to scores ms | load |", "|---|---|---|---|",
                  f"| {br['uploads']} uploads, default model | {br['first_results_ms']:.0f} "
                  f"({ok(br['first_results_ms'], 500)}) | "
                  f"{br['scores_ms']:.0f} | {br['load']:.1f} |"]
    lines.append(f"\n{r['cores']} cores, load average {r['load_start']:.1f} at the start, "
                 f"{r['load_end']:.1f} at the end.")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 lite models, fewer repetitions")
    p.add_argument("--models", default=None, help="comma-separated lite models")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    a = p.parse_args(argv)
    r = run(a.quick, a.models.split(",") if a.models else None)
    print(table(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
