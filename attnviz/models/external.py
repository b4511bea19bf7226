"""Your own models in the app: ``python app.py --model ...`` or ``build_demo(models={...})``.

    python app.py --model my_net.py                       # create_model() or `model` in the file
    python app.py --model mine=my_net.py:build --weights mine.safetensors --labels classes.txt \\
                  --input-size 256 --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25
    python app.py --model resnet_se=mypackage.models:se_resnet50      # an importable callable

``--model`` is repeatable; ``--weights``, ``--labels``, ``--input-size``, ``--mean`` and ``--std``
apply to the ``--model`` before them. A file without ``:CALLABLE`` must define ``create_model()``
(a function returning the ``nn.Module``) or ``model`` (a module, or a function returning one).
Weights load through :func:`attnviz.load_weights` (safetensors, or a ``weights_only`` PyTorch
file; never unpickled). Labels: a text file with one class name per line, or a JSON list.

Each model is built (and its weights loaded) once at start-up, so a file that fails to import, a
callable that returns no module or weights that do not fit stop the app with a message naming
the file and the error. The models then appear in every tab beside the shipped ones, with a
badge saying where they came from; attention is found by :func:`attnviz.discover`. (This module
imports no Gradio, so a bad ``--model`` stops the app before the UI is built.)
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from .. import errors as E
from .info import describe
from .weights import load_weights
from .zoo import REGISTRY

FAMILY = "external"
FACTORY_NAMES = ("create_model", "model")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")  # as the app's model names


class ExternalModelError(E.AttnvizError):
    """A model given on the command line or to build_demo(models=...) cannot be served."""


@dataclass
class External:
    """A model from outside the zoo: how to build it and what to tell attnviz about it."""

    name: str
    factory: Callable[[], nn.Module]
    source: str  # where it came from, for the badge and the card
    weights: Path | None = None
    classes: list | None = None
    input_size: int | None = None
    mean: tuple | None = None
    std: tuple | None = None
    card: dict = field(default_factory=dict)
    built: nn.Module | None = None

    @property
    def badge(self) -> str:
        w = f", weights {self.weights.name}" if self.weights else ""
        return f"your model ({self.source}{w})"


_EXTERNAL: dict[str, External] = {}
_LOCK = threading.Lock()


def externals() -> list[External]:
    with _LOCK:
        return list(_EXTERNAL.values())


def get(name: str) -> External | None:
    with _LOCK:
        return _EXTERNAL.get(name)


# ------------------------------------------------------------------------------ building
def _import_file(path: Path, name: str):
    if not path.is_file():
        raise ExternalModelError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"attnviz_user_model_{name}", path)
    if spec is None or spec.loader is None:
        raise ExternalModelError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(spec.name, None)
        raise ExternalModelError(f"{path} failed to import: {type(e).__name__}: {e}") from e
    return module


def resolve(target: str, name: str) -> tuple[Callable[[], nn.Module], str]:
    """(factory, source label) for ``FILE.py[:CALLABLE]`` or ``package.module:callable``."""
    where, _, attr = target.partition(":")
    if where.endswith(".py") or Path(where).is_file():
        path = Path(where).expanduser()
        module, source = _import_file(path, name), path.name
    else:
        if not attr:
            raise ExternalModelError(f"{target}: give a Python file (my_net.py) or "
                                     "package.module:callable")
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise ExternalModelError(f"{where} failed to import: {type(e).__name__}: {e}") \
                from e
        source = f"{where}:{attr}"
    names = [attr] if attr else list(FACTORY_NAMES)
    for n in names:
        obj = getattr(module, n, None)
        if obj is not None:
            if isinstance(obj, nn.Module):
                return (lambda obj=obj: obj), source + ("" if attr else f":{n}")
            if callable(obj):
                return obj, source + ("" if attr else f":{n}")
            raise ExternalModelError(f"{source}: {n} is a {type(obj).__name__}, not a "
                                     "function returning an nn.Module")
    want = attr or " or ".join(FACTORY_NAMES)
    raise ExternalModelError(f"{source} defines no {want}; define create_model() returning "
                             "your nn.Module, or name the callable: FILE.py:CALLABLE")


def read_labels(path) -> list[str]:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ExternalModelError(f"labels {p}: {e.strerror or e}") from e
    if p.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except ValueError as e:
            raise ExternalModelError(f"labels {p}: not valid JSON ({e})") from e
        if isinstance(names, dict):  # {"0": "cat", ...} or {"0": ["n0212", "cat"]}
            names = [names[k] for k in sorted(names, key=lambda k: int(k))]
            names = [n[-1] if isinstance(n, (list, tuple)) else n for n in names]
        if not isinstance(names, list):
            raise ExternalModelError(f"labels {p}: expected a list of class names")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ExternalModelError(f"labels {p}: no class names in it")
    return [str(n) for n in names]


def build(ext: External) -> nn.Module:
    """Build the model, load its weights and describe it to attnviz (``model.info`` is set, so
    the app's cards and badges read it like a zoo model's)."""
    try:
        model = ext.factory()
    except Exception as e:
        raise ExternalModelError(f"{ext.source}: building the model failed: "
                                 f"{type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ExternalModelError(f"{ext.source} returned a {type(model).__name__}, not an "
                                 "nn.Module")
    if ext.weights is not None:
        try:
            load_weights(model, ext.weights)
        except E.AttnvizError as e:
            raise ExternalModelError(f"{ext.source}: weights {ext.weights}: {e}") from e
    try:
        info = describe(model, input_size=ext.input_size, mean=ext.mean, std=ext.std,
                        classes=ext.classes, name=ext.name)
    except E.AttnvizError as e:
        raise ExternalModelError(f"{ext.source}: {e}") from e
    info.family = FAMILY
    info.trained = True
    info.weights_source = str(ext.weights) if ext.weights else f"as {ext.source} builds it"
    info.card.update({"source": ext.source, **ext.card})
    model.info = info
    return model.eval()


def register(name: str, model_or_factory, source: str | None = None, **opts) -> External:
    """Add a model to the app's catalogue (built now, so errors surface at start-up)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ExternalModelError(f"model name {name!r}: use letters, digits, '_' or '-' "
                                 "(up to 40, starting with a letter)")
    if name in REGISTRY:
        raise ExternalModelError(f"model name {name!r} is taken by a shipped model; choose "
                                 "another (NAME=FILE.py)")
    if isinstance(model_or_factory, nn.Module):
        factory, src = (lambda m=model_or_factory: m), source or type(model_or_factory).__name__
    elif callable(model_or_factory):
        factory, src = model_or_factory, source or getattr(model_or_factory, "__name__", name)
    else:
        raise ExternalModelError(f"model {name!r}: give an nn.Module or a function returning "
                                 f"one, not a {type(model_or_factory).__name__}")
    ext = External(name, factory, src, **opts)
    model = build(ext)
    ext.card.update({"parameters": sum(p.numel() for p in model.parameters()),
                     "input_size": model.info.input_size, "architecture": type(model).__name__,
                     "description": f"your model, from {src}"})
    model.info.card.update(ext.card)
    ext.built = model
    with _LOCK:
        _EXTERNAL[name] = ext
    return ext


