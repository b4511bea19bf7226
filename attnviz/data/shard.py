"""Spread a job over the processes ``torchrun`` starts, and merge what they computed.

    torchrun --nproc_per_node 4 -m attnviz.evaluate --model lite_cbam --images 2000

Each process takes its share of the work (whole batches, so every image is computed in the same
batch as in one process), computes one row per image, and the rows are gathered in image order on
every process; the caller then reduces them exactly as one process would. Without torchrun (no
``WORLD_SIZE`` in the environment, or 1) everything runs here and nothing is exchanged.

Only Python objects are exchanged (``all_gather_object`` over gloo), so the same works with the
models on CPUs or on GPUs (each process uses ``cuda:LOCAL_RANK`` when CUDA is there).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """This process's place in the job: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        """Whether this process reports (prints, writes files)."""
        return self.rank == 0

    def take(self, items: list) -> list:
        """This process's share of ``items``: a contiguous block, the blocks in order."""
        n, w = len(items), self.world
        start = self.rank * n // w
        stop = (self.rank + 1) * n // w
        return list(items[start:stop])

    def gather(self, rows: list) -> list:
        """Every process's rows, in rank order (each process's rows in its own order); with one
        process, ``rows`` itself."""
        if self.world == 1:
            return list(rows)
        import torch.distributed as dist
        parts = [None] * self.world
        dist.all_gather_object(parts, list(rows))
        return [r for part in parts for r in part]

    def device(self) -> torch.device:
        """cuda:LOCAL_RANK when CUDA is available, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)) %
                                torch.cuda.device_count())
        return torch.device("cpu")


def current() -> Shard:
    """The Shard of this process: from an initialised process group, or from torchrun's
    environment (then the gloo group is initialised here), else a single process."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return Shard()
    dist.init_process_group("gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


def finish():
    """Leave the process group (if this module or torchrun made one)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
