"""The analysis slots shared by Gradio's events and the JSON route (app.capacity.analysis_slot):
at most ATTNVIZ_ANALYSES analyses decode and compute at once, whichever way they came in."""
import threading
import time

from attnviz.app import capacity
from attnviz.app.analysis import analyse
from attnviz.app.examples import ensure_examples
from attnviz.app.sessions import SESSIONS


def test_slots_bound_concurrency_and_are_reentrant():
    n = capacity.analyses_at_once()
    inside, peak, lock = [0], [0], threading.Lock()
    go = threading.Event()

    def work():
        with capacity.analysis_slot():
            with capacity.analysis_slot():  # re-entry takes no second slot
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                go.wait(5)
                time.sleep(0.01)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(n + 3)]
    for t in threads:
        t.start()
    deadline = time.time() + 5
    while capacity.slots_in_use() < n and time.time() < deadline:
        time.sleep(0.01)
    assert capacity.slots_in_use() == n  # every slot taken, three threads wait
    time.sleep(0.1)
    assert inside[0] == n
    go.set()
    for t in threads:
        t.join(10)
    assert peak[0] == n and capacity.slots_in_use() == 0


def test_an_analysis_waits_for_a_slot():
    """With every slot held elsewhere, analyse() does not run; it runs once one is freed."""
    n = capacity.analyses_at_once()
    release = threading.Event()
    held = threading.Barrier(n + 1)

    def hold():
        with capacity.analysis_slot():
            held.wait(5)
            release.wait(10)

    holders = [threading.Thread(target=hold) for _ in range(n)]
    for t in holders:
        t.start()
    held.wait(5)
    path = str(ensure_examples()[0])
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault(
        "s", analyse(path, "lite_cbam", "gradcam")))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and "s" not in out  # waiting for a slot
    release.set()
    worker.join(60)
    for t in holders:
        t.join(5)
    assert "s" in out and out["s"].analysis.attributions
    assert capacity.slots_in_use() == 0
    SESSIONS.free(out["s"])
