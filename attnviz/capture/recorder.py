"""Capture what every attention tap computed, with forward hooks.

    with attnviz.capture(model) as rec:
        model(x)
    rec.maps  # [AttentionMap(layer, block, kind, tensor, meta), ...] in forward order

Hooks are registered on entry and removed in ``finally`` (also after an exception); the model's
train/eval state is restored; outputs are unchanged. Each recorder is bound to the context that
opened it through a ``ContextVar``, so two threads capturing on one shared model never see each
other's records: a hook fires for every thread's forward pass but writes only when its recorder
is active in the running context.

The same taps serve interventions (:func:`intervene`): a hook that returns a tensor replaces the
attention tensor, which is how gate ablation neutralises a module.
"""
from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .. import kinds as _kinds
from ..models.layers.tap import Tap, iter_taps
from ..errors import CaptureError, LayerError
from .hooks import Hooks
from .structure import hook_points, structure  # noqa: F401 - hook_points re-exported
from .discover.discovery import own_model, probed_geometry, select_sites, sites_for_capture
from .discover.hooks import SiteHooks, suspended

_ACTIVE: contextvars.ContextVar[tuple] = contextvars.ContextVar("attnviz_active", default=())


@dataclass
class AttentionMap:
    """One tap's tensor from one forward pass.

    layer: dotted path of the tap's block (e.g. ``layer3.1.cbam.SpatialGate``); tap: the tap's own
    path; block: se, cbam, sk, sge, nonlocal, danet_pam, danet_cam, self_attn, scconv;
    kind: channel (B,C), spatial (B,H,W), group (B,G,H,W), kernel (B,M,C), affinity (B,Nq,Nk),
    channel_affinity (B,C,C) or calibration (B,C,H,W). meta: grid sizes for affinities
    (``query_hw``, ``key_hw``), ``query_index`` when query rows were capped, dtype and byte counts.
    """

    layer: str
    tap: str
    block: str
    kind: str
    tensor: torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    @property
    def label(self) -> str:
        return f"{self.layer} · {self.block} {self.kind}"

    def __repr__(self):
        return f"AttentionMap({self.layer!r}, {self.block}, {self.kind}, shape={self.shape})"


@functools.lru_cache(maxsize=4096)
def _block_path(tap_name: str) -> str:
    """The tap's owner: drop the tap's own attribute name."""
    return tap_name.rsplit(".", 1)[0] if "." in tap_name else tap_name


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def select_taps(model: nn.Module, layers=None, kinds=None, blocks=None, also=(), st=None):
    """[(name, tap)] filtered by layer patterns (fnmatch on the tap or block path, or a prefix),
    kinds and blocks. Raises CaptureError for an unknown kind or a pattern that matches nothing
    (among the taps and the names in ``also``: discovered attention). ``st``: the model's
    structure, when the caller has walked it."""
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        for k in kinds:
            _kinds.get(k)  # UnknownKindError (a CaptureError) for an unknown kind
    taps = (structure(model) if st is None else st).points
    if layers is None and kinds is None and blocks is None:
        return list(taps)
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(blocks, str):
        blocks = [blocks]
    out = []
    for name, tap in taps:
        if kinds is not None and tap.kind not in kinds:
            continue
        if blocks is not None and tap.block not in blocks:
            continue
        if layers is not None and not any(_matches(p, name) for p in layers):
            continue
        out.append((name, tap))
    if layers is not None:
        for p in layers:
            if not any(_matches(p, n) for n, _ in taps) and not any(_matches(p, n) for n in also):
                raise LayerError(
                    f"layer pattern {p!r} matches no attention tap of this model; "
                    f"taps are: {[n for n, _ in taps][:20]}")
    return out


def _matches(pattern: str, name: str) -> bool:
    return (name == pattern or name.startswith(pattern + ".")
            or fnmatch.fnmatchcase(name, pattern)
            or fnmatch.fnmatchcase(_block_path(name), pattern))


