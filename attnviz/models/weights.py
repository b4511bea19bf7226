"""Load weights from the formats people have: safetensors, and PyTorch files read with
``weights_only=True`` (never unpickling code), from a local path or an http(s) URL.

Wrappers (``state_dict``/``model``) and a ``module.`` prefix (DataParallel, as in the CBAM
authors' files) are unwrapped. A mismatch raises WeightsError listing missing, unexpected and
mis-shaped keys, and leaves the model as it was: everything is checked before anything is copied.
Class names travel with the weights when the file has them (safetensors metadata ``classes`` as
JSON, or a ``classes`` list next to the state dict); otherwise class indices are kept.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from . import sources
from ..errors import DownloadDisabledError, WeightsError

MODELS_DIR = Path(os.environ.get("ATTNVIZ_MODELS_DIR")
                  or Path(__file__).resolve().parents[2] / "models")
LOCAL_SUFFIXES = (".safetensors", ".pth", ".pt")
_WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net", "params")
_CLASS_KEYS = ("classes", "class_names")


# -- reading -----------------------------------------------------------------------------------
def read_state_dict(path) -> tuple[dict, dict]:
    """Return (state dict, metadata) from a safetensors or PyTorch file.

    Metadata holds ``classes`` (a list of names) when the file carries them."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file not found: {path}")
    kind = _sniff(path)
    if kind == "safetensors":
        sd, meta = _read_safetensors(path)
    elif kind == "text":
        raise WeightsError(f"{path.name} is a text file, not a weights file. Give a .safetensors "
                           "file or a PyTorch checkpoint (.pth/.pt).")
    elif kind == "empty":
        raise WeightsError(f"{path.name} is empty; download it again.")
    else:
        obj = _read_torch(path)
        sd, meta = unwrap_state_dict(obj), _torch_meta(obj)
    return sd, _normalise_meta(meta, path.name)


def _sniff(path: Path) -> str:
    """'safetensors', 'torch' (zip, pickle or anything torch.load may know), 'text' or 'empty'."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    if _looks_like_text(head):
        return "text"
    if head[8:9] == b"{" or path.suffix == ".safetensors":
        return "safetensors"  # 8-byte little-endian header size, then a JSON header
    return "torch"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - reported to the user
        raise WeightsError(f"{path.name} is not a readable safetensors file: it is truncated or "
                           f"damaged; download it again. (Detail: {_first_line(e)})") from None
    return sd, meta


def _read_torch(path: Path):
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - reported to the user
        detail = _first_line(e)
        if _refused_global(str(e)):
            raise WeightsError(
                f"{path.name} holds pickled Python objects beyond tensors, so attnviz refuses to "
                "load it: unpickling them could run code from the file (it is read with "
                "weights_only=True). Save a plain state dict (torch.save(model.state_dict(), f)) "
                f"or convert it to safetensors. (Detail: {detail})") from None
        raise WeightsError(f"{path.name} is not a readable PyTorch or safetensors file: it is "
                           f"truncated, damaged or of another format. (Detail: {detail})") from None


def _refused_global(message: str) -> bool:
    """Did torch's weights-only unpickler refuse a Python object (rather than fail to parse)?"""
    return "GLOBAL" in message or "Unsupported global" in message or "Unsupported class" in message


def _first_line(e: Exception) -> str:
    """The telling part of an exception's message: the line naming a refused global, or else the
    first sentence."""
    text = str(e).strip() or type(e).__name__
    for line in text.splitlines():
        if "GLOBAL" in line or "Unsupported global" in line:
            return line.strip()[:300]
    return text.splitlines()[0].split(". ")[0][:300]


def unwrap_state_dict(obj) -> dict:
    """Find the tensors in a checkpoint: ``state_dict``/``model`` wrappers, ``module.`` prefixes."""
    for _ in range(3):
        if not isinstance(obj, dict) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise WeightsError("The checkpoint holds no state dict (a mapping of names to tensors).")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise WeightsError("The checkpoint holds no tensors.")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _torch_meta(obj) -> dict:
    if not isinstance(obj, dict):
        return {}
    for key in _CLASS_KEYS:
        if isinstance(obj.get(key), (list, tuple)):
            return {"classes": list(obj[key])}
    return {}


