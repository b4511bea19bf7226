"""What each attention *kind* is, and which attention *blocks* exist: the one place that says so.

A **kind** is the sort of tensor an attention tap sees (a channel gate, a spatial map, an affinity,
...). Its :class:`KindSpec` says everything the rest of attnviz needs to know about it:

    name, display_name     "channel", "channel gate"
    shape, ndim            the canonical shape contract, e.g. "(B, C)", checked by ``validate``
    to_spatial(...)        how it reduces to a (B, h, w) map over the image, or None if it has no
                           spatial layout (``spatial`` says which)
    neutral(t, mode)       its neutral value, what gate ablation puts in its place
    value_range, value_label   the range and label of its colour bars
    figure_builder()       the Plotly builder that draws it (a callable, or the name of a builder
                           attnviz.render registers: this module imports nothing above it)
    axes, labels           which axis holds heads, queries, keys, channels ({"head": 1, ...}),
                           and their names: readers (max_queries, rows(), heads(), figures) take
                           them from here instead of assuming positions

Kinds: channel (B, C), spatial (B, H, W), kernel (B, M, C), group (B, G, H, W), affinity
(B, Nq, Nk), channel_affinity (B, C, C), calibration (B, C, H, W), multihead (B, heads x
windows, Nq, Nk; ``meta``: heads, windows, head_order, query/key grids) and directional
(B, C, H, 1) or (B, C, 1, W) (coordinate attention's gates).

A **block** is an attention module. Its :class:`BlockSpec` gives its display name, its class,
how it plugs into the residual body (``slot``: "gate" rescales a residual block's output,
"standalone" sits between blocks or in a head, "conv" replaces a convolution) and the kinds of
its taps. The block factory (``attnviz.blocks.get_attn``), tap validation, display names and the
model zoo read this table.

    from attnviz import kinds
    kinds.get("affinity").to_spatial(tensor, meta)     # (B, kh, kw)
    kinds.spatial_kinds()                               # ("spatial", "group", "affinity", ...)
    kinds.block("cbam").display_name                    # "CBAM"

Adding a block with an existing kind: its module plus one :func:`register_block` row (in
``attnviz.models.layers.BLOCK_TABLE``, or from the code that defines it). Adding a kind: one
:class:`KindSpec` (``register``)
and its figure builder. See docs/architecture.md.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable

import torch

from .errors import UnknownBlockError, UnknownKindError
from .errors import CaptureError

GATE, STANDALONE, CONV = "gate", "standalone", "conv"
SLOTS = (GATE, STANDALONE, CONV)


def _resolve(ref):
    """A callable or class, or a "package.module:attribute" reference to one (imported on use)."""
    if ref is None or not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


# ------------------------------------------------------------------------------ reductions
def _identity(t, meta, how):
    return t


def _mean_over_dim1(t, meta, how):
    return t.amax(1) if how == "max" else t.mean(1)


def _affinity_received(t, meta, how):
    """Attention each key position receives, averaged over the (kept) queries, on the key grid."""
    kh, kw = meta["key_hw"]
    return t.mean(1).reshape(t.shape[0], kh, kw)


def _heads_received(t, meta, how):
    """Multi-head attention each key position receives: over the (kept) queries, the mean (or
    with ``how="max"`` the max) over heads (and windows), on the key grid."""
    kh, kw = meta["key_hw"]
    per_head = t.mean(2)
    m = per_head.amax(1) if how == "max" else per_head.mean(1)
    return m.reshape(t.shape[0], kh, kw)


def _directional(t, meta, how):
    """A directional gate (B, C, H, 1) or (B, C, 1, W) over its channels: a (B, H, 1) column or
    a (B, 1, W) row, stretched over the image by the overlay."""
    return t.amax(1) if how == "max" else t.mean(1)


def head_view(t: torch.Tensor, meta: dict) -> torch.Tensor:
    """A multi-head tensor (B, heads x windows, Nq, Nk) as (B, heads, windows, Nq, Nk), whatever
    order the module kept heads and windows in (``meta["head_order"]``)."""
    heads = int(meta.get("heads", t.shape[1]))
    windows = t.shape[1] // max(heads, 1)
    b, _, nq, nk = t.shape
    if meta.get("head_order", "heads_first") == "windows_first":
        return t.reshape(b, windows, heads, nq, nk).transpose(1, 2)
    return t.reshape(b, heads, windows, nq, nk)


# ------------------------------------------------------------------------------ neutral values
def _neutral_gate(t, mode):
    """Gates: all 1, or with ``mode="mean"`` each sample's mean gate."""
    if mode == "one":
        return torch.ones_like(t)
    dims = tuple(range(1, t.dim()))
    return t.mean(dims, keepdim=True).expand_as(t).clone()


