"""Concurrent analyses of one model in one batched pass.

Each model (with one set of options) has a run lock: while its pass runs, the requests that
arrive wait together in the next batch, and when the pass ends the first of them runs the whole
batch through the library's batched :func:`attnviz.inspect` (equal to the per-image results:
tests/test_app_batching.py). A request that finds the model idle runs at once, alone: no
collection window is added to a lone request's time.

    BATCHER.run(key, item, single=lambda x: ..., batch=lambda xs: [...])

Off by default (``ATTNVIZ_BATCH=1`` turns it on): a batched pass equals the single ones only to
float tolerance (the convolutions' summation order depends on the batch), so with batching two
clients sending one image may get answers that differ in the last digits, and on a 2-core CPU
it did not raise throughput (Gradio's own cost per request dominates: docs/serving.md). Off, every
request runs its own pass and its answer is exactly the serial one.
"""
from __future__ import annotations

import os
import threading

MAX_BATCH = 16


class _Batch:
    def __init__(self):
        self.items: list = []
        self.results: list | None = None
        self.errors: dict[int, BaseException] = {}
        self.done = threading.Event()


class Batcher:
    """Per-key batches behind a per-key run lock (one pass per key at a time)."""

    def __init__(self, max_batch: int = MAX_BATCH, enabled: bool = True):
        self.max_batch = max_batch
        self.enabled = enabled
        self._lock = threading.Lock()
        self._pending: dict = {}
        self._running: dict = {}
        self.passes = 0  # passes run, and images in them (the tests and /health read these)
        self.images = 0

    def run_lock(self, key) -> threading.Lock:
        with self._lock:
            return self._running.setdefault(key, threading.Lock())

    def run(self, key, item, single, batch):
        """``single(item)`` alone, or ``batch(items)[i]`` with the requests for ``key`` that
        arrived while the previous pass ran."""
        if not self.enabled:
            with self._lock:
                self.passes += 1
                self.images += 1
            return single(item)
        with self._lock:
            b = self._pending.get(key)
            leader = b is None or len(b.items) >= self.max_batch
            if leader:
                b = self._pending[key] = _Batch()
            i = len(b.items)
            b.items.append(item)
            gate = self._running.setdefault(key, threading.Lock())
        if leader:
            with gate:  # waits while this key's previous pass runs: later arrivals join b
                with self._lock:
                    if self._pending.get(key) is b:
                        del self._pending[key]
                    self.passes += 1
                    self.images += len(b.items)
                try:
                    b.results = (batch(b.items) if len(b.items) > 1
                                 else [single(b.items[0])])
                except Exception:  # noqa: BLE001 - one image must not fail the others
                    b.results = [None] * len(b.items)
                    for j, x in enumerate(b.items):
                        try:
                            b.results[j] = single(x)
                        except Exception as e:  # noqa: BLE001 - raised to its own request
                            b.errors[j] = e
                finally:
                    b.done.set()
        else:
            b.done.wait()
        if i in b.errors:
            raise b.errors[i]
        return b.results[i]


BATCHER = Batcher(enabled=os.environ.get("ATTNVIZ_BATCH", "0") == "1")
