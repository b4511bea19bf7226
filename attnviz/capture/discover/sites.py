"""What discovery finds, as data: a :class:`Site` per attention tensor, the :class:`Discovery`
listing, the calls it watches, and the adapter registry (see :mod:`.discovery`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ... import kinds as _kinds
from ...errors import CaptureError, LayerError, UnknownKindError

from .forms import NAMES as FAMILY  # noqa: F401,E402  (every call discovery looks at)
from .forms import SIGMOIDS, SOFTMAXES  # noqa: F401,E402  (public names kept)
MULS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"})
PROBE_BATCH = 2
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

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
    "call" (the ``index``-th sigmoid/softmax call while ``hook`` runs), "mha" (``hook`` is an
    ``nn.MultiheadAttention``, asked for its per-head weights) or "declared" (``hook``'s
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
    geometry: str | None = None  # the module whose input grid the recipe reads (default: layer)
    layout: str = "nchw"  # that module's input layout ("nhwc": channels last)

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
ADAPTERS: dict[type, dict[str, str]] = {}
GENERATION = [0]


def register_adapter(cls: type, points: dict[str, str]) -> None:
    """Declare where instances of ``cls`` keep their attention: ``{submodule path relative to
    the instance ("" for the instance itself): kind}``; that module's output is recorded as the
    kind (reshaped to its canonical shape). Discovery inside such instances is then skipped."""
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise CaptureError(f"register_adapter needs an nn.Module class, not {cls!r}")
    _check_kinds(points, f"the adapter for {cls.__name__}")
    ADAPTERS[cls] = dict(points)
    GENERATION[0] += 1


def unregister_adapter(cls: type) -> None:
    if ADAPTERS.pop(cls, None) is not None:
        GENERATION[0] += 1


def _check_kinds(points, where):
    if not isinstance(points, dict):
        raise CaptureError(f"{where} must be a dict {{module path: kind}}, not "
                           f"{type(points).__name__}")
    bad = {p: k for p, k in points.items() if k not in _kinds.names()}
    if bad:
        raise UnknownKindError(f"{where}: unknown kind(s) {bad}; choose from "
                               f"{list(_kinds.names())}")


def join_path(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else (a or b)


def declared_sites(model: nn.Module, extra: dict | None = None) -> list[Site]:
    """Sites for ``extra`` ({module path: kind}) and for registered adapters' instances."""
    out = []
    if ADAPTERS:
        for path, mod in model.named_modules():
            for cls, points in ADAPTERS.items():
                if isinstance(mod, cls):
                    for rel, kind in points.items():
                        out.append(_declared(model, join_path(path, rel), kind, path, "adapter"))
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