def _uniform_over(dim):
    def neutral(t, mode):
        return torch.full_like(t, 1.0 / t.shape[dim])
    neutral.__doc__ = f"Softmax weights: uniform over axis {dim}."
    return neutral


# ------------------------------------------------------------------------------ captions
def _grid_hw(shape, meta):
    return f"{shape[-2]}x{shape[-1]}"


def _grid_keys(shape, meta):
    grid = "x".join(map(str, meta.get("key_hw", ())))
    return f"keys {grid}" if grid else ""


def _grid_heads(shape, meta):
    heads = meta.get("heads", shape[1])
    grid = "x".join(map(str, meta.get("key_hw", ())))
    return f"{heads} heads, keys {grid}" if grid else f"{heads} heads"


def _grid_direction(shape, meta):
    return f"along H ({shape[2]})" if shape[3] == 1 else f"along W ({shape[3]})"


@dataclass(frozen=True)
class KindSpec:
    """One kind of attention tensor (see the module docstring).

    Fields beyond the obvious: ``tab`` is the app tab that shows the kind (channel affinities
    share the Affinity tab); ``queried`` kinds hold one row per query position (affinities: the
    app and figures pick a query); ``pairwise`` kinds are the quadratic ones capture may store in
    a smaller dtype or with capped rows; ``grouped`` kinds get one figure for all their records
    (the builder takes a list); ``shows_tensor``: the figure colours the tensor itself rather than
    its spatial reduction; ``caption_grid(shape, meta)`` the size part of a caption.
    """

    name: str
    display_name: str
    shape: str
    ndim: int
    title: str
    neutral: Callable = _neutral_gate
    reduce: Callable | None = None
    value_label: str = "value"
    value_range: tuple | None = (0.0, 1.0)
    figure: object = None
    grouped: bool = False
    queried: bool = False
    pairwise: bool = False
    shows_tensor: bool = False
    tab: str = ""
    caption_grid: Callable = field(default=lambda shape, meta: f"{shape[-1]} channels")
    axes: Mapping = field(default_factory=dict)
    labels: Mapping = field(default_factory=dict)

    def axis(self, name: str) -> int | None:
        """The index of axis ``name`` ("batch", "head", "query", "key", "channel") or None."""
        return self.axes.get(name)

    def rows(self, tensor: torch.Tensor, meta: dict | None = None,
             head: int | None = None) -> torch.Tensor:
        """A queried kind's (B, Nq, Nk) rows: one head's (``head``; the mean over its windows
        for windowed attention) or the mean over heads; the tensor itself for an affinity."""
        meta = meta or {}
        if self.axis("head") is None:
            return tensor
        view = head_view(tensor, meta)
        if head is None:
            return view.float().mean((1, 2))
        n = view.shape[1]
        if not 0 <= int(head) < n:
            raise UnknownKindError(f"head {head} does not exist: this map has {n} head(s), "
                                   f"0 to {n - 1}")
        return view[:, int(head)].float().mean(1)

    def heads(self, meta: dict | None, tensor: torch.Tensor | None = None) -> int:
        """How many heads a record of this kind has (1 for kinds without a head axis)."""
        if self.axis("head") is None:
            return 1
        meta = meta or {}
        return int(meta.get("heads", tensor.shape[self.axis("head")] if tensor is not None
                            else 1))

    @property
    def spatial(self) -> bool:
        """Whether the kind reduces to a spatial map (has a layout over the image)."""
        return self.reduce is not None

    @property
    def tab_key(self) -> str:
        return self.tab or self.name

    def validate(self, tensor: torch.Tensor, meta: dict | None = None) -> None:
        """Raise :class:`attnviz.errors.CaptureError` unless ``tensor`` fits the shape contract."""
        if tensor.dim() != self.ndim:
            raise CaptureError(f"a {self.name} tensor is {self.shape}; got shape "
                               f"{tuple(tensor.shape)}")
        meta = meta or {}
        if self.queried and "key_hw" in meta:
            kh, kw = meta["key_hw"]
            if kh * kw != tensor.shape[-1]:
                raise CaptureError(f"a {self.name} tensor has {tensor.shape[-1]} keys but its key "
                                   f"grid is {kh}x{kw}")
        if self.axis("head") is not None and tensor.shape[self.axis("head")] % int(
                meta.get("heads", 1) or 1):
            raise CaptureError(f"a {self.name} tensor has {tensor.shape[self.axis('head')]} "
                               f"heads x windows, not a multiple of {meta.get('heads')} heads")
        if self.name == "directional" and 1 not in tuple(tensor.shape[2:]):
            raise CaptureError(f"a directional gate is (B, C, H, 1) or (B, C, 1, W); got shape "
                               f"{tuple(tensor.shape)}")

    def to_spatial(self, tensor: torch.Tensor, meta: dict | None = None,
                   reduce: str = "mean") -> torch.Tensor | None:
        """(B, h, w) float map over the image, or None for a kind without spatial layout.
        ``reduce="max"`` takes the max instead of the mean over groups/channels."""
        if self.reduce is None:
            return None
        return self.reduce(tensor.float(), meta or {}, reduce)

    def neutral_value(self, tensor: torch.Tensor, mode: str = "one") -> torch.Tensor:
        """The neutral tensor ablation puts in place of ``tensor`` (batch first)."""
        return self.neutral(tensor, mode)

    def figure_builder(self) -> Callable:
        """The figure builder: f(record, **options), or f([records], **options) if ``grouped``.
        A kind's ``figure`` is a callable, the name of a builder :mod:`attnviz.render` registers
        here when it is imported (the built-in kinds: this module imports nothing above it), or
        a "package.module:function" reference of the user's, imported on use."""
        fn = self.figure if callable(self.figure) else _FIGURES.get(self.figure)
        if fn is None and isinstance(self.figure, str) and ":" in self.figure:
            fn = _resolve(self.figure)  # a user's "package.module:function", imported on use
        if fn is None:
            raise UnknownKindError(f"no figure builder is registered for kind {self.name!r}"
                                   + (f" (no builder named {self.figure!r} is registered)"
                                      if isinstance(self.figure, str) else ""))
        return fn

    def caption(self, shape, meta) -> str:
        return self.caption_grid(tuple(shape), meta or {})


