"""The load part of the benchmark: throughput and latency of ``/inspect`` under concurrent
``gradio_client`` users of a real server on loopback (``python -m attnviz.bench`` runs it unless
``--no-load``)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..data.synthetic import make_shapes


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url, proc, timeout=180):
    import urllib.request
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("the app exited during start-up")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:  # noqa: BLE001
            time.sleep(0.5)
    raise TimeoutError("the app did not start")


def bench_load(users=8, per_user=5, model="lite_cbam"):
    """Throughput and latency of /inspect under concurrent gradio_client users on loopback."""
    from gradio_client import Client, handle_file
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, str(root / "app.py")], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    lat, errors, sizes = [], [], []
    try:
        _wait(url, proc)
        from PIL import Image
        tmp = Path(tempfile.mkdtemp(prefix="attnviz-bench-"))
        data = make_shapes(users * per_user, seed=777)
        paths = []
        for i, im in enumerate(data.images):
            p = tmp / f"img{i}.png"
            Image.fromarray(im).save(p)
            paths.append(p)
        lock = threading.Lock()

        def user(u):
            c = Client(url, verbose=False)
            for j in range(per_user):
                p = paths[u * per_user + j]
                t0 = time.perf_counter()
                try:
                    res = c.predict(handle_file(str(p)), model, "gradcam", "per map",
                                    api_name="/inspect")
                    dt = time.perf_counter() - t0
                    with lock:
                        lat.append(dt)
                        sizes.append(_response_bytes(res))
                except Exception as e:  # noqa: BLE001 - counted
                    with lock:
                        errors.append(repr(e)[:200])

        # warm the model cache once
        Client(url, verbose=False).predict(handle_file(str(paths[0])), model, "gradcam", "per map",
                                          api_name="/inspect")
        t0 = time.perf_counter()
        threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat.sort()
    return {"users": users, "requests": users * per_user, "errors": len(errors),
            "error_samples": errors[:3], "throughput_rps": len(lat) / wall if wall else None,
            "p50_ms": 1e3 * lat[len(lat) // 2] if lat else None,
            "p95_ms": 1e3 * lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None,
            "response_kb_max": max(sizes) / 1024 if sizes else None}


def _response_bytes(res) -> int:
    """Bytes a client received: JSON of the response plus every file it references."""
    total = 0

    def walk(o):
        nonlocal total
        if isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, str) and os.path.isfile(o):
            total += os.path.getsize(o)
    walk(res)
    total += len(json.dumps(res, default=str))
    return total


# ---------------------------------------------------------------------------- main