def _normalise_meta(meta: dict, name: str) -> dict:
    """Turn a ``classes`` entry (JSON text or a list) into a list of names, or drop it."""
    meta = dict(meta)
    raw = meta.pop("classes", None)
    if raw is None:
        return meta
    try:
        classes = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        classes = None
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        meta["classes"] = list(classes)
    else:
        warnings.warn(f"{name}: ignoring its 'classes' metadata (not a list of names)",
                      stacklevel=3)
    return meta


# -- checking ----------------------------------------------------------------------------------
def check_state_dict(model: nn.Module, sd: dict, strict: bool = True) -> dict:
    """Raise WeightsError unless ``sd`` fits ``model`` (keys and shapes; with ``strict=False``
    only shapes, and at least one key in common). Returns the state dict to load: BN
    ``num_batches_tracked`` counters absent from older files are taken from the model."""
    own = model.state_dict()
    in_common = own.keys() & sd.keys()
    sd = dict(sd)
    for k in own:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = own[k]
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    parts = []
    if strict and missing:
        parts.append(f"missing {len(missing)} key(s): {_few(missing)}")
    if strict and unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} mis-shaped key(s): {_few(shapes)}")
    if not strict and not in_common:
        parts.append("no key in common with the model")
    if parts:
        raise WeightsError(f"These weights do not fit {_model_name(model)}: " + "; ".join(parts)
                           + ". Check that the checkpoint was saved from this architecture "
                           "(and with the same number of classes). The model was left unchanged.")
    return sd


def _few(xs, n=8) -> str:
    return ", ".join(xs[:n]) + (f" ... (+{len(xs) - n} more)" if len(xs) > n else "")


def _model_name(model) -> str:
    return getattr(getattr(model, "info", None), "name", type(model).__name__)


# -- loading -----------------------------------------------------------------------------------
def load_weights(model: nn.Module, source, strict: bool = True,
                 sha256: str | None = None) -> nn.Module:
    """Load ``source`` into ``model`` and return the model.

    source: a path (safetensors or PyTorch file), an http(s) URL (downloaded into the cache,
    ``$ATTNVIZ_CACHE`` or ``~/.cache/attnviz``), or a state dict. sha256: expected digest (or a
    prefix of at least 8 hex digits); a file that does not match is refused (a download is also
    removed). On any error the model is left unchanged.
    """
    sd, meta, label = _resolve(source, sha256)
    sd = check_state_dict(model, sd, strict)
    own_keys = set(model.state_dict())
    model.load_state_dict(sd, strict=strict)
    info = getattr(model, "info", None)
    if info is not None:
        info.trained = own_keys <= set(sd)
        info.weights_source = label
        _set_classes(model, meta.get("classes"), label)
    return model


def _resolve(source, sha256) -> tuple[dict, dict, str]:
    """(state dict, metadata, label) from a path, URL or state dict."""
    if isinstance(source, dict):
        meta = _normalise_meta(_torch_meta(source), "state dict")
        return unwrap_state_dict(source), meta, "state dict"
    if sources.is_url(source):
        path = sources.download(source, sha256)
        label = source
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise WeightsError(f"Weights must be given as a path, an http(s) URL or a state dict, "
                               f"not {type(source).__name__}.")
        path = Path(source).expanduser()
        label = str(path)
        if sha256 is not None and path.is_file():
            sources.verify_sha256(path, sha256)
    sd, meta = read_state_dict(path)
    return sd, meta, label


def _set_classes(model, classes, label) -> None:
    if not classes:
        return
    fc = getattr(model, "fc", None)
    n = getattr(fc, "out_features", None)
    if n is not None and len(classes) != n:
        warnings.warn(f"{label}: {len(classes)} class names for {n} outputs; keeping class indices",
                      stacklevel=3)
        return
    model.info.classes = list(classes)


