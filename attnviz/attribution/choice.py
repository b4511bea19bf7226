"""What an attribution explains and where: the class (by index or by name) and the layer (the
model's convolutional stages, by their real module path).

    class_names(model)                  the model's class names (ImageNet's 1000 for ImageNet
                                        models), index order
    resolve_target(model, "tabby cat")  -> 281; also 281, "281", None (the predicted class)
    cam_layers(model)                   ["stem", "layer1", ..., "layer4"]: the stages whose
                                        output is a spatial map, by path, the default
                                        (Grad-CAM) layer among them
    resolve_cam_layer(model, "layer3")  -> "layer3", or a LayerError naming the choices

The layers come from one probe forward per model (cached): every module of the model's
outermost level of stages (descending into a lone feature extractor or a container of stages:
``features``, ``stages``, ``backbone``) whose output is a (B, C, H, W) map larger than 1 x 1 and
that holds a convolution.
The probe's hooks are removed in ``finally``; the train/eval state is not touched."""
from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

from ..errors import LayerError, TargetError
from ..capture.discover import cam_layer_of
from ..models.info import info_of

_LAYERS: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()
MAX_LAYERS = 48


def class_names(model: nn.Module) -> list[str]:
    """The model's class names in index order ([] when it has none)."""
    info = info_of(model)
    return list(info.classes) if info is not None and info.classes else []


def _norm(s: str) -> str:
    return " ".join(str(s).replace("_", " ").lower().split())


def resolve_target(model: nn.Module, target):
    """A class index from an int, a digit string or a class name (case and spacing ignored;
    "281: tabby cat" as the app lists them also works); None stays None (the predicted class)."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return None
    if isinstance(target, bool):
        raise TargetError(f"target {target!r} is not a class index or name")
    names = class_names(model)
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        if float(target) != int(target):
            raise TargetError(f"target {target!r} is not a class index")
        idx = int(target)
    else:
        text = str(target).strip()
        head = text.split(":", 1)[0].strip()
        if head.lstrip("-").isdigit():
            idx = int(head)
        else:
            wanted = _norm(text)
            hits = [i for i, n in enumerate(names) if _norm(n) == wanted]
            if not hits:
                near = [n for n in names if wanted in _norm(n)][:5]
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else \
                    (f"; classes are {names[:8]}{' ...' if len(names) > 8 else ''}" if names
                     else "; this model has no class names, give an index")
                raise TargetError(f"no class named {text!r}{hint}")
            idx = hits[0]
    if idx < 0 or (names and idx >= len(names)):
        raise TargetError(f"target {idx} is not a class of this model"
                          + (f" (0..{len(names) - 1})" if names else ""))
    return idx


def class_choices(model: nn.Module) -> list[str]:
    """"index: name" for every class, as a searchable list shows them."""
    return [f"{i}: {n}" for i, n in enumerate(class_names(model))]


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def _probe_maps(model: nn.Module, names: list[str]) -> set:
    """The names (among ``names``) whose output in one probe forward is a map larger than 1x1."""
    info = info_of(model)
    size = int(getattr(info, "input_size", 224) or 224)
    found, handles = set(), []
    try:
        for name in names:
            def hook(module, inputs, out, name=name):
                if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * \
                        out.shape[-2] > 1:
                    found.add(name)
            handles.append(model.get_submodule(name).register_forward_hook(hook))
        try:
            p = next(model.parameters())
            device, dtype = p.device, p.dtype
        except StopIteration:
            device, dtype = torch.device("cpu"), torch.float32
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return found


# containers whose children are the stages (timm's ``stages``, torchvision's ``features``, ...)
CONTAINERS = ("features", "stages", "blocks", "layers", "backbone", "body", "encoder", "trunk")


def _stage_names(model: nn.Module, prefix: str = "", depth: int = 0) -> list[str]:
    """The conv-holding children of ``model``; a container among them (by name, or the only
    one) is replaced by its own stages."""
    convs = [(n, m) for n, m in model.named_children() if _has_conv(m)]
    out = []
    for n, m in convs:
        if depth < 3 and len(list(m.children())) > 1 and (n in CONTAINERS or len(convs) == 1):
            out += _stage_names(m, f"{prefix}{n}.", depth + 1)
        else:
            out.append(prefix + n)
    return out


def cam_layers(model: nn.Module) -> list[str]:
    """The model's convolutional stages by path (cached per model), with the default layer."""
    with _GUARD:
        hit = _LAYERS.get(model)
    if hit is not None:
        return list(hit)
    names = _stage_names(model)
    try:
        maps = _probe_maps(model, names)
    except (RuntimeError, ValueError, TypeError):
        maps = set(names)  # a model the zero probe cannot run: list what holds a convolution
    out = [n for n in names if n in maps][:MAX_LAYERS]
    default = cam_layer_of(model)
    if default and default not in out:
        out.append(default)
    with _GUARD:
        _LAYERS[model] = tuple(out)
    return out


def resolve_cam_layer(model: nn.Module, layer) -> str | None:
    """``layer`` as a module path of the model (None or "": the default layer)."""
    if layer is None or (isinstance(layer, str) and not layer.strip()):
        return None
    name = str(layer).strip()
    try:
        model.get_submodule(name)
    except AttributeError:
        raise LayerError(f"this model has no layer {name!r}; its convolutional stages are "
                         f"{cam_layers(model)}") from None
    return name
