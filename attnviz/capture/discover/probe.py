"""The discovery probe: one forward pass that sees every sigmoid-family and softmax call with
the module stack it ran in, and reads each one as a :class:`attnviz.discover.Site` or refuses it
with a reason (see :mod:`attnviz.discover`)."""
from __future__ import annotations

import threading

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ... import kinds as _kinds
from ...models.layers.tap import Tap
from ..hooks import Hooks
from .forms import (AS_SIGMOID, AS_SOFTMAX, CLAMPS, DIVS, MHA, RESHAPED, SDPA, candidate,
                    mha_call_weights, refusal, sdpa_weights, softmax_dim)
from .sites import (ADAPTERS, CONTAINERS, MULS, PROBE_BATCH, Discovery, Site, block_name,
                    join_path)
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
    if name == SDPA:
        return "F.scaled_dot_product_attention (weights from its q, k, mask)"
    if name == MHA:
        return "nn.MultiheadAttention (its per-head need_weights answer)"
    if name in DIVS:
        return "division by N (w /= w.shape[-1])"
    if q.startswith("TensorBase.") or q.startswith("Tensor."):
        base = f"Tensor.{name}"
    elif mod.startswith("torch.nn.functional"):
        base = f"F.{name}"
    elif "special" in name:
        base = "torch.special.expit"
    else:
        base = f"torch.{name}"
    if name in CLAMPS:
        return f"{base}(0, 1)"
    return f"{base}(dim={dim})" if name in AS_SOFTMAX else base


class _Entry:
    __slots__ = ("path", "module", "inp", "out", "count")

    def __init__(self, path, module, inp):
        self.path, self.module, self.inp = path, module, inp
        self.out, self.count = None, 0