# -- pretrained --------------------------------------------------------------------------------
def local_weights(name: str) -> Path | None:
    """A weights file for ``name`` in the models folder (``models/<name>.safetensors``, .pth or
    .pt), or the cached download of its known source; None when there is none."""
    for suffix in LOCAL_SUFFIXES:
        path = MODELS_DIR / f"{name}{suffix}"
        if path.is_file():
            return path
    src = sources.get_source(name)
    return None if src is None else sources.cached_source(src)


def load_pretrained(model: nn.Module, name: str) -> nn.Module:
    """Load the trained weights of model ``name``: a file in the models folder (the shipped lite
    checkpoints, or one you put there), else the cached or downloaded public source (ImageNet
    models; downloads need ``ATTNVIZ_ALLOW_DOWNLOAD=1`` or a Space; Hub-hosted ones go through
    huggingface_hub, see ``attnviz.sources``)."""
    src = sources.get_source(name)
    path = local_weights(name)
    if path is None:
        if src is None:
            raise WeightsError(_no_weights_message(model, name))
        if not sources.downloads_allowed():
            raise DownloadDisabledError(_download_disabled_message(name, src))
        path = sources.fetch_source(src)
    from_source = src is not None and path.parent != MODELS_DIR
    load_weights(model, path, sha256=src.sha256 if from_source else None)
    if from_source:
        _apply_source(model, src)
    _apply_card(model, path)
    return model


def _apply_source(model, src: sources.WeightSource) -> None:
    info = getattr(model, "info", None)
    if info is None:
        return
    url = sources.source_url(src)
    info.weights_source = f"{src.label} ({url})"
    info.input_size, info.resize = src.input_size, src.resize
    info.mean, info.std = tuple(src.mean), tuple(src.std)
    info.card.update(source=url, origin=src.origin, tag=src.tag, license=src.license,
                     interpolation=src.interpolation, crop_pct=src.crop_pct)
    if src.classes and not info.classes:
        info.classes = list(src.classes)


def _apply_card(model, path: Path) -> None:
    card = path.with_suffix(".json")
    info = getattr(model, "info", None)
    if info is None or not card.is_file():
        return
    try:
        info.card.update(json.loads(card.read_text()))
    except (OSError, ValueError) as e:
        raise WeightsError(f"The model card {card.name} is not valid JSON ({e}).") from None
    if info.card.get("classes"):
        info.classes = list(info.card["classes"])
    # the input conventions the weights were trained with travel with them
    if isinstance(info.card.get("input_size"), int):
        info.input_size = info.card["input_size"]
    for key in ("mean", "std"):
        value = info.card.get(key)
        if isinstance(value, (list, tuple)) and len(value) == 3:
            setattr(info, key, tuple(float(v) for v in value))


def _no_weights_message(model, name: str) -> str:
    target = MODELS_DIR / f"{name}.safetensors"
    family = getattr(getattr(model, "info", None), "family", None)
    if family == "lite":
        return (f"No shipped checkpoint for {name!r} at {target}. Train one with "
                f"`python -m attnviz.train --model {name} --out models/`, or load your own file "
                "with attnviz.load_weights(model, path).")
    why = sources.NO_DIRECT_SOURCE.get(name, "No public weights are known for it.")
    return (f"No pretrained weights can be fetched for {name!r}: {why} If you have a checkpoint "
            f"in its layout, put it at {target} (or .pth), or load it with "
            "attnviz.load_weights(model, path). create_model(name) without pretrained gives a "
            "model with random weights (model.info.trained is False).")


def _download_disabled_message(name: str, src: sources.WeightSource) -> str:
    target = MODELS_DIR / f"{name}{Path(src.filename).suffix}"
    return (f"Pretrained weights for {name!r} ({src.label}) would be downloaded from "
            f"{sources.source_url(src)}, "
            f"but downloads are off. Either: put that file at {target}; or load a file you have "
            f"with attnviz.load_weights(model, path); or allow downloads with "
            f"{sources.ALLOW_ENV}=1 (files are cached in {sources.cache_dir()}).")
