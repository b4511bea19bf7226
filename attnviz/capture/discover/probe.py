"""The discovery probe: one forward pass that sees every sigmoid-family and softmax call with
the module stack it ran in, and reads each one as a :class:`attnviz.discover.Site` or refuses it
with a reason (see :mod:`attnviz.discover`)."""
from __future__ import annotations

import threading

import torch
from torch.nn import functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...models.layers.tap import Tap
from ..hooks import Hooks
from .sites import (ADAPTERS, CONTAINERS, FAMILY, MULS, PROBE_BATCH, SIGMOIDS, SOFTMAXES,
                    Discovery, Site, block_name, join_path)
from .read import read_sigmoid, read_softmax


def _ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return id(t)


def _first_tensor(args):
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
    return None


def _call_label(func, name, dim) -> str:
    q = getattr(func, "__qualname__", name)
    mod = getattr(func, "__module__", None) or ""
    if q.startswith("TensorBase.") or q.startswith("Tensor."):
        base = f"Tensor.{name}"
    elif mod.startswith("torch.nn.functional"):
        base = f"F.{name}"
    elif "special" in name:
        base = "torch.special.expit"
    else:
        base = f"torch.{name}"
    return f"{base}(dim={dim})" if name in SOFTMAXES else base


class _Entry:
    __slots__ = ("path", "module", "inp", "out", "count")

    def __init__(self, path, module, inp):
        self.path, self.module, self.inp = path, module, inp
        self.out, self.count = None, 0


class _Call:
    __slots__ = ("func", "name", "dim", "inp", "out", "stack", "ords")


class _ProbeMode(TorchFunctionMode):
    def __init__(self, probe):
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.probe.saw(func, args, kwargs, out)
        return out


