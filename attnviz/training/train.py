"""Train a lite model on the synthetic shapes task (or a user's image folder).

    python -m attnviz.train --model lite_cbam --out models/ --epochs 7
    torchrun --nproc_per_node 2 -m attnviz.train --model lite_cbam --out runs/x   # DDP

Fresh images every epoch (no overfitting to a fixed set), seeded and reproducible, AdamW with a
one-cycle schedule, a held-out validation set drawn from a seed never used for training. Writes
``<name>.safetensors`` (class names in its metadata) and ``<name>.json``, the model card.
Under ``torchrun`` each process draws its own shard of every epoch, DistributedDataParallel
averages the gradients (gloo on CPU, nccl on CUDA), and only rank 0 writes.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data.link_tasks import LINK_TASKS
from ..data.synthetic import SHAPE_CLASSES, TEST_SEED, ShapesData, make_shapes, to_tensor  # noqa: F401
from ..errors import AttnvizError
from ..models.readout import logits_at
from ..scores.links import accuracies
from ..models.registry import create_model
from ..models.zoo import LINK, LITE
from ..system import machine_info
from ..models.weights import read_state_dict
from ..data.folders import load_image_folder

TRAIN_SEED_BASE = 1_000_000  # training images: seeds 1e6 + 10000*seed + epoch
VAL_SEED_BASE = 500_000  # validation: 5e5 + seed


# synthetic tasks: name -> (generator(n, seed, size, indices), classes, card's data description)
TASKS = {
    "shapes": (make_shapes, SHAPE_CLASSES, "synthetic shapes (fresh each epoch)"),
    **{t.name: (t.make, list(t.classes), t.description) for t in LINK_TASKS.values()},
}


def epoch_seed(seed: int, epoch: int) -> int:
    return TRAIN_SEED_BASE + 10_000 * int(seed) + int(epoch)


def _augment(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips (every class is mirror-symmetric) and a little brightness.
    Returns the images and which were flipped."""
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x * (1 + 0.1 * (torch.rand(x.shape[0], 1, 1, 1, generator=g) - 0.5)), flip


def _flipped_points(points_yx: np.ndarray, flip: torch.Tensor, width: int) -> torch.Tensor:
    """Query points (y, x) after the horizontal flips of :func:`_augment`."""
    p = torch.as_tensor(np.asarray(points_yx), dtype=torch.float32).clone()
    p[:, 1] = torch.where(flip, width - p[:, 1], p[:, 1])
    return p


class _Stop(Exception):
    """The prefetch was cancelled."""


