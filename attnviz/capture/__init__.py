"""Capture: what every attention module computed, recorded with forward hooks.

    with attnviz.capture(model) as rec:     # this package is callable: capture.capture(...)
        model(x)
    rec.maps                                # [AttentionMap, ...] in forward order

:mod:`.recorder` (records, the recorder, interventions), :mod:`.structure` (a model's hook
points, found once), :mod:`.maps` (records as spatial maps over the image), :mod:`.discover`
(the attention in modules attnviz did not write).
"""
from ..callable_module import make_callable
from .discover import Discovery, discover, register_adapter, unregister_adapter
from .maps import affinity_row, has_spatial, to_spatial
from .recorder import (AttentionMap, Recorder, capture, hook_count, hook_points, intervene,
                       list_taps, select_taps)

make_callable(__name__, capture)

__all__ = ["AttentionMap", "Discovery", "Recorder", "affinity_row", "capture", "discover",
           "has_spatial", "hook_count", "hook_points", "intervene", "list_taps",
           "register_adapter", "select_taps", "to_spatial", "unregister_adapter"]
