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
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from . import kinds as _kinds
from .discover_read import read_declared
from .errors import CaptureError, LayerError, UnknownKindError

SIGMOIDS = frozenset({"sigmoid", "sigmoid_", "hardsigmoid", "special_expit", "expit"})
SOFTMAXES = frozenset({"softmax"})
FAMILY = SIGMOIDS | SOFTMAXES
_MULS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"})
PROBE_BATCH = 2
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

# class-name patterns of the published blocks (lower case, "_" removed) -> attnviz block names
_BLOCK_PATTERNS = (
    ("cbam", ("cbam",)),
    ("sk", ("selectivekernel", "skconv", "skattention", "sklayer", "skunit", "skmodule")),
    ("sge", ("spatialgroupenhance", "sgemodule", "sgelayer", "sge")),
    ("nonlocal", ("nonlocal",)),
    ("danet_pam", ("pammodule", "positionattention")),
    ("danet_cam", ("cammodule", "channelattentionmodule")),
    ("self_attn", ("selfattn", "selfattention")),
    ("scconv", ("scconv",)),
    ("se", ("squeezeexcit", "selayer", "semodule", "seblock", "squeezeandexcit")),
)


@dataclass(frozen=True)
class Site:
    """One attention tensor a capture records from a module attnviz did not write.

    name: the record's id (``AttentionMap.tap``), ``<layer>.<what>``; layer: the attention
    module's dotted path; kind; block: a known block name or the module's class name; call: what
    produced the tensor ("nn.Sigmoid", "torch.sigmoid", "F.softmax(dim=-1)", "declared", ...);
    hook: the module hooked at capture time; form: "module" (a hook on a sigmoid/softmax child),
    "call" (the ``index``-th sigmoid/softmax call while ``hook`` runs) or "declared" (``hook``'s
    output); recipe: how the raw tensor is viewed in canonical shape; shape: the raw shape in the
    probe.
    """

    name: str
    layer: str
    kind: str
    block: str
    call: str
    hook: str
    form: str
    index: int = 0
    recipe: tuple = ("id",)
    shape: tuple = ()

    def __repr__(self):
        return f"Site({self.layer!r}, {self.kind}, {self.block}, {self.call})"


@dataclass
class Discovery:
    """What discovery found in a model: ``sites`` in forward order, ``skipped`` candidates
    (layer, call, shape, reason) and the probe's input shape. Iterates over the sites."""

    sites: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    probe_shape: tuple = ()
    error: str | None = None
    cam_layer: str | None = None  # the last module whose output is a 4-D map larger than 1x1

    def __iter__(self):
        return iter(self.sites)

    def __len__(self):
        return len(self.sites)

    def __getitem__(self, i):
        return self.sites[i]

    def table(self) -> list[dict]:
        return [{"layer": s.layer, "kind": s.kind, "block": s.block, "call": s.call,
                 "name": s.name, "shape": list(s.shape)} for s in self.sites]

    def __repr__(self):
        rows = [f"{s.layer or '(model)'}  {s.kind}  {s.block}  {s.call}  {s.shape}"
                for s in self.sites]
        head = f"Discovery: {len(self.sites)} attention tensor(s), {len(self.skipped)} skipped"
        if self.error:
            head += f" (probe failed: {self.error})"
        return "\n  ".join([head] + rows)


# ------------------------------------------------------------------------------ adapters
_ADAPTERS: dict[type, dict[str, str]] = {}
_GENERATION = [0]


def register_adapter(cls: type, points: dict[str, str]) -> None:
    """Declare where instances of ``cls`` keep their attention: ``{submodule path relative to
    the instance ("" for the instance itself): kind}``; that module's output is recorded as the
    kind (reshaped to its canonical shape). Discovery inside such instances is then skipped."""
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise CaptureError(f"register_adapter needs an nn.Module class, not {cls!r}")
    _check_kinds(points, f"the adapter for {cls.__name__}")
    _ADAPTERS[cls] = dict(points)
    _GENERATION[0] += 1


def unregister_adapter(cls: type) -> None:
    if _ADAPTERS.pop(cls, None) is not None:
        _GENERATION[0] += 1


def _check_kinds(points, where):
    if not isinstance(points, dict):
        raise CaptureError(f"{where} must be a dict {{module path: kind}}, not "
                           f"{type(points).__name__}")
    bad = {p: k for p, k in points.items() if k not in _kinds.names()}
    if bad:
        raise UnknownKindError(f"{where}: unknown kind(s) {bad}; choose from "
                               f"{list(_kinds.names())}")


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else (a or b)


def declared_sites(model: nn.Module, extra: dict | None = None) -> list[Site]:
    """Sites for ``extra`` ({module path: kind}) and for registered adapters' instances."""
    out = []
    if _ADAPTERS:
        for path, mod in model.named_modules():
            for cls, points in _ADAPTERS.items():
                if isinstance(mod, cls):
                    for rel, kind in points.items():
                        out.append(_declared(model, _join(path, rel), kind, path, "adapter"))
    if extra:
        _check_kinds(extra, "extra")
        for path, kind in extra.items():
            out.append(_declared(model, str(path), kind, str(path), "declared"))
    return out


def _declared(model, path, kind, layer, how) -> Site:
    try:
        mod = model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:30]
        raise LayerError(f"this model has no module {path!r} to record as {kind!r}; its "
                           f"modules include {names}") from None
    owner = model.get_submodule(layer)
    return Site(name=f"{path}.<{kind}>" if path else f"<{kind}>", layer=layer, kind=kind,
                block=block_name(model, layer, owner), call=f"{how} ({type(mod).__name__} output)",
                hook=path, form="declared")


# ------------------------------------------------------------------------------ block names
def block_name(model: nn.Module, path: str, module: nn.Module) -> str:
    """A known block name for the module at ``path`` (or its parent's class), else its class."""
    names = [type(module).__name__]
    if path:
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        names.append(type(model.get_submodule(parent)).__name__)
    for cls in names:
        key = cls.lower().replace("_", "")
        for block, patterns in _BLOCK_PATTERNS:
            if any(key.startswith(p) or (len(p) > 4 and p in key) for p in patterns):
                return block
    return names[0]


# ------------------------------------------------------------------------------ cache
_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


_KNOWN = ("torch.", "attnviz.blocks", "attnviz.models")


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
    from .capture import _structure
    return tuple(map(id, _structure(model).modules))


def _found(model, example=None, input_size=None, refresh=False) -> Discovery:
    """The cached probe result (probing once per model structure and adapter registry)."""
    with _GUARD:
        lock = _LOCKS.setdefault(model, threading.Lock())
    with lock:
        hit = _CACHE.get(model)
        key = (_GENERATION[0], _module_key(model))
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
    from .discover_probe import Probe
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