class Recorder:
    """Holds the records of one capture. ``maps`` is in forward order."""

    def __init__(self, affinity_dtype=None, max_queries=None, budget_mb=None):
        self.maps: list[AttentionMap] = []
        self.affinity_dtype = affinity_dtype
        self.max_queries = max_queries
        self.budget_bytes = None if budget_mb is None else int(budget_mb * 2**20)
        self.memory = {"bytes_full": 0, "bytes_kept": 0, "affinity_capped": 0,
                       "affinity_dtype": str(affinity_dtype or "unchanged"),
                       "budget_mb": budget_mb, "max_queries": max_queries}

    # -- views -------------------------------------------------------------------------------
    def by_kind(self, kind: str) -> list[AttentionMap]:
        return [m for m in self.maps if m.kind == kind]

    def by_layer(self, layer: str) -> list[AttentionMap]:
        return [m for m in self.maps if m.layer == layer or m.tap == layer]

    def __len__(self):
        return len(self.maps)

    def __iter__(self):
        return iter(self.maps)

    # -- recording ----------------------------------------------------------------------------
    def _add(self, name: str, tap: Tap, out: torch.Tensor, meta: dict, layer: str | None = None):
        t = out.detach()
        if meta:
            meta = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in meta.items()}
        else:
            meta = {}
        full = t.numel() * t.element_size()
        if _kinds.get(tap.kind).pairwise:
            t, meta = self._shrink_affinity(t, meta, tap.kind)
            kept = t.numel() * t.element_size()
        else:
            kept = full
        meta["dtype"] = _dtype_name(t.dtype)
        meta["bytes_full"] = full
        meta["bytes_kept"] = kept
        mem = self.memory
        mem["bytes_full"] += full
        mem["bytes_kept"] += kept
        self.maps.append(AttentionMap(_block_path(name) if layer is None else layer, name,
                                      tap.block, tap.kind, t, meta))

    def _shrink_affinity(self, t, meta, kind):
        dtype = self.affinity_dtype
        if (dtype is None and self.budget_bytes is not None
                and t.numel() * t.element_size() > self.budget_bytes):
            dtype = torch.float16
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        spec = _kinds.get(kind)
        qa = spec.axis("query")
        if qa is None:  # a pairwise kind without query rows (channel affinity): rows = axis 1
            qa = 1
        nq = t.shape[qa]
        cap = self.max_queries
        if self.budget_bytes is not None:
            per_row = t.numel() // nq * t.element_size()
            cap = min(cap or nq, max(1, self.budget_bytes // per_row))
        if cap is not None and cap < nq:  # whole query rows go, never a head or a batch item
            idx = torch.linspace(0, nq - 1, cap, device=t.device).round().long().unique()
            t = t.index_select(qa, idx).clone()
            meta["query_index"] = idx.cpu()
            self.memory["affinity_capped"] += 1
        return t, meta


class _TapHooks(Hooks):
    """One forward hook per selected tap for the duration of a ``with`` block, each acting only
    in the context that opened it (the lifecycle, removal and train/eval restore:
    :class:`Hooks`)."""

    def __init__(self, model, taps, fn: Callable, st=None):
        # per module, so a model with some submodules frozen in eval mode comes back as it was
        super().__init__(model, (structure(model) if st is None else st).modules)
        self.taps, self.fn = taps, fn
        self.token = None

    def attach(self):
        owner = self.owner = object()
        for name, tap in self.taps:
            self.forward(tap, self._make_hook(name, tap, owner), with_kwargs=True)
        self.token = _ACTIVE.set(_ACTIVE.get() + (owner,))

    def _make_hook(self, name, tap, owner):
        fn = self.fn

        # Registered with kwargs, so called as hook(module, args, kwargs, output). When another
        # thread removes this hook while a forward pass is iterating the hooks, PyTorch may call it
        # as hook(module, args, output) instead: accept both (only the owner's context records).
        def hook(module, args, *rest):
            if owner not in _ACTIVE.get():
                return None
            kwargs, output = rest if len(rest) == 2 else ({}, rest[0])
            return fn(name, tap, output, kwargs)
        return hook

    def detach(self):
        if self.token is not None:
            _ACTIVE.reset(self.token)
            self.token = None





def _discovery():
    """(select_sites, sites_for_capture, SiteHooks, probed_geometry, own_model, suspended),
    imported once (not on every capture)."""
    return [select_sites, sites_for_capture, SiteHooks, probed_geometry, own_model, suspended]


@contextlib.contextmanager
def capture(model: nn.Module, layers=None, kinds=None, blocks=None, affinity_dtype=None,
            max_queries: int | None = None, budget_mb: float | None = None,
            extra: dict | None = None, discover: bool = True,
            example: torch.Tensor | None = None):
    """Record every attention tap's output during the ``with`` block.

    Args:
        layers: fnmatch patterns or prefixes of tap/block paths to record (default: all).
        kinds: kinds to record (default: all). blocks: block names to record.
        affinity_dtype: store affinity matrices in this dtype (e.g. ``torch.float16``).
        max_queries: keep at most this many query rows of each affinity or multi-head map
            (evenly spaced along the kind's query axis; every head kept; the kept indices are
            in ``meta["query_index"]``).
        budget_mb: cap per affinity matrix: above it, float16 and then fewer query rows.
        extra: ``{module path: kind}``: record these modules' outputs as that kind (attention
            that discovery does not find). discover: also record the attention that
            :func:`attnviz.discover` finds in modules attnviz did not write (default True); it
            is found at the size of the input the model is given in the block (probed once per
            model and input geometry) or of ``example`` (an input batch) when given.
    The recorder's ``memory`` dict reports bytes at full size, bytes kept and how many matrices
    were capped.
    """
    if max_queries is not None and int(max_queries) < 1:
        raise CaptureError("max_queries must be a positive number of query rows")
    if budget_mb is not None and budget_mb <= 0:
        raise CaptureError("budget_mb must be positive")
    select_sites, sites_for_capture, SiteHooks, geometry_of, own, suspended = _discovery()
    st = structure(model)  # walked once per capture: taps, modules, discovery's cache key
    geometry = tuple(example.shape[1:]) if example is not None else None
    lazy = discover and not own(model, st)
    if lazy and geometry is None and layers is None and geometry_of(model) is None:
        sites = sites_for_capture(model, extra, False, st=st)  # found at the first input's size
    else:
        sites = sites_for_capture(model, extra, discover, geometry, st=st)
        geometry = geometry or geometry_of(model)
    taps = select_taps(model, layers, kinds, blocks,
                       also=[n for s in sites for n in (s.name, s.layer)], st=st)
    rec = Recorder(affinity_dtype, max_queries, budget_mb)

    def record(name, tap, output, kwargs):
        rec._add(name, tap, output, kwargs)
        return None

    if not sites and not lazy:
        with _TapHooks(model, taps, record, st):
            yield rec
        return

    def record_site(site, tensor, meta):
        rec._add(site.name, site, tensor, meta, layer=site.layer)
        return None

    sites = select_sites(sites, layers, kinds, blocks)
    with _TapHooks(model, taps, record, st) as taps_on, \
            SiteHooks(model, sites, record_site) as hooks:
        handle = None
        if lazy:
            seen = [geometry]

            def at_size(module, args):
                """Probe at the size of the input given (once per geometry, cached) and hook
                the sites found there, before the model runs on it."""
                if taps_on.owner not in _ACTIVE.get():
                    return
                x = args[0] if args and isinstance(args[0], torch.Tensor) else None
                if x is None or x.dim() < 2 or tuple(x.shape[1:]) == seen[0]:
                    return
                seen[0] = tuple(x.shape[1:])
                token = _ACTIVE.set(())
                try:
                    with suspended():
                        found = sites_for_capture(model, extra, True, seen[0], st=st)
                finally:
                    _ACTIVE.reset(token)
                hooks.rebind(select_sites(found, layers, kinds, blocks))
                hooks.note_input("", x)  # sites read against the model's own input grid
            handle = model.register_forward_pre_hook(at_size)
        try:
            yield rec
        finally:
            if handle is not None:
                handle.remove()


@contextlib.contextmanager
def intervene(model: nn.Module, replace: dict[str, Callable[[torch.Tensor], torch.Tensor]]):
    """Replace tap outputs during the ``with`` block: ``{tap path: fn(tensor) -> tensor}``.

    Used by gate ablation; acts only in the calling context and leaves the model as it was.
    """
    taps = dict(iter_taps(model))
    sites = {s.name: s for s in sites_for_capture(model)} if any(
        k not in taps for k in replace) else {}
    unknown = [k for k in replace if k not in taps and k not in sites]
    if unknown:
        raise LayerError(f"no attention tap named {unknown}; taps are "
                         f"{(list(taps) + list(sites))[:20]}")

    def swap(name, tap, output, kwargs):
        return replace[name](output)

    def swap_site(site, tensor, meta):
        return replace[site.name](tensor)

    with _TapHooks(model, [(n, taps[n]) for n in replace if n in taps], swap), \
            SiteHooks(model, [sites[n] for n in replace if n in sites], swap_site):
        yield


def hook_count(model: nn.Module) -> int:
    """Number of forward (pre-)hooks and backward hooks on any submodule (for tests)."""
    total = 0
    for m in model.modules():
        total += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        total += len(getattr(m, "_backward_pre_hooks", {}))
    return total


def list_taps(model: nn.Module) -> list[tuple[str, str, str]]:
    """[(tap path, block, kind)] of a model: its taps, then the attention discovery finds in
    modules attnviz did not write (:func:`attnviz.discover`)."""
    return [(n, t.block, t.kind) for n, t in iter_taps(model)] + [
        (s.name, s.block, s.kind) for s in sites_for_capture(model)]
