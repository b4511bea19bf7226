"""A model's hook points and modules, found once per model and reused by capture and discovery."""
from __future__ import annotations

import weakref

from torch import nn

from ..models.layers.tap import iter_taps


# ------------------------------------------------------------------------------ per-model cache
# What a capture needs from a model's structure (its hook points and its modules, for the
# train/eval snapshot) is found once per model and reused while the model keeps the same modules:
# each use walks ``model.modules()`` (no names built) and compares the modules by identity, so a
# submodule added, removed or replaced after the first capture makes the next one walk again.
# Nothing is installed in torch for this (no process-wide module-registration hook).
class _Structure:
    """A model's hook points and modules, as they were when it was walked."""

    __slots__ = ("points", "modules", "key", "memo", "__weakref__")

    def __init__(self, model: nn.Module, modules: list):
        self.modules = modules
        self.key = tuple(map(id, modules))
        self.points = _find_points(model)
        self.memo: dict = {}  # facts derived from these modules (e.g. discovery's own_model)


_STRUCTURES: "weakref.WeakKeyDictionary[nn.Module, _Structure]" = weakref.WeakKeyDictionary()


def _find_points(model: nn.Module) -> list:
    """The one place that lists a model's hook points: [(path, module)] in forward-definition
    order, each module carrying ``kind`` and ``block``. Cached per model by
    :func:`hook_points`; other sources of hook points (discovered modules) extend this list."""
    return list(iter_taps(model))


def structure(model: nn.Module) -> _Structure:
    """The model's cached structure, walked again when its modules changed. One capture walks
    once and hands the result to everything it calls (taps, hooks, discovery's cache key)."""
    modules = list(model.modules())
    st = _STRUCTURES.get(model)
    if st is None or st.key != tuple(map(id, modules)):
        st = _Structure(model, modules)
        try:
            _STRUCTURES[model] = st
        except TypeError:  # not weak-referenceable: no cache
            pass
    return st


def hook_points(model: nn.Module) -> list:
    """[(path, module)] of every hook point (attention tap) of ``model``, cached per model."""
    return list(structure(model).points)
