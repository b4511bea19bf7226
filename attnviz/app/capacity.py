"""How the server spends its cores: one intra-op thread per analysis, one pass per model at a
time, batched.

On a CPU, torch splits each convolution over every core by default; with several requests at
once those threads contend (measured on 2 busy cores: a lite analysis took 155 ms with 2 threads
against 16 ms with 1). The server therefore runs each analysis on one thread
(``ATTNVIZ_TORCH_THREADS``, default 1 on a CPU). It admits four analysis requests per core at
once (``ATTNVIZ_ANALYSES``): requests for one model that arrive while its pass runs are then
answered together by its next, batched pass (:mod:`.batching`), one pass per model at a time.

Both ways into the Inspect analysis (Gradio's events and the JSON route of :mod:`.json_api`)
admit up to that many each, but their analyses share one set of slots (:func:`analysis_slot`,
taken in :func:`.analysis.analyse`): at most ``ATTNVIZ_ANALYSES`` of them decode and compute at
once, whichever way they came. (The Compare and Experiment tabs have their own Gradio limits.)
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def torch_threads() -> int:
    v = os.environ.get("ATTNVIZ_TORCH_THREADS", "").strip()
    return max(1, int(v)) if v.isdigit() else 1


def analyses_at_once() -> int:
    v = os.environ.get("ATTNVIZ_ANALYSES", "").strip()
    return max(1, int(v)) if v.isdigit() else 4 * cores()


_SLOTS: threading.BoundedSemaphore | None = None
_SLOTS_LOCK = threading.Lock()
_HELD = threading.local()  # how many slots this thread holds (re-entry takes none)
_IN_USE = [0]


@contextmanager
def analysis_slot():
    """Hold one of the :func:`analyses_at_once` slots shared by both ways into the Inspect
    analysis, for the block's duration (waiting for one when all are held). Re-entrant: a
    thread that holds one takes no second (an analysis inside another cannot wait on
    itself)."""
    global _SLOTS
    if getattr(_HELD, "n", 0):
        _HELD.n += 1
        try:
            yield
        finally:
            _HELD.n -= 1
        return
    with _SLOTS_LOCK:
        if _SLOTS is None:
            _SLOTS = threading.BoundedSemaphore(analyses_at_once())
    _SLOTS.acquire()
    _HELD.n = 1
    with _SLOTS_LOCK:
        _IN_USE[0] += 1
    try:
        yield
    finally:
        with _SLOTS_LOCK:
            _IN_USE[0] -= 1
        _HELD.n = 0
        _SLOTS.release()


def slots_in_use() -> int:
    """How many analysis slots are held now."""
    return _IN_USE[0]


def configure() -> None:
    """Set torch's intra-op threads for serving (CPU only; a GPU server keeps torch's own)."""
    import torch
    if not torch.cuda.is_available():
        torch.set_num_threads(torch_threads())
