"""Capture-time hooks for discovered and declared attention (see :mod:`attnviz.discover`).

Per site, only what reads its tensor from the call that made it:
- "module" sites: a forward hook on the sigmoid / softmax child module;
- "call" sites: a forward pre-hook on the module that calls ``torch.sigmoid`` / ``F.softmax``
  pushes a ``TorchFunctionMode`` onto the running thread's mode stack and its forward hook pops
  it; the mode hands the ``index``-th sigmoid/softmax result to the recorder;
- "declared" sites: a forward hook on the declared module (its output is the map);
- "mha" sites: a forward hook on the ``nn.MultiheadAttention`` that asks it for its per-head
  weights beside the call (its own output is left as computed);
- sites that need the attention module's input grid (affinities, flattened spatial maps,
  declared maps) add a pre-hook on that module that notes its input shape for this thread.
Every hook acts only in the context that opened the capture (a ``ContextVar``), so concurrent
captures on one shared model stay apart; a hook that returns a tensor replaces it (interventions).
On exit every hook is removed, and modes a failed forward left pushed on this thread are popped.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ... import kinds as _kinds
from ..hooks import Hooks
from .discovery import Site, read_for_site
from .forms import SDPA, candidate, mha_weights, mha_with, sdpa_weights, sdpa_with
from .read import canonical, raw_layout

_ACTIVE: contextvars.ContextVar[tuple] = contextvars.ContextVar("attnviz_found_active",
                                                               default=())


class _SiteMode(TorchFunctionMode):
    """Counts sigmoid/softmax results while one module runs; hands the wanted ones over."""

    def __init__(self, hooks: "SiteHooks", module: nn.Module, sites: dict[int, Site]):
        super().__init__()
        self.hooks, self.module, self.sites = hooks, module, sites
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        family = candidate(func, args, kwargs, out)
        if family is not None:
            site = self.sites.get(self.count)
            self.count += 1
            if site is not None:
                if family == SDPA:  # the fused result stays; its weights are recorded
                    rep = self.hooks.hit(site, sdpa_weights(args, kwargs))
                    if rep is not None:
                        out = sdpa_with(rep, args, kwargs)
                else:
                    rep = self.hooks.hit(site, out)
                    if rep is not None:
                        out = rep
        return out


class SiteHooks(Hooks):
    """``with SiteHooks(model, sites, on_hit):`` calls ``on_hit(site, tensor, meta)`` with each
    site's tensor in canonical shape; a non-None return (canonical shape) replaces it. The
    lifecycle is :class:`~attnviz.capture.hooks.Hooks`' (its callers pair it with the taps'
    hooks, which restore train/eval)."""

    def __init__(self, model: nn.Module, sites: list[Site], on_hit: Callable):
        super().__init__(model, keep_modes=False)
        self.sites, self.on_hit = list(sites), on_hit
        self.token = None
        self.local = threading.local()

    # -- per-thread state ---------------------------------------------------------------------
    def _modes(self) -> list:
        if not hasattr(self.local, "modes"):
            self.local.modes = []
        return self.local.modes

    def _shapes(self) -> dict:
        if not hasattr(self.local, "shapes"):
            self.local.shapes = {}
        return self.local.shapes

    def _active(self) -> bool:
        return self.owner in _ACTIVE.get()

    # -- hooks --------------------------------------------------------------------------------
    def hit(self, site: Site, raw):
        if not isinstance(raw, torch.Tensor):
            return None
        ref = self._shapes().get(site.layer if site.geometry is None else site.geometry)
        recipe = read_for_site(site, raw, ref) if site.form == "declared" else site.recipe
        hw = None if ref is None or len(ref) < 4 else (
            tuple(ref[-3:-1]) if site.layout == "nhwc" else tuple(ref[-2:]))
        canon, meta = canonical(recipe, raw, hw, ref[0] if ref is not None else None)
        if site.form == "declared":
            _kinds.get(site.kind).validate(canon, meta)
        meta["found_by"] = site.call
        rep = self.on_hit(site, canon, meta)
        return None if rep is None else raw_layout(recipe, rep, raw)

    def _output_hook(self, site):
        def hook(module, args, output):
            if not self._active():
                return None
            return self.hit(site, output)
        return hook

    def _mha_hook(self, site):
        def hook(module, args, kwargs, output):
            if not self._active():
                return None
            rep = self.hit(site, mha_weights(module, args, kwargs))
            return None if rep is None else mha_with(module, rep, args, kwargs, output)
        return hook

    def note_input(self, layer: str, x: torch.Tensor) -> None:
        """Note ``layer``'s input shape for this thread: a shape hook that :meth:`rebind`
        registers while that module's own call is starting (the model, probed at a new size)
        would miss that call."""
        if self._active():
            self._shapes()[layer] = tuple(x.shape)

    def _shape_hook(self, layer):
        def hook(module, args):
            if self._active():
                x = next((a for a in args if isinstance(a, torch.Tensor)), None)
                if x is not None:
                    self._shapes()[layer] = tuple(x.shape)
        return hook

    def _enter_hook(self, sites: dict[int, Site]):
        def hook(module, args):
            if not self._active():
                return
            modes = self._modes()
            if any(m.module is module for m in modes):  # left by a forward that failed here
                self._pop_until(module)
            mode = _SiteMode(self, module, sites)
            mode.__enter__()
            modes.append(mode)
        return hook

    def _exit_hook(self, module, args, output):
        modes = self._modes()
        if modes and modes[-1].module is module:
            modes.pop().__exit__(None, None, None)

    def _pop_until(self, module=None):
        modes = self._modes()
        while modes:
            m = modes.pop()
            m.__exit__(None, None, None)
            if m.module is module:
                break

    # -- context ------------------------------------------------------------------------------
    def attach(self):
        self.owner = object()
        self._install(self.sites)
        self.token = _ACTIVE.set(_ACTIVE.get() + (self.owner,))

    def rebind(self, sites: list[Site]) -> None:
        """Hook ``sites`` instead of the current ones (a capture that met a new input size)."""
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.sites = list(sites)
        self._install(self.sites)

    def _install(self, sites):
        get = self.model.get_submodule
        calls: dict[str, dict[int, Site]] = {}
        grids = set()
        for s in sites:
            if s.form == "call":
                calls.setdefault(s.hook, {})[s.index] = s
            elif s.form == "mha":
                self.forward(get(s.hook), self._mha_hook(s), with_kwargs=True)
            else:
                self.forward(get(s.hook), self._output_hook(s))
            if s.form == "declared" or s.recipe[0] in ("grid", "affinity", "affinity4", "heads"):
                grids.add(s.layer if s.geometry is None else s.geometry)
        for layer in grids:
            self.forward_pre(get(layer), self._shape_hook(layer))
        for path, by_index in calls.items():
            mod = get(path)
            self.forward_pre(mod, self._enter_hook(by_index))
            self.forward(mod, self._exit_hook)

    def detach(self):
        try:
            if self.token is not None:
                _ACTIVE.reset(self.token)
                self.token = None
        finally:
            self._pop_until(None)  # modes an exception left pushed on this thread


@contextlib.contextmanager
def suspended():
    """No discovered-site hook records inside this block (a probe run during a capture)."""
    token = _ACTIVE.set(())
    try:
        yield
    finally:
        _ACTIVE.reset(token)