class Probe:
    """One probe forward: every sigmoid/softmax call with the module stack it ran in."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.paths = {id(m): n for n, m in model.named_modules()}
        self.tid = threading.get_ident()
        self.stack: list[_Entry] = []
        self.calls: list[_Call] = []
        self.muls: list[tuple] = []
        self.parent: dict[int, int] = {}
        self.keep: list = []
        self.runs: dict[int, int] = {}
        self.tapped: set[int] = set()
        self.cam: str | None = None

    # -- recording ------------------------------------------------------------------------
    def saw(self, func, args, kwargs, out):
        name = getattr(func, "__name__", "")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name in FAMILY and tensors and isinstance(out, torch.Tensor) and self.stack:
            c = _Call()
            c.func, c.name, c.inp, c.out = func, name, tensors[0], out
            c.dim = None
            if name in SOFTMAXES:
                dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
                c.dim = F._get_softmax_dim("softmax", tensors[0].dim(), 3) if dim is None \
                    else int(dim)
            c.stack = tuple(self.stack)
            c.ords = tuple(e.count for e in self.stack)
            for e in self.stack:
                e.count += 1
            self.calls.append(c)
        elif name in MULS and len(tensors) == 2:
            self.muls.append((tensors[0], tensors[1]))
        elif len(tensors) == 1 and isinstance(out, torch.Tensor):
            p, q = _ptr(out), _ptr(tensors[0])
            if p != q:
                self.parent[p] = q
                self.keep.append(out)

    def _pre(self, module, args):
        if threading.get_ident() != self.tid:
            return
        x = _first_tensor(args)
        if isinstance(module, Tap) and x is not None:
            self.tapped.add(_ptr(x))
        self.runs[id(module)] = self.runs.get(id(module), 0) + 1
        self.stack.append(_Entry(self.paths.get(id(module), "?"), module,
                                 tuple(x.shape) if x is not None else None))

    def _post(self, module, args, output):
        if threading.get_ident() != self.tid or not self.stack:
            return
        e = self.stack.pop()
        e.out = output
        if e.path and isinstance(output, torch.Tensor) and output.dim() == 4 \
                and output.shape[-1] * output.shape[-2] > 1:
            self.cam = e.path

    # -- running ---------------------------------------------------------------------------
    def run(self, example, input_size) -> Discovery:
        model = self.model
        if example is None:
            size = int(input_size or getattr(getattr(model, "info", None), "input_size", 0)
                       or 224)
            p = next(iter(model.parameters()), None)
            dev = p.device if p is not None else torch.device("cpu")
            dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
            g = torch.Generator().manual_seed(0)
            example = torch.randn(PROBE_BATCH, 3, size, size, generator=g).to(dev, dtype)
        with Hooks(model) as hooks:  # removed, and train/eval restored, however the pass ends
            for m in model.modules():
                hooks.forward_pre(m, self._pre)
                hooks.forward(m, self._post)
            model.eval()
            with torch.no_grad(), _ProbeMode(self):
                output = model(example)
        outs = {_ptr(t) for t in _tensors(output)}
        return self.classify(outs, tuple(example.shape))

    # -- reading ---------------------------------------------------------------------------
    def _ancestors(self, t) -> set[int]:
        p, seen = _ptr(t), set()
        for _ in range(4):
            seen.add(p)
            if p not in self.parent:
                break
            p = self.parent[p]
        seen.add(p)
        return seen

    def _swish(self, c: _Call) -> bool:
        out, anc = _ptr(c.out), self._ancestors(c.inp)
        for a, b in self.muls:
            pa, pb = _ptr(a), _ptr(b)
            if (pa == out and pb in anc) or (pb == out and pa in anc):
                return True
        return False

    def classify(self, outs: set, probe_shape) -> Discovery:
        found, skipped, seen = [], [], set()
        for c in self.calls:
            site, why = self._read(c, outs)
            if site is None:
                if why:
                    skipped.append({"layer": why[0], "call": why[1], "shape": list(c.out.shape),
                                    "reason": why[2]})
                continue
            key = (site.form, site.hook, site.index)
            if key not in seen:
                seen.add(key)
                found.append(site)
        return Discovery(found, skipped, probe_shape, cam_layer=self.cam)

    def _read(self, c: _Call, outs: set):
        stack, n = c.stack, len(c.stack)
        inner = stack[-1]
        leaf = n > 1 and not any(True for _ in inner.module.children()) \
            and not any(True for _ in inner.module.parameters(recurse=False))
        if leaf and inner.out is c.out and self.runs.get(id(inner.module)) == 1 \
                and c.ords[-1] == 0:
            form, hook_i, start = "module", n - 1, n - 2
        elif leaf:
            form, hook_i, start = "call", n - 2, n - 2
        else:
            form, hook_i, start = "call", n - 1, n - 1
        ref = next((stack[i] for i in range(start, -1, -1)
                    if not isinstance(stack[i].module, CONTAINERS)
                    and stack[i].inp is not None and len(stack[i].inp) in (4, 5)), None)
        label = f"nn.{type(inner.module).__name__}" if form == "module" and \
            type(inner.module).__module__.startswith("torch.nn") else (
            type(inner.module).__name__ if form == "module" else _call_label(c.func, c.name,
                                                                                c.dim))
        layer = ref.path if ref is not None else stack[hook_i].path
        if _ptr(c.out) in self.tapped:
            return None, None  # an attnviz tap records it already
        if _ptr(c.out) in outs:
            return None, (layer, label, "the model's final output")
        if c.name in SIGMOIDS and self._swish(c):
            return None, (layer, label, "an activation (its input is what it multiplies)")
        if ref is None:
            return None, (layer, label, "no feature map (B, C, H, W) in the modules around it")
        ref_out = tuple(ref.out.shape) if isinstance(ref.out, torch.Tensor) else None
        shape = tuple(c.out.shape)
        reading = read_softmax(shape, c.dim, ref.inp, ref_out) if c.name in SOFTMAXES \
            else read_sigmoid(shape, ref.inp, ref_out)
        if reading is None:
            return None, (layer, label, f"shape {list(shape)} fits no kind against the input "
                                        f"{list(ref.inp)}")
        kind, recipe = reading
        hook = stack[hook_i].path
        index = 0 if form == "module" else c.ords[hook_i]
        rel = hook[len(layer) + 1:] if layer and hook.startswith(layer + ".") else \
            ("" if hook == layer else hook)
        if form == "module":
            tail = rel.replace(".", ":") or c.name
        else:
            tail = f"{c.name}#{index}"
            if rel:
                tail = f"{rel.replace('.', ':')}@{tail}"
        if any(isinstance(e.module, cls) for e in stack[:start + 1] for cls in ADAPTERS):
            return None, (layer, label, "inside a module with a registered adapter")
        return Site(name=join_path(layer, tail), layer=layer, kind=kind,
                    block=block_name(self.model, layer, ref.module), call=label, hook=hook,
                    form=form, index=index, recipe=recipe, shape=shape), None


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)
