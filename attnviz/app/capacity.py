"""How the server spends its cores: one intra-op thread per analysis, one pass per model at a
time, batched.

On a CPU, torch splits each convolution over every core by default; with several requests at
once those threads contend (measured on 2 busy cores: a lite analysis took 155 ms with 2 threads
against 16 ms with 1). The server therefore runs each analysis on one thread
(``ATTNVIZ_TORCH_THREADS``, default 1 on a CPU). It admits four analysis requests per core at
once (``ATTNVIZ_ANALYSES``): requests for one model that arrive while its pass runs are then
answered together by its next, batched pass (:mod:`.batching`), one pass per model at a time.
"""
from __future__ import annotations

import os


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


def configure() -> None:
    """Set torch's intra-op threads for serving (CPU only; a GPU server keeps torch's own)."""
    import torch
    if not torch.cuda.is_available():
        torch.set_num_threads(torch_threads())