_FIGURES: dict[str, Callable] = {}


def register_figures(builders: Mapping[str, Callable]) -> None:
    """Make figure builders known by name (attnviz.render does this for its own)."""
    _FIGURES.update(builders)
_KINDS: dict[str, KindSpec] = {}


def register(spec: KindSpec, replace: bool = False) -> KindSpec:
    """Add a kind. Re-registering a name raises unless ``replace``."""
    if spec.name in _KINDS and not replace and _KINDS[spec.name] is not spec:
        raise ValueError(f"kind {spec.name!r} is already registered")
    _KINDS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a kind (for tests that register their own)."""
    _KINDS.pop(name, None)


for _spec in (
    KindSpec("spatial", "spatial", "(B, H, W)", 3, "Spatial", reduce=_identity,
             value_label="attention", figure="spatial_heatmap", caption_grid=_grid_hw),
    KindSpec("channel", "channel gate", "(B, C)", 2, "Channel",
             value_label="gate value (0 = closed, 1 = open)", figure="channel_gate_bars",
             grouped=True, shows_tensor=True),
    KindSpec("kernel", "kernel selection", "(B, M, C)", 3, "Kernel selection",
             neutral=_uniform_over(1), value_label="branch weight",
             figure="kernel_selection_bars", grouped=True, shows_tensor=True,
             caption_grid=lambda s, m: f"{s[1]} branches x {s[2]} channels"),
    KindSpec("group", "group factors", "(B, G, H, W)", 4, "Group factors",
             reduce=_mean_over_dim1, value_label="mean group factor",
             figure="group_factor_grid", shows_tensor=True, caption_grid=_grid_hw),
    KindSpec("affinity", "affinity", "(B, Nq, Nk)", 3, "Affinity", neutral=_uniform_over(-1),
             reduce=_affinity_received, value_label="mean attention received",
             figure="affinity_figure", queried=True, pairwise=True,
             caption_grid=_grid_keys, axes={"batch": 0, "query": 1, "key": 2},
             labels={"query": "query position", "key": "key position"}),
    KindSpec("channel_affinity", "channel affinity", "(B, C, C)", 3, "Channel affinity",
             neutral=_uniform_over(-1), value_label="affinity",
             figure="channel_affinity_heatmap", pairwise=True, shows_tensor=True,
             tab="affinity", caption_grid=lambda s, m: f"{s[-1]}x{s[-1]} channels"),
    KindSpec("calibration", "calibration", "(B, C, H, W)", 4, "Calibration",
             reduce=_mean_over_dim1, value_label="mean calibration gate",
             figure="spatial_heatmap", caption_grid=_grid_hw),
    KindSpec("multihead", "multi-head attention", "(B, heads, Nq, Nk)", 4, "Multi-head",
             neutral=_uniform_over(-1), reduce=_heads_received,
             value_label="mean attention received", figure="affinity_figure",
             queried=True, pairwise=True, caption_grid=_grid_heads, tab="affinity",
             axes={"batch": 0, "head": 1, "query": 2, "key": 3},
             labels={"head": "head", "query": "query position", "key": "key position"}),
    KindSpec("directional", "directional gate", "(B, C, H, 1) or (B, C, 1, W)", 4,
             "Directional", reduce=_directional, value_label="mean directional gate",
             figure="spatial_heatmap", caption_grid=_grid_direction, tab="spatial",
             axes={"batch": 0, "channel": 1},
             labels={"channel": "channel"}),
):
    register(_spec)


def get(name) -> KindSpec:
    """The spec of kind ``name`` (a KindSpec passes through); UnknownKindError otherwise."""
    if isinstance(name, KindSpec):
        return name
    try:
        return _KINDS[name]
    except (KeyError, TypeError) as e:
        raise UnknownKindError(f"unknown kind {name!r}; choose from {list(_KINDS)}") from e


def of(rec) -> KindSpec:
    """The spec of a capture record's kind."""
    return get(rec.kind)