class _Prefetch:
    """Draw the next epoch's images in a background thread while this one trains.

    ``fn(*args, check=...)`` must call ``check`` now and then: after :meth:`cancel` it raises,
    so the thread stops within a few images. :meth:`get` waits for the result, calling ``poll``
    every 0.1 s meanwhile (an exception from it, a cancelled request, stops the wait; the caller
    cancels the thread)."""

    def __init__(self, fn):
        self.fn, self.result, self.error, self.thread = fn, None, None, None
        self.stop = threading.Event()

    def _check(self):
        if self.stop.is_set():
            raise _Stop

    def start(self, *args):
        def run():
            try:
                self.result = self.fn(*args, check=self._check)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                self.error = e
        self.result, self.error = None, None
        self.thread = threading.Thread(target=run, daemon=True, name="attnviz-prefetch")
        self.thread.start()

    def get(self, poll=None):
        while self.thread.is_alive():
            self.thread.join(0.1)
            if poll is not None:
                poll()
        if self.error is not None:
            raise self.error
        return self.result

    def cancel(self, wait: float = 2.0):
        """Stop the thread at its next check (waits up to ``wait`` seconds for it)."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(wait)


def _dist():
    """(rank, world size) when launched by torchrun, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def accuracy(model, data: ShapesData, batch_size: int = 256, at_query: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``data``; ``at_query``: of the logits read at each image's
    query point (:func:`attnviz.models.readout.logits_at`; relational data)."""
    acc, acc_q = accuracies(model, data, batch_size, at_query)
    return acc_q if at_query else acc


def train(model_name: str, out_dir, *, epochs: int = 7, images_per_epoch: int = 8000,
          batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
          size: int = 128, data: ShapesData | None = None, val_n: int = 1000, progress=None,
          device=None, save_name: str | None = None, command: str | None = None,
          overwrite: bool = True, init: str | None = None, task: str = "shapes",
          query_loss: float | None = None, fresh: tuple[str, ...] = ()) -> dict:
    """Train ``model_name`` (a lite model) and write its checkpoint and card to ``out_dir``.

    data: None for fresh synthetic shapes every epoch, or a ShapesData (e.g. from
        ``datasets.load_image_folder``) from which 15% is held out for validation.
    progress: called with a dict (epoch, epochs, step, steps, loss, lr, val_acc when known);
        while images are drawn (before a step can run) every 0.1 s with ``{"stage": "data",
        "epoch", "epochs"}``. An exception from it stops the training at once (and the thread
        drawing the next epoch's images).
    init: warm start from a checkpoint: every tensor whose name and shape match is copied (for
        instance the shared body of ``lite_resnet`` into an attention variant).
    fresh: with ``init``, tensors whose names start with one of these prefixes are not copied and
        keep their random initialisation (``("layer3.1.theta", "layer3.1.phi")``: a new
        affinity over warm features and values).
    task: the synthetic task when ``data`` is None, a key of :data:`TASKS`: "shapes" (six
        classes) or a relational task of :data:`attnviz.data.link_tasks.LINK_TASKS`
        ("relational": same/different squares; "cued": a cue names the shape to classify).
    query_loss: weight of a second cross-entropy on the logits read at the query's cell of the
        final map (:func:`attnviz.models.readout.logits_at`: the query must know the label);
        None: the task's own (:attr:`LinkTask.query_loss`; 0 for shapes and user folders).

    Returns the model card (a dict).
    """
    if model_name not in LITE and model_name not in LINK:
        raise AttnvizError(f"training supports the lite models {sorted(LITE)} and the link-task "
                           f"bodies {sorted(LINK)}, not {model_name!r}")
    if fresh and not init:
        raise AttnvizError("fresh names tensors not to copy from a warm start: give init too")
    if task not in TASKS:
        raise AttnvizError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    make_task, task_classes, task_desc = TASKS[task]
    if query_loss is None:
        query_loss = LINK_TASKS[task].query_loss if data is None and task in LINK_TASKS else 0.0
    query_loss = float(query_loss)
    if query_loss < 0:
        raise AttnvizError(f"query_loss is a loss weight: 0 or more, not {query_loss}")
    if query_loss and (data is not None or task not in LINK_TASKS):
        raise AttnvizError("query_loss needs a relational task's query points (--task "
                           f"{' or '.join(LINK_TASKS)}), not {'a folder' if data else task}")
    if epochs < 1 or images_per_epoch < batch_size:
        raise AttnvizError("need at least one epoch and images_per_epoch >= batch_size")
    rank, world = _dist()
    if device is None:
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                              if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    torch.manual_seed(seed)
    np.random.seed(seed)
    classes = list(data.classes) if data is not None else list(task_classes)
    model = create_model(model_name, num_classes=len(classes))
    info = model.info
    # the card records the size the model was trained at (not the family's default)
    info.input_size = int(data.images.shape[1]) if data is not None else int(size)
    warm = warm_start(model, init, fresh) if init else None
    model = model.to(device).train()
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    # data: fresh synthetic images per epoch, or a fixed user set with a held-out split
    def poll(epoch=0):
        """While images are drawn: a progress report, through which a cancelled request stops
        the training (its exception leaves train())."""
        if progress is not None and rank == 0:
            progress({"stage": "data", "epoch": epoch + 1, "epochs": epochs})

    if data is None:
        val = make_task(val_n, seed=VAL_SEED_BASE + seed, size=size, check=poll)

        def epoch_data(epoch, check=None):
            n = images_per_epoch // world
            idx = np.arange(rank * n, (rank + 1) * n)
            return make_task(images_per_epoch, seed=epoch_seed(seed, epoch), size=size,
                             indices=idx, check=check)
    else:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(data.labels))
        n_val = max(1, int(0.15 * len(order)))
        val = ShapesData(data.images[order[:n_val]], data.labels[order[:n_val]], None, classes)
        # equal shards: every process must take the same number of steps, or DDP's gradient
        # all-reduce waits forever for the process that stopped early
        per = (len(order) - n_val) // world
        if per < 1:
            raise AttnvizError(f"{len(order)} images are too few to train on: 15% are held out "
                               f"for validation and each of the {world} processes needs at "
                               "least one of the rest")
        tr = order[n_val:][rank::world][:per]
        fixed = ShapesData(data.images[tr], data.labels[tr], None, classes)
        images_per_epoch = len(tr) * world

        def epoch_data(epoch, check=None):
            return fixed

    steps_per_epoch = max(1, (images_per_epoch // world) // batch_size)
    total = steps_per_epoch * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.2)
    gen = torch.Generator().manual_seed(seed * 7919 + rank)
    pre = _Prefetch(epoch_data)
    pre.start(0)
    history = []
    t0 = time.time()
    show = rank == 0 and progress is None
    if show:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=f"train {save_name or model_name}", unit="step")
    step = 0
    try:
        for epoch in range(epochs):
            d = pre.get(functools.partial(poll, epoch))
            if epoch + 1 < epochs:
                pre.start(epoch + 1)
            perm = torch.randperm(len(d.labels), generator=gen)
            losses = []
            for b in range(steps_per_epoch):
                idx = perm[b * batch_size:(b + 1) * batch_size].numpy()
                x, flip = _augment(to_tensor(d.images[idx], info.mean, info.std), gen)
                x = x.to(device)
                y = torch.from_numpy(d.labels[idx]).long().to(device)
                if query_loss:
                    pts = _flipped_points(d.query_points[idx], flip, x.shape[-1])
                    logits, at_q = logits_at(model, x, pts, net=net)
                    loss = F.cross_entropy(logits, y) + query_loss * F.cross_entropy(at_q, y)
                else:
                    loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                losses.append(float(loss.detach()))
                if show:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}", epoch=epoch + 1)
                if progress is not None and rank == 0:
                    progress({"epoch": epoch + 1, "epochs": epochs, "step": step, "steps": total,
                              "loss": losses[-1], "lr": sched.get_last_lr()[0]})
            mean_loss = float(np.mean(losses))
            if world > 1:
                import torch.distributed as dist
                t = torch.tensor([mean_loss], device=device)
                dist.all_reduce(t)
                mean_loss = float(t) / world
            # one pass gives both: the image's answer and, with a query loss, the query's
            val_acc, val_q = accuracies(model, val, 256, bool(query_loss)) if rank == 0 \
                else (None, None)
            history.append({"epoch": epoch + 1, "loss": round(mean_loss, 4),
                            "val_acc": None if val_acc is None else round(val_acc, 4)})
            if val_q is not None:
                history[-1]["val_acc_at_query"] = round(val_q, 4)
            if progress is not None and rank == 0:
                progress({"epoch": epoch + 1, "epochs": epochs, "step": step, "steps": total,
                          "loss": mean_loss, "val_acc": val_acc})
            if show:
                at_q = history[-1].get("val_acc_at_query")
                bar.write(f"epoch {epoch + 1}/{epochs}: loss {mean_loss:.4f}, "
                          f"val acc {val_acc:.4f}" +
                          ("" if at_q is None else f", at the query {at_q:.4f}"))
    finally:
        pre.cancel()  # a stopped training leaves no thread drawing images
    if show:
        bar.close()
    elapsed = time.time() - t0
    card = None
    if rank == 0:
        card = _write(model, out_dir, save_name or model_name, model_name, classes, history,
                      dict(epochs=epochs, images_per_epoch=images_per_epoch, batch_size=batch_size,
                           lr=lr, weight_decay=weight_decay, seed=seed, size=size, world_size=world,
                           task=task if data is None else None, query_loss=query_loss,
                           data=task_desc if data is None else
                           f"user image folder ({len(data.labels)} images)", val_n=len(val.labels),
                           init=warm),
                      elapsed, device, command, overwrite)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    return card


def warm_start(model, path, fresh=()) -> dict:
    """Copy every tensor of checkpoint ``path`` whose name and shape match into ``model``, except
    those whose names start with a prefix in ``fresh`` (each prefix must name some tensor)."""
    sd, _ = read_state_dict(path)
    own = model.state_dict()
    fresh = tuple(fresh)
    unknown = [f for f in fresh if not any(k.startswith(f) for k in own)]
    if unknown:
        raise AttnvizError(f"no tensor of this model starts with {', '.join(unknown)} (fresh names "
                           "tensors to leave at their random initialisation, such as "
                           "layer3.1.theta)")
    match = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)
             and not (fresh and k.startswith(fresh))}
    if not match:
        raise AttnvizError(f"{path} shares no tensor (same name and shape) with this model")
    model.load_state_dict(match, strict=False)
    out = {"from": Path(path).name, "tensors_copied": len(match), "tensors_total": len(own)}
    if fresh:
        out["fresh"] = list(fresh)
    return out


def _write(model, out_dir, name, arch, classes, history, cfg, elapsed, device, command, overwrite):
    from safetensors.torch import save_file
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, card_path = out / f"{name}.safetensors", out / f"{name}.json"
    if not overwrite and (ckpt.exists() or card_path.exists()):
        raise AttnvizError(f"{ckpt} exists already; choose another name")
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(ckpt), metadata={"classes": json.dumps(classes), "architecture": arch})
    info = model.info
    card = {
        "name": name, "architecture": arch, "description": info.card.get("description", ""),
        "parameters": sum(p.numel() for p in model.parameters()), "classes": classes,
        "input_size": info.input_size, "mean": list(info.mean), "std": list(info.std),
        "preprocessing": "RGB, resize the whole image to input_size x input_size, scale to [0,1], "
                         "normalise with mean/std",
        "command": command or "attnviz.training.train.train(...) from Python",
        "training": cfg, "history": history, "train_seconds": round(elapsed, 1),
        "machine": machine_info(device), "val_accuracy": history[-1]["val_acc"],
        "weights_file": ckpt.name,
    }
    card_path.write_text(json.dumps(card, indent=2))
    return card


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m attnviz.train", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=sorted(LITE) + sorted(LINK))
    p.add_argument("--out", default="models", type=Path)
    p.add_argument("--name", help="save as NAME.safetensors (default: the model name)")
    p.add_argument("--epochs", type=int, default=7)
    p.add_argument("--images-per-epoch", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--val-n", type=int, default=1000)
    p.add_argument("--task", default="shapes", choices=sorted(TASKS),
                   help="synthetic task (without --data): shapes, relational or cued")
    p.add_argument("--data", type=Path, help="a folder or zip of class sub-folders instead of "
                                             "synthetic shapes")
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--query-loss", type=float, default=None,
                   help="weight of the loss on the answer read at the query's cell (default: "
                        "the task's: 1 for cued, 0 otherwise)")
    p.add_argument("--init", type=Path, help="warm start: copy matching tensors from this "
                                             "checkpoint (e.g. models/lite_resnet.safetensors)")
    p.add_argument("--fresh", nargs="+", default=(), metavar="PREFIX",
                   help="with --init: tensors whose names start with PREFIX keep their random "
                        "initialisation (e.g. layer3.1.theta layer3.1.phi: a new affinity)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = None
    if a.data:
        data = load_image_folder(a.data, size=a.size)
    cmd = "python -m attnviz.train " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cmd = f"torchrun --nproc_per_node {os.environ['WORLD_SIZE']} -m attnviz.train " + \
              " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    card = train(a.model, a.out, epochs=a.epochs, images_per_epoch=a.images_per_epoch,
                 batch_size=a.batch_size, lr=a.lr, seed=a.seed, size=a.size, data=data,
                 val_n=a.val_n, save_name=a.name, command=cmd, init=a.init,
                 task=a.task, query_loss=a.query_loss, fresh=tuple(a.fresh))
    if card is not None:
        print(json.dumps({k: card[k] for k in ("name", "val_accuracy", "train_seconds")}))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
