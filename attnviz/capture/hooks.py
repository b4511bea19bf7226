"""One lifecycle for every hook attnviz places on a model (capture's taps, discovered sites,
interventions, the discovery probe), after TorchCAM's hooks:

    with Hooks(model) as hooks:                     # train/eval flags noted
        hooks.forward(module, fn)                   # register_forward_hook, handle kept
        hooks.forward_pre(module, fn)
        model(x)
    # every handle removed (in ``finally``, also after an error), each module's flag as it was

A subclass registers its hooks in :meth:`attach` (called by ``__enter__``; a failure there
removes what was registered) and undoes its own state in :meth:`detach` (called first by
``__exit__``). Nothing here is installed at import: no process-wide torch hook.
"""
from __future__ import annotations

from typing import Callable

from torch import nn


class Hooks:
    """Forward hooks held for one ``with`` block; removed and train/eval restored on exit."""

    def __init__(self, model: nn.Module, modules: list | None = None, keep_modes: bool = True):
        self.model = model
        self.handles: list = []
        self._modules = modules  # the model's modules, when the caller has them cached
        self._keep_modes = keep_modes  # False: another lifecycle on the same model restores them
        self._flags: list = []

    # -- registering ------------------------------------------------------------------------
    def forward(self, module: nn.Module, fn: Callable, **kw) -> None:
        self.handles.append(module.register_forward_hook(fn, **kw))

    def forward_pre(self, module: nn.Module, fn: Callable, **kw) -> None:
        self.handles.append(module.register_forward_pre_hook(fn, **kw))

    def attach(self) -> None:
        """Register this lifecycle's hooks (subclasses); the base registers none."""

    def detach(self) -> None:
        """Undo what :meth:`attach` set besides hooks (subclasses); runs before the removal."""

    # -- the lifecycle ----------------------------------------------------------------------
    def __enter__(self):
        if self._keep_modes:
            if self._modules is None:
                self._modules = list(self.model.modules())
            self._flags = [m.training for m in self._modules]
        try:
            self.attach()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.detach()
        finally:
            self._close()
        return False

    def _close(self) -> None:
        try:
            for h in self.handles:
                h.remove()
            self.handles.clear()
        finally:
            self._restore_modes()

    def _restore_modes(self) -> None:
        modules, flags = self._modules or [], self._flags
        if flags and [m.training for m in modules] != flags:
            for m, training in zip(modules, flags):
                if m.training is not training:
                    m.training = training
        self._flags = []