class _Call:
    __slots__ = ("func", "name", "dim", "inp", "out", "stack", "ords", "raw", "anc", "projected",
                 "src")


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

    def __init__(self, model: nn.Module, batch: int = PROBE_BATCH):
        self.model = model
        self.batch = batch
        self.paths = {id(m): n for n, m in model.named_modules()}
        self.tid = threading.get_ident()
        self.stack: list[_Entry] = []
        self.calls: list[_Call] = []
        self.muls: list[tuple] = []
        self.parent: dict[int, int] = {}
        self.keep: list = []
        self.runs: dict[int, int] = {}
        self.tapped: set[int] = set()
        self.mod_out: dict[int, tuple] = {}
        self.cam: str | None = None

    # -- recording ------------------------------------------------------------------------
    def saw(self, func, args, kwargs, out):
        name = getattr(func, "__name__", "")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        family = candidate(func, args, kwargs, out)
        if family is not None and self.stack:
            c = _Call()
            c.func, c.name, c.inp, c.raw = func, family, tensors[0], out
            c.out = sdpa_weights(args, kwargs) if family == SDPA else \
                mha_call_weights(func, args, kwargs) if family == MHA else out
            c.dim = softmax_dim(family, args, kwargs, tensors[0])
            c.stack = tuple(self.stack)
            c.ords = tuple(e.count for e in self.stack)
            # what made its input, read now (memory freed later may be reused by other tensors)
            c.anc = self._ancestors(c.inp)
            c.projected = bool(c.anc & self.mod_out.keys())
            c.src = self.mod_out.get(_ptr(c.inp))
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
        if isinstance(output, torch.Tensor):  # kept alive: no later tensor reuses its memory
            self.mod_out.setdefault(_ptr(output), tuple(output.shape))
            self.keep.append(output)
        if e.path and isinstance(output, torch.Tensor) and output.dim() == 4 \
                and output.shape[-1] * output.shape[-2] > 1:
            self.cam = e.path

    # -- running ---------------------------------------------------------------------------
    def run(self, example, input_size) -> Discovery:
        model = self.model
        if example is None:
            example = probe_input(model, (3, int(input_size or 224), int(input_size or 224)))
        with Hooks(model) as hooks:  # removed, and train/eval restored, however the pass ends
            for m in model.modules():
                hooks.forward_pre(m, self._pre)
                hooks.forward(m, self._post)
            model.eval()
            with torch.no_grad(), _ProbeMode(self):
                output = model(example)
        self.batch = int(example.shape[0])
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
        out, anc = _ptr(c.out), c.anc
        for a, b in self.muls:
            pa, pb = _ptr(a), _ptr(b)
            if (pa == out and pb in anc) or (pb == out and pa in anc):
                return True
        return False

    def classify(self, outs: set, probe_shape) -> Discovery:
        found, skipped, seen = [], [], set()
        before_softmax = set()  # a division by N that scales a later softmax's input
        for c in self.calls:
            if c.name in AS_SOFTMAX and c.name not in DIVS:
                before_softmax |= c.anc
        for c in self.calls:
            if c.name in DIVS and _ptr(c.out) in before_softmax:
                continue
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

    def _frame(self, stack, i):
        """(input shape in channels-first layout, permutation or None) of stack entry ``i``:
        a channels-last input (B, H, W, C) / (B, M, H, W, C) is read as (B, C, H, W) /
        (B, M, C, H, W) when an outer module received (B, C, H, W); an input that is an outer
        module's feature map with its axes permuted (triplet attention) is read in that
        module's frame."""
        r = stack[i].inp
        for j in range(i - 1, -1, -1):
            o = stack[j].inp
            if isinstance(stack[j].module, CONTAINERS) or o is None or len(o) != 4 \
                    or o[0] != r[0]:
                continue
            if tuple(o) == tuple(r):
                return r, None
            if tuple(r[-3:]) == (o[2], o[3], o[1]) and o[1] not in (o[2], o[3]):
                return tuple(r[:-3]) + (o[1], o[2], o[3]), None
            if len(r) == 4 and sorted(r[1:]) == sorted(o[1:]) and len(set(o[1:])) == 3:
                perm = (0,) + tuple(o.index(r[k], 1) for k in (1, 2, 3))
                return tuple(o), perm
            return r, None
        return r, None

    def _ref(self, stack, start):
        """(index, input shape, permutation) of the feature map a call is read against: the
        innermost non-container module at or above ``start`` whose input is 4-D or 5-D with the
        model's batch, preferring one with a spatial extent (an SE's inner 1x1 convs are not)."""
        refs = [i for i in range(start, -1, -1)
                if not isinstance(stack[i].module, CONTAINERS) and stack[i].inp is not None
                and len(stack[i].inp) in (4, 5) and stack[i].inp[0] == self.batch]
        if not refs:
            refs = [i for i in range(start, -1, -1)
                    if not isinstance(stack[i].module, CONTAINERS) and stack[i].inp is not None
                    and len(stack[i].inp) in (4, 5)]
        framed = [(i,) + self._frame(stack, i) for i in refs]
        wide = [f for f in framed if f[1][-1] * f[1][-2] > 1]
        return (wide or framed or [None])[0]

    def _orient(self, c: _Call):
        """'h' / 'w' when a (B, C, L) gate is multiplied viewed as (B, C, L, 1) / (B, C, 1, L)."""
        out = _ptr(c.out)
        for a, b in self.muls:
            for t in (a, b):
                if _ptr(t) == out and t.dim() == 4:
                    if t.shape[-1] == 1 and t.shape[-2] > 1:
                        return "h"
                    if t.shape[-2] == 1 and t.shape[-1] > 1:
                        return "w"
        return None

    def _multiplied(self, c: _Call) -> bool:
        out = _ptr(c.out)
        return any(_ptr(a) == out or _ptr(b) == out for a, b in self.muls)

    def _read(self, c: _Call, outs: set):
        stack, n = c.stack, len(c.stack)
        inner = stack[-1]
        leaf = n > 1 and not any(True for _ in inner.module.children()) \
            and not any(True for _ in inner.module.parameters(recurse=False))
        if leaf and inner.out is c.raw and self.runs.get(id(inner.module)) == 1 \
                and c.ords[-1] == 0 and c.name != SDPA:
            form, hook_i, start = "module", n - 1, n - 2
        elif leaf:
            form, hook_i, start = "call", n - 2, n - 2
        else:
            form, hook_i, start = "call", n - 1, n - 1
        if c.name == MHA:  # hooked as a module (see forms): the call's own stack entry
            form = "mha"
        found = self._ref(stack, start)
        ref = stack[found[0]] if found else None
        label = f"nn.{type(inner.module).__name__}" if form == "module" and \
            type(inner.module).__module__.startswith("torch.nn") else (
            type(inner.module).__name__ if form == "module" else _call_label(c.func, c.name,
                                                                                c.dim))
        layer = ref.path if ref is not None else stack[hook_i].path
        if _ptr(c.out) in self.tapped:
            return None, None  # an attnviz tap records it already
        if _ptr(c.out) in outs:
            return None, (layer, label, "the model's final output")
        if c.name in AS_SIGMOID and self._swish(c):
            return None, (layer, label, "an activation (its input is what it multiplies)")
        if c.name in CLAMPS and not self._multiplied(c):
            return None, (layer, label, "a clamp to [0, 1] that multiplies nothing (not a gate)")
        if ref is None:
            return None, (layer, label, "no feature map (B, C, H, W) in the modules around it")
        inp, perm = found[1], found[2]
        ref_out = tuple(ref.out.shape) if isinstance(ref.out, torch.Tensor) and \
            tuple(inp) == tuple(ref.inp) and perm is None else None
        shape = tuple(c.out.shape)
        hw = tuple(inp[-2:])
        if c.name in AS_SOFTMAX:
            d = c.dim % len(shape)
            projected = c.name not in DIVS and c.name != MHA and c.projected
            why = refusal(shape, d, self.batch, hw, projected) if projected else None
            if why is None:
                def const(t=c.out):  # one value over the trailing grid axes
                    return bool(torch.equal(t, t[..., :1, :1].expand_as(t)))
                reading = read_softmax(shape, c.dim, inp, ref_out, constant=const)
                if reading is None:
                    why = refusal(shape, d, self.batch, hw, False)
        else:
            why = None
            src = c.src
            if src is not None and len(src) == 4 and src[-2:] == (1, 1) and \
                    tuple(c.inp.shape) != src and c.inp.dim() == 4 and \
                    c.inp.shape[-1] * c.inp.shape[-2] > 1:
                why = RESHAPED
            reading = None if why else read_sigmoid(
                shape, inp, ref_out, perm=perm,
                orient=self._orient(c) if len(shape) == 3 else None)
        if why is not None:
            return None, (layer, label, why)
        if reading is None:
            return None, (layer, label, f"shape {list(shape)} fits no kind against the input "
                                        f"{list(inp)}")
        kind, recipe = reading
        hook = stack[hook_i].path
        index = 0 if form in ("module", "mha") else c.ords[hook_i]
        if _kinds.get(kind).queried:  # a softmax over keys belongs to the module computing it
            owner = next((stack[i] for i in range(start, -1, -1)
                          if not isinstance(stack[i].module, CONTAINERS)), ref)
            layer = owner.path
            geometry = ref.path
        else:
            geometry = layer
        rel = hook[len(layer) + 1:] if layer and hook.startswith(layer + ".") else \
            ("" if hook == layer else hook)
        if form == "module":
            tail = rel.replace(".", ":") or c.name
        elif form == "mha":
            tail = join_path(rel.replace(".", ":"), "attn_weights")
        else:
            tail = f"{c.name}#{index}"
            if rel:
                tail = f"{rel.replace('.', ':')}@{tail}"
        if any(isinstance(e.module, cls) for e in stack[:start + 1] for cls in ADAPTERS):
            return None, (layer, label, "inside a module with a registered adapter")
        return Site(name=join_path(layer, tail), layer=layer, kind=kind,
                    block=block_name(self.model, layer, stack[found[0]].module
                                     if geometry == layer else self.model.get_submodule(layer)),
                    call=label, hook=hook, form=form, index=index, recipe=recipe, shape=shape,
                    geometry=geometry, layout="nhwc" if perm is None and tuple(inp) != tuple(
                        ref.inp) else "nchw"), None


def probe_input(model: nn.Module, geometry) -> torch.Tensor:
    """The probe's batch: seeded normal values, (2, *geometry), on the model's device/dtype."""
    p = next(iter(model.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    g = torch.Generator().manual_seed(0)
    return torch.randn((PROBE_BATCH,) + tuple(int(v) for v in geometry), generator=g).to(dev, dtype)


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)
