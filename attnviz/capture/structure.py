"""A model's hook points and modules, found once per model and reused by capture and discovery."""
from __future__ import annotations

import weakref

import torch
from torch import nn

from ..models.layers.tap import iter_taps


# ------------------------------------------------------------------------------ per-model cache
# What a capture needs from a model's structure (its hook points and its modules, for the
# train/eval snapshot) is found once per model and reused. Any submodule registered anywhere in
# the process (``module.x = nn.Conv2d(...)``, ``add_module``) bumps a generation counter that
# invalidates every cache, so a model changed after its first capture is walked again.
GENERATION = [0]


def _bump_generation(module, name, submodule):
    GENERATION[0] += 1


torch.nn.modules.module.register_module_module_registration_hook(_bump_generation)


class _Structure:
    """A model's hook points and modules at one generation."""

    __slots__ = ("generation", "points", "modules", "__weakref__")

    def __init__(self, model: nn.Module):
        self.generation = GENERATION[0]
        self.points = _find_points(model)
        self.modules = list(model.modules())


_STRUCTURES: "weakref.WeakKeyDictionary[nn.Module, _Structure]" = weakref.WeakKeyDictionary()


def _find_points(model: nn.Module) -> list:
    """The one place that lists a model's hook points: [(path, module)] in forward-definition
    order, each module carrying ``kind`` and ``block``. Cached per model by
    :func:`hook_points`; other sources of hook points (discovered modules) extend this list."""
    return list(iter_taps(model))


def structure(model: nn.Module) -> _Structure:
    st = _STRUCTURES.get(model)
    if st is None or st.generation != GENERATION[0]:
        st = _Structure(model)
        try:
            _STRUCTURES[model] = st
        except TypeError:  # not weak-referenceable: no cache
            pass
    return st


def hook_points(model: nn.Module) -> list:
    """[(path, module)] of every hook point (attention tap) of ``model``, cached per model."""
    return list(structure(model).points)