def all_kinds() -> tuple[KindSpec, ...]:
    return tuple(_KINDS.values())


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


def spatial_kinds() -> tuple[str, ...]:
    """Kinds with a spatial reduction, in registry order."""
    return tuple(k for k, s in _KINDS.items() if s.spatial)


def pairwise_kinds() -> tuple[str, ...]:
    """The quadratic kinds (affinities) capture may store in a smaller dtype or with capped rows."""
    return tuple(k for k, s in _KINDS.items() if s.pairwise)


def is_spatial(kind_or_rec) -> bool:
    """Whether a kind (a name or a record) has a spatial layout; False for an unknown kind."""
    name = getattr(kind_or_rec, "kind", kind_or_rec)
    spec = _KINDS.get(name)
    return spec is not None and spec.spatial


def to_spatial(rec, reduce: str = "mean") -> torch.Tensor | None:
    """A capture record's (B, h, w) spatial reduction, or None (see :meth:`KindSpec.to_spatial`)."""
    return of(rec).to_spatial(rec.tensor, rec.meta, reduce)


def display_name(kind: str) -> str:
    spec = _KINDS.get(kind)
    return spec.display_name if spec else str(kind)


# ------------------------------------------------------------------------------ blocks
@dataclass(frozen=True)
class BlockSpec:
    """One attention block: ``name`` (as in taps and records), ``display_name``, ``cls`` (the
    class, or a "module:Class" reference), ``slot`` (gate / standalone / conv, see the module
    docstring) and the kinds of its taps."""

    name: str
    display_name: str
    cls: object
    slot: str
    kinds: tuple

    def __post_init__(self):
        if self.slot not in SLOTS:
            raise ValueError(f"block slot must be one of {SLOTS}, not {self.slot!r}")
        for k in self.kinds:
            get(k)

    def block_class(self):
        """The block's class (``cls``: a class, or a "package.module:Class" reference imported
        on use)."""
        return _resolve(self.cls)


