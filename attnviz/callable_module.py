"""A module that can also be called: ``attnviz.capture``, ``attnviz.inspect`` and
``attnviz.explain`` are each both a module (``attnviz.explain.Explainer`` resolves) and the
function of the same name (``attnviz.explain(model, image)``)."""
from __future__ import annotations

import sys
import types


class CallableModule(types.ModuleType):
    """A module whose call runs its ``__call_target__``."""

    def __call__(self, *args, **kwargs):
        return self.__call_target__(*args, **kwargs)


def make_callable(module_name: str, target) -> types.ModuleType:
    """Make the module ``module_name`` callable as ``target``; returns the module."""
    module = sys.modules[module_name]
    module.__call_target__ = target
    module.__class__ = CallableModule
    return module
