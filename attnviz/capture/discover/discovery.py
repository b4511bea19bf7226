"""Discovery: the attention inside modules attnviz did not write, found with no edit to them.

    found = attnviz.discover(model)     # what capture will record, and how it was found
    print(found)                        # layer, kind, block, the call that made each tensor
    with attnviz.capture(model) as rec: # discovered maps arrive beside the taps' maps
        model(x)
    attnviz.capture(model, extra={"blocks.3.attn": "spatial"})   # a module's output, declared
    attnviz.register_adapter(MyGate, {"": "spatial"})            # the same for a class

How: one probe forward (a seeded (2, 3, S, S) batch, eval mode, no grad; S = ``model.info``'s
input size or 224) runs with a pre/post hook on every module and a
``torch.overrides.TorchFunctionMode`` that sees every sigmoid-family (``torch.sigmoid``,
``F.sigmoid``, ``Tensor.sigmoid``, ``F.hardsigmoid``, ``nn.Sigmoid``, ``nn.Hardsigmoid``) and
softmax call. Each result is read against the feature map of the attention module that made it
(:mod:`attnviz.discover_read`). Not attention: a sigmoid whose input is also what it multiplies
(swish / SiLU written out, quick GELU), SiLU / GELU modules (never sigmoid calls), the model's
final output, tensors already passed through an attnviz tap, and anything whose shape fits no kind
(listed in ``found.skipped`` with the reason). The result is cached per model; captures then hook
only what was found (:mod:`attnviz.discover_hooks`): a forward hook on a sigmoid/softmax child
module, or a per-thread function mode entered only while the module that calls
``torch.sigmoid``/``F.softmax`` runs.
"""
from __future__ import annotations

import threading
import warnings
import weakref
from dataclasses import replace

import torch
from torch import nn

from .read import read_declared
from ...errors import CaptureError

from ..structure import structure
from ...models.info import info_of
from .sites import (ADAPTERS, FAMILY, GENERATION, Discovery, Site, block_name,  # noqa: F401
                    declared_sites, register_adapter, unregister_adapter)  # re-exported
from .probe import Probe

_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


_KNOWN = ("torch.", "attnviz.models")


def own_model(model: nn.Module) -> bool:
    """Built only from torch's and attnviz's own modules: every attention passes through a tap,
    so there is nothing to discover (and no probe to run)."""
    return type(model).__module__.startswith("attnviz.models") and all(
        type(m).__module__.startswith(_KNOWN) for m in model.modules())


def discover(model: nn.Module, example: torch.Tensor | None = None,
             input_size: int | None = None, refresh: bool = False,
             extra: dict | None = None) -> Discovery:
    """Find the attention tensors of ``model`` (cached per model; ``refresh=True`` probes again).

    ``example``: an input batch for the probe (default: a seeded (2, 3, S, S) normal batch, S =
    ``input_size`` or ``model.info.input_size`` or 224). ``extra``: declarations added to the
    listing (see :func:`attnviz.capture`). A probe that fails gives an empty discovery with the
    error in ``error`` (and a warning), so captures of the model's taps still work.
    """
    found = _found(model, example, input_size, refresh)
    declared = declared_sites(model, extra)
    if not declared:
        return found
    return replace(found, sites=list(found.sites) + declared)


def _module_key(model: nn.Module) -> tuple:
    """Which modules the model has (capture's cached walk): a model changed after its probe,
    by a submodule added or replaced, is probed again."""
    return tuple(map(id, structure(model).modules))


def _found(model, example=None, input_size=None, refresh=False) -> Discovery:
    """The cached probe result (probing once per model structure and adapter registry)."""
    with _GUARD:
        lock = _LOCKS.setdefault(model, threading.Lock())
    with lock:
        hit = _CACHE.get(model)
        key = (GENERATION[0], _module_key(model))
        if refresh or hit is None or hit[0] != key:
            found = Discovery() if own_model(model) and example is None else \
                _probe_safely(model, example, input_size)
            hit = (key, found)
            _CACHE[model] = hit
    return hit[1]


def sites_for_capture(model: nn.Module, extra: dict | None = None,
                      auto: bool = True) -> list[Site]:
    """The sites a capture hooks: discovered ones (not for attnviz's own models, whose attention
    is all tapped, nor with ``auto=False``) and declared ones."""
    sites = list(_found(model).sites) if auto else []
    return sites + declared_sites(model, extra)


def select_sites(sites: list[Site], layers=None, kinds=None, blocks=None) -> list[Site]:
    """The sites a capture's ``layers`` (fnmatch patterns or prefixes of the site's name or
    layer), ``kinds`` and ``blocks`` filters keep."""
    import fnmatch
    layers = [layers] if isinstance(layers, str) else layers
    kinds = [kinds] if isinstance(kinds, str) else kinds
    blocks = [blocks] if isinstance(blocks, str) else blocks

    def hit(p, s):
        return any(n == p or n.startswith(p + ".") or fnmatch.fnmatchcase(n, p)
                   for n in (s.name, s.layer))
    return [s for s in sites if (kinds is None or s.kind in kinds)
            and (blocks is None or s.block in blocks)
            and (layers is None or any(hit(p, s) for p in layers))]


def _probe_safely(model, example, input_size) -> Discovery:
    try:
        return Probe(model).run(example, input_size)
    except Exception as e:  # a model the default probe cannot run: no discovery, taps still work
        msg = f"{type(e).__name__}: {e}"
        warnings.warn(f"attnviz could not probe {type(model).__name__} for attention modules "
                      f"({msg}); call attnviz.discover(model, example=<an input batch>)",
                      stacklevel=3)
        return Discovery(error=msg)


def read_for_site(site: Site, t: torch.Tensor, ref_shape) -> tuple:
    """The recipe for a declared site's output (checked on every call: a declared module
    may see any shape); raises CaptureError when ``t`` cannot be read as the declared kind."""
    recipe = read_declared(site.kind, tuple(t.shape), ref_shape)
    if recipe is None:
        raise CaptureError(
            f"{site.hook or '(model)'} returned a tensor of shape {list(t.shape)}, which is not "
            f"a {site.kind} map for an input of shape {list(ref_shape or [])}; declare the "
            "submodule whose output is the map itself")
    return recipe


def cam_layer_of(model: nn.Module) -> str | None:
    """The Grad-CAM layer: ``info.cam_layer``, else the last module whose output is a 4-D map
    with a grid larger than 1 x 1 (before the global pooling), found in the discovery probe."""
    layer = getattr(info_of(model), "cam_layer", None)
    if layer:
        return layer
    return _found(model).cam_layer