_BLOCKS: dict[str, BlockSpec] = {}


def register_block(spec: BlockSpec, replace: bool = False) -> BlockSpec:
    """Add an attention block to the table (then ``get_attn(name)`` and taps of it work)."""
    if spec.name in _BLOCKS and not replace and _BLOCKS[spec.name] is not spec:
        raise ValueError(f"block {spec.name!r} is already registered")
    _BLOCKS[spec.name] = spec
    return spec


def unregister_block(name: str) -> None:
    _BLOCKS.pop(name, None)


def block(name) -> BlockSpec:
    """The spec of block ``name``; UnknownBlockError otherwise."""
    if isinstance(name, BlockSpec):
        return name
    try:
        return _BLOCKS[name]
    except (KeyError, TypeError) as e:
        raise UnknownBlockError(f"unknown attention block {name!r}; choose from "
                                f"{list(_BLOCKS)}") from e


def all_blocks(slot: str | None = None) -> tuple[BlockSpec, ...]:
    return tuple(b for b in _BLOCKS.values() if slot is None or b.slot == slot)


def block_names(slot: str | None = None) -> tuple[str, ...]:
    return tuple(b.name for b in all_blocks(slot))


def block_display_name(name: str) -> str:
    spec = _BLOCKS.get(name)
    return spec.display_name if spec else str(name)


def label(rec) -> str:
    """"CBAM spatial": a record's block and kind in words."""
    return f"{block_display_name(rec.block)} {display_name(rec.kind)}"


# ------------------------------------------------------------------------------ live views
class LiveNames(Sequence):
    """A read-only tuple-like view of names that follows later registrations (for the old
    ``KINDS``/``BLOCKS``/``SPATIAL_KINDS`` constants)."""

    def __init__(self, fn: Callable[[], tuple]):
        self._fn = fn

    def __getitem__(self, i):
        return self._fn()[i]

    def __len__(self):
        return len(self._fn())

    def __contains__(self, x):
        return x in self._fn()

    def __eq__(self, other):
        if isinstance(other, (tuple, list, LiveNames)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None

    def __add__(self, other):
        return tuple(self) + tuple(other)

    def __repr__(self):
        return repr(self._fn())


class LiveNameMap(Mapping):
    """A read-only {name: display name} view (for the old ``BLOCK_NAMES``/``KIND_NAMES``)."""

    def __init__(self, table: dict):
        self._table = table

    def __getitem__(self, k):
        return self._table[k].display_name

    def __iter__(self):
        return iter(self._table)

    def __len__(self):
        return len(self._table)

    def __repr__(self):
        return repr(dict(self))


KINDS = LiveNames(names)
SPATIAL_KINDS = LiveNames(spatial_kinds)
BLOCKS = LiveNames(block_names)
KIND_NAMES = LiveNameMap(_KINDS)
BLOCK_NAMES = LiveNameMap(_BLOCKS)
