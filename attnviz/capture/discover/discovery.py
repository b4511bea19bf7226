"""Discovery: the attention inside modules attnviz did not write, found with no edit to them.

    found = attnviz.discover(model)     # what capture will record, and how it was found
    print(found)                        # layer, kind, block, the call that made each tensor
    with attnviz.capture(model) as rec: # discovered maps arrive beside the taps' maps
        model(x)
    attnviz.capture(model, extra={"blocks.3.attn": "spatial"})   # a module's output, declared
    attnviz.register_adapter(MyGate, {"": "spatial"})            # the same for a class

How: one probe forward per model and input geometry (a seeded (2, C, H, W) batch at the size
of the input the model is given, or its declared size; eval mode, no grad) runs with a pre/post
hook on every module and a ``torch.overrides.TorchFunctionMode`` that sees every call that can
make an attention tensor (:mod:`.forms`: the sigmoid family, softmax, a clamp to [0, 1], a
matrix divided by N, ``F.scaled_dot_product_attention``). Each result is read against the
feature map of the attention module that made it (:mod:`.read`). Not attention: a sigmoid whose
input is also what it multiplies
(swish / SiLU written out, quick GELU), SiLU / GELU modules (never sigmoid calls), the model's
final output, tensors already passed through an attnviz tap, and anything whose shape fits no kind
(listed in ``found.skipped`` with the reason). The result is cached per model; captures then hook
only what was found (:mod:`.hooks`): a forward hook on a sigmoid/softmax child
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
from .probe import PROBE_BATCH, Probe, probe_input

_CACHE: "weakref.WeakKeyDictionary[nn.Module, _Probed]" = weakref.WeakKeyDictionary()
_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


_KNOWN = ("torch.", "attnviz.models")


def own_model(model: nn.Module, st=None) -> bool:
    """Built only from torch's and attnviz's own modules: every attention passes through a tap,
    so there is nothing to discover (and no probe to run). ``st``: the model's structure
    (:func:`~attnviz.capture.structure.structure`), when the caller has walked it; the answer
    is kept with it."""
    st = structure(model) if st is None else st
    own = st.memo.get("own")
    if own is None:
        own = st.memo["own"] = type(model).__module__.startswith("attnviz.models") and all(
            type(m).__module__.startswith(_KNOWN) for m in st.modules)
    return own


def discover(model: nn.Module, example: torch.Tensor | None = None,
             input_size: int | None = None, refresh: bool = False,
             extra: dict | None = None) -> Discovery:
    """Find the attention tensors of ``model`` (cached per model and input geometry;
    ``refresh=True`` probes again).

    The probe runs at the model's own input size: ``example``'s (an input batch, used as is),
    else ``input_size``, else the size of the input the model was last captured with, else its
    declared size (``model.info.input_size`` or what :func:`attnviz.describe` set; timm's
    ``pretrained_cfg["input_size"]``), else 224. ``extra``: declarations added to the listing
    (see :func:`attnviz.capture`). A probe that fails gives an empty discovery with the error in
    ``error`` (and a warning), so captures of the model's taps still work; a capture then probes
    again at the size of the input it is given.
    """
    if example is not None:
        geometry = tuple(example.shape[1:])
    elif input_size is not None:
        geometry = (3, int(input_size), int(input_size))
    else:
        geometry = None
    found = _found(model, geometry, refresh, example)
    declared = declared_sites(model, extra)
    if not declared:
        return found
    return replace(found, sites=list(found.sites) + declared)


def declared_geometry(model: nn.Module) -> tuple:
    """(C, H, W) the model says it takes: its ModelInfo's input size when given (attnviz's
    models, :func:`attnviz.describe`), timm's ``pretrained_cfg`` / ``default_cfg``
    ``input_size``, else (3, 224, 224)."""
    info = info_of(model)  # its ModelInfo, what describe() set, or the defaults (not used)
    size = getattr(info, "input_size", None)
    if isinstance(size, int) and size > 0 and "px input" not in " ".join(
            getattr(info, "card", {}).get("defaults") or []):
        return (3, size, size)
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
        if isinstance(size, (tuple, list)) and len(size) == 3 and all(
                isinstance(v, int) and v > 0 for v in size):
            return tuple(size)
    return (3, 224, 224)


def _module_key(model: nn.Module, st=None) -> tuple:
    """Which modules the model has (capture's cached walk): a model changed after its probe,
    by a submodule added or replaced, is probed again."""
    return (structure(model) if st is None else st).key


class _Probed:
    """A model's discoveries by input geometry, for one structure and adapter registry."""

    __slots__ = ("key", "by_geometry", "last")

    def __init__(self, key):
        self.key, self.by_geometry, self.last = key, {}, None


MAX_GEOMETRIES = 8


def _found(model, geometry=None, refresh=False, example=None, st=None) -> Discovery:
    """The cached probe result at ``geometry`` ((C, H, W); None: the last one probed, else the
    declared size), probing once per model structure, adapter registry and geometry."""
    with _GUARD:
        lock = _LOCKS.setdefault(model, threading.Lock())
    with lock:
        key = (GENERATION[0], _module_key(model, st))
        probed = _CACHE.get(model)
        if refresh or probed is None or probed.key != key:
            probed = _Probed(key)
            _CACHE[model] = probed
        given = geometry is not None
        if geometry is None:
            geometry = probed.last or declared_geometry(model)
        geometry = tuple(int(v) for v in geometry)
        found = probed.by_geometry.get(geometry)
        if found is None:
            found = Discovery() if own_model(model, st) and example is None else \
                _probe_safely(model, example, geometry)
            if len(probed.by_geometry) >= MAX_GEOMETRIES:
                probed.by_geometry.pop(next(iter(probed.by_geometry)))
            if found.error is None or not given:  # a failure at a size asked for: try again
                probed.by_geometry[geometry] = found
        if found.error is None or probed.last is None:
            probed.last = geometry
    return found


def probed_geometry(model: nn.Module) -> tuple | None:
    """The geometry of the discovery a capture of ``model`` uses now (None before any)."""
    probed = _CACHE.get(model)
    return probed.last if probed is not None else None


def sites_for_capture(model: nn.Module, extra: dict | None = None,
                      auto: bool = True, geometry=None, st=None) -> list[Site]:
    """The sites a capture hooks: discovered ones at ``geometry`` (default: the last probed or
    the declared size; not for attnviz's own models, whose attention is all tapped, nor with
    ``auto=False``) and declared ones. ``st``: the model's structure, walked by the caller."""
    sites = list(_found(model, geometry, st=st).sites) if auto else []
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


def _probe_safely(model, example, geometry) -> Discovery:
    try:
        if example is None:
            example = probe_input(model, geometry)
        return Probe(model, int(example.shape[0])).run(example, None)
    except Exception as e:  # a model the probe cannot run: no discovery, taps still work
        msg = f"{type(e).__name__}: {e}"
        warnings.warn(f"attnviz could not probe {type(model).__name__} for attention modules "
                      f"at input {list(geometry)} ({msg}); a capture probes again at the size "
                      "of the input it is given, or call attnviz.discover(model, "
                      "example=<an input batch>)", stacklevel=3)
        return Discovery(error=msg, probe_shape=(PROBE_BATCH,) + tuple(geometry))


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