def load(name: str) -> nn.Module:
    """The model for the cache: the one built at start-up (rebuilt if it was evicted)."""
    ext = get(name)
    if ext is None:
        raise E.UnknownModelError(f"Unknown model {name!r}")
    model = ext.built if ext.built is not None else build(ext)
    ext.built = None
    return model


# ------------------------------------------------------------------------------ command line
USAGE = ("--model [NAME=]FILE.py[:CALLABLE] | NAME=package.module:callable  [--weights PATH] "
         "[--labels FILE] [--input-size N] [--mean R,G,B] [--std R,G,B]  (repeatable)")
_OPTS = {"--weights", "--labels", "--input-size", "--mean", "--std"}


def _triple(opt, v):
    try:
        t = tuple(float(x) for x in str(v).split(","))
    except ValueError:
        raise ExternalModelError(f"{opt} {v}: give three numbers, R,G,B") from None
    if len(t) != 3:
        raise ExternalModelError(f"{opt} {v}: give three numbers, R,G,B")
    return t


def parse_args(argv: list[str]) -> list[dict]:
    """[{name, target, weights, labels, input_size, mean, std}] from the command line; other
    arguments are refused with the usage."""
    specs, i = [], 0
    while i < len(argv):
        arg = argv[i]
        opt, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if opt not in _OPTS | {"--model"}:
            raise ExternalModelError(f"unknown argument {arg!r}; usage: app.py {USAGE}")
        if eq:
            value = inline
        else:
            if i + 1 >= len(argv):
                raise ExternalModelError(f"{opt} needs a value; usage: app.py {USAGE}")
            value = argv[i + 1]
            i += 1
        i += 1
        if opt == "--model":
            name, sep, target = value.partition("=")
            if not sep:
                target = value
                name = Path(value.partition(":")[0]).stem if value.partition(":")[0].endswith(
                    ".py") else value.rpartition(":")[2]
            specs.append({"name": name, "target": target})
            continue
        if not specs:
            raise ExternalModelError(f"{opt} must follow the --model it belongs to")
        key = opt[2:].replace("-", "_")
        if key in specs[-1]:
            raise ExternalModelError(f"{opt} given twice for --model {specs[-1]['target']}")
        if key == "input_size":
            try:
                value = int(value)
            except ValueError:
                raise ExternalModelError(f"--input-size {value}: give a number of pixels") \
                    from None
        elif key in ("mean", "std"):
            value = _triple(opt, value)
        elif key == "labels":
            value = read_labels(value)
            key = "classes"
        elif key == "weights":
            value = Path(value).expanduser()
            if not value.is_file():
                raise ExternalModelError(f"--weights {value}: no such file")
        specs[-1][key] = value
    return specs


def register_args(argv: list[str]) -> list[External]:
    """Parse and register every ``--model``; raises ExternalModelError naming what failed."""
    out = []
    for spec in parse_args(argv):
        spec = dict(spec)
        name, target = spec.pop("name"), spec.pop("target")
        factory, source = resolve(target, name)
        out.append(register(name, factory, source=source, **spec))
    return out


def register_models(models: dict | None) -> None:
    """``build_demo(models={"name": model_or_factory})``."""
    for name, m in (models or {}).items():
        register(name, m)
