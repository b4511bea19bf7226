"""Timing for the benchmark: two (or more) things timed alternately, medians compared."""
from __future__ import annotations

import statistics
import time

import torch

from ..errors import WeightsError
from ..models.registry import create_model

# What the model-table timings read: wall time (default), or this process's CPU time
# (``--clock cpu``), which a machine shared with other jobs disturbs far less (a call preempted by
# another process is not charged for the wait); on CUDA only wall time means anything.
_CLOCK = [time.perf_counter]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns, reps: int, device, warmup: int = 2):
    """Time the functions in turn, rotating which goes first; return each one's median (s)."""
    for _ in range(warmup):
        for f in fns:
            f()
    ts = [[] for _ in fns]
    k = len(fns)
    for i in range(reps):
        for j in range(k):
            n = (i + j) % k
            _sync(device)
            t0 = _CLOCK[0]()
            fns[n]()
            _sync(device)
            ts[n].append(_CLOCK[0]() - t0)
    return [statistics.median(t) for t in ts]


def paired(fa, fb, reps: int, device, warmup: int = 2):
    """Time fa and fb alternately; return (median_a, median_b) in seconds."""
    a, b = interleaved([fa, fb], reps, device, warmup)
    return a, b


def timed(f, reps: int, device, warmup: int = 1):
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(reps):
        _sync(device)
        t0 = _CLOCK[0]()
        f()
        _sync(device)
        ts.append(_CLOCK[0]() - t0)
    return statistics.median(ts)


def set_clock(name: str) -> None:
    """Time with ``name`` from :data:`CLOCKS` ("wall", or "cpu": this process's CPU time)."""
    _CLOCK[0] = CLOCKS[name]


def load_model(name, device, channels_last=False):
    try:
        m = create_model(name, pretrained=name.startswith("lite_"))
    except WeightsError:
        m = create_model(name)
    m = m.to(device)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m
