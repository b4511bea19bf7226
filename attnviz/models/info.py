"""What attnviz needs to know to feed a model and name its classes, for any ``nn.Module``.

attnviz's own models carry ``model.info`` (a :class:`ModelInfo`). Any other module that maps a
(B, 3, H, W) batch to logits works too: :func:`info_of` gives it defaults (ImageNet mean/std, a
224 x 224 input, class indices as names, Grad-CAM on the last layer whose output still has a
spatial grid larger than 1 x 1, found in the discovery probe), and :func:`describe` overrides any
of them:

    attnviz.describe(model, input_size=256, classes=["cat", "dog"], cam_layer="stages.3")
    attnviz.inspect(model, "cat.jpg")            # or inspect(model, img, info=ModelInfo(...))

``info.card["defaults"]`` lists what was assumed, and analyses say so.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import functools
import weakref
from pathlib import Path

from torch import nn

from ..errors import OptionError
# ImageNet's normalisation: the one place these numbers are written
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_SIZE = 224


@dataclass
class ModelInfo:
    """What travels with a model: its name, input conventions, classes and where weights came from."""

    name: str
    family: str  # "lite" or "imagenet"
    input_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    resize: int | None = None  # short side before a centre crop (ImageNet: 256)
    classes: list | None = None
    trained: bool = False  # False: random weights
    weights_source: str = "random initialisation"
    cam_layer: str = "layer4"
    card: dict = field(default_factory=dict)

_INFOS: "weakref.WeakKeyDictionary[nn.Module, ModelInfo]" = weakref.WeakKeyDictionary()


class ModelInfoError(OptionError):
    """A description of a model that cannot be used (a bad size, mean/std, classes, layer)."""


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order ("tench", ..., 281 "tabby cat", ...,
    "toilet paper"; the readable names of anishathalye/imagenet-simple-labels, MIT)."""
    path = Path(__file__).parent / "imagenet_classes.txt"
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                  if line.strip())
    if len(names) != 1000:  # pragma: no cover - a broken install
        raise RuntimeError(f"{path} holds {len(names)} names, not 1000")
    return names


def _default(model: nn.Module) -> ModelInfo:
    info = ModelInfo(name=type(model).__name__, family="custom", input_size=DEFAULT_SIZE,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD, trained=True,
                     weights_source="the model as given", cam_layer=None)
    info.card["defaults"] = ["ImageNet mean/std", f"{DEFAULT_SIZE} px input",
                             "class indices as names", "Grad-CAM layer found automatically"]
    return info


def info_of(model) -> ModelInfo:
    """``model.info``, or the defaults (or what :func:`describe` set) for any other module."""
    info = getattr(model, "info", None)
    if info is not None and hasattr(info, "input_size"):
        return info
    got = _INFOS.get(model) if isinstance(model, nn.Module) else None
    if got is None:
        got = _default(model)
        if isinstance(model, nn.Module):
            _INFOS[model] = got
    return got


def describe(model: nn.Module, info: ModelInfo | None = None, *, input_size: int | None = None,
             mean=None, std=None, classes=None, cam_layer: str | None = None,
             name: str | None = None) -> ModelInfo:
    """Say how to feed ``model`` (input size, normalisation), name its classes and its Grad-CAM
    layer. Returns the :class:`ModelInfo` analyses will use. Raises ModelInfoError for values
    that cannot work (checked here, not at the first analysis)."""
    base = info if info is not None else info_of(model)
    if not hasattr(base, "input_size"):
        raise ModelInfoError(f"info must be an attnviz.ModelInfo, not {type(base).__name__}")
    new = dataclasses.replace(base, card=dict(base.card))
    defaults = list(new.card.get("defaults", [])) if info is None else []
    if input_size is not None:
        try:
            size = int(input_size)
        except (TypeError, ValueError):
            raise ModelInfoError(f"input_size must be a number of pixels, not {input_size!r}") \
                from None
        if not 8 <= size <= 4096:
            raise ModelInfoError(f"input_size {size} is outside 8..4096 pixels")
        new.input_size = size
        defaults = [d for d in defaults if "px input" not in d]
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            v = _three(key, value)
            if key == "std" and min(v) <= 0:
                raise ModelInfoError(f"std must be positive, not {v}")
            setattr(new, key, v)
            defaults = [d for d in defaults if "mean/std" not in d]
    if classes is not None:
        names = [str(c) for c in classes]
        if not names:
            raise ModelInfoError("classes is empty; give one name per output of the model")
        new.classes = names
        defaults = [d for d in defaults if "class" not in d]
    if cam_layer is not None:
        try:
            model.get_submodule(str(cam_layer))
        except AttributeError:
            raise ModelInfoError(f"the model has no layer {cam_layer!r} for Grad-CAM") from None
        new.cam_layer = str(cam_layer)
        defaults = [d for d in defaults if "Grad-CAM" not in d]
    if name is not None:
        new.name = str(name)
    new.card["defaults"] = defaults
    if getattr(model, "info", None) is not None:
        model.info = new
    else:
        _INFOS[model] = new
    return new


def _three(key, value) -> tuple:
    try:
        v = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise ModelInfoError(f"{key} must be three numbers (R, G, B), not {value!r}") from None
    if len(v) != 3:
        raise ModelInfoError(f"{key} must be three numbers (R, G, B), not {len(v)}")
    return v


def defaults_note(model) -> str | None:
    """A sentence saying what was assumed about a model attnviz was not told about, or None."""
    used = info_of(model).card.get("defaults") or []
    return f"{type(model).__name__} carries no ModelInfo; assumed: {', '.join(used)}" \
        if used else None
