"""Load weights from the formats people have: safetensors, and PyTorch files read with
``weights_only=True`` (never unpickling code). Wrappers (``state_dict``/``model``) and a
``module.`` prefix are unwrapped. A mismatch raises WeightsError listing missing, unexpected and
mis-shaped keys, and leaves the model as it was."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError

MODELS_DIR = Path(os.environ.get("ATTNVIZ_MODELS_DIR", Path(__file__).resolve().parent.parent / "models"))


def read_state_dict(path) -> tuple[dict, dict]:
    """Return (state dict, metadata) from a safetensors or PyTorch file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors" or (len(head) == 8 and not head.startswith(b"PK") and not head.startswith(b"\x80")):
        try:
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
            return sd, dict(meta)
        except Exception as e:  # noqa: BLE001 - reported to the user
            if path.suffix == ".safetensors":
                raise WeightsError(f"{path.name} is not a readable safetensors file ({e}). "
                                   "It may be truncated; download it again.") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0][:300]
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e):
            raise WeightsError(
                f"{path.name} holds pickled Python objects beyond tensors, so attnviz refuses to "
                f"load it (weights_only=True never runs code from a file). Save a plain state dict "
                f"or convert it to safetensors. Detail: {msg}") from None
        raise WeightsError(f"{path.name} is not a readable PyTorch or safetensors file: {msg}") from None
    return unwrap_state_dict(obj), {}


def unwrap_state_dict(obj) -> dict:
    """Find the tensors in a checkpoint: ``state_dict``/``model`` wrappers, ``module.`` prefixes."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in ("state_dict", "model", "model_state", "net", "params"):
                if key in obj and isinstance(obj[key], dict):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, dict):
        raise WeightsError("The checkpoint holds no state dict (a mapping of names to tensors).")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise WeightsError("The checkpoint holds no tensors.")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def check_state_dict(model: nn.Module, sd: dict) -> None:
    """Raise WeightsError unless ``sd`` fits ``model`` exactly (keys and shapes)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8} more)" if len(xs) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} mis-shaped key(s): {few(shapes)}")
        name = getattr(getattr(model, "info", None), "name", type(model).__name__)
        raise WeightsError(f"These weights do not fit {name}: " + "; ".join(parts)
                           + ". Check that the checkpoint was saved from this architecture.")


def load_weights(model: nn.Module, source, strict: bool = True) -> nn.Module:
    """Load ``source`` (a path; URLs are handled by ``attnviz.weights_sources``) into ``model``."""
    sd, meta = read_state_dict(source)
    if strict:
        check_state_dict(model, sd)
    model.load_state_dict(sd, strict=strict)
    info = getattr(model, "info", None)
    if info is not None:
        info.trained = True
        info.weights_source = str(source)
        if meta.get("classes"):
            info.classes = json.loads(meta["classes"])
    return model


def load_pretrained(model: nn.Module, name: str) -> nn.Module:
    """Load the shipped checkpoint ``models/<name>.safetensors`` and its card."""
    path = MODELS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise WeightsError(f"No shipped checkpoint for {name!r} at {path}. Train one with "
                           f"`python -m attnviz.train --model {name} --out models/` or load your "
                           f"own file with attnviz.load_weights(model, path).")
    load_weights(model, path)
    card = path.with_suffix(".json")
    if card.is_file():
        model.info.card.update(json.loads(card.read_text()))
        if model.info.card.get("classes"):
            model.info.classes = list(model.info.card["classes"])
    return model
