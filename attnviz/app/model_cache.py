"""The model cache: a small thread-safe LRU holding each loaded model once, resident on its
device (CUDA when present), and the precision each model's analyses run in.

    entry = MODELS.get("lite_cbam")      # Loaded(model, badge, ...); loads at most once
    with precision(entry): ...           # autocast when measured exact enough for this model

A cached model whose checkpoint appears or changes on disk is reloaded on its next use.

Mixed precision (``ATTNVIZ_AMP``: "auto" by default, "0" off, "1" on for every model and device):
on CUDA an ImageNet-sized model's analysis runs under bfloat16 autocast when that is exact enough
*for this model*, measured once when it is loaded: the analysis of a probe image in float32 and
under autocast must agree (same top-1 class, probabilities within 0.01, every spatial map and the
Grad-CAM map with Spearman rho >= 0.98; :mod:`attnviz.scores.precision`). Lite models and every
score, ablation and sanity pass stay in float32.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import errors as E
from ..models.registry import create_model
from ..scores.precision import TOLERANCE
from .catalogue import BADGE_IMAGENET, BADGE_RANDOM, BADGE_SHAPES, Entry, find_entry
from .user_models import CLASS_NAME_RE, escape

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CACHE_SIZE = int(os.environ.get("ATTNVIZ_MODEL_CACHE", "6"))


# ------------------------------------------------------------------------------ cache
@dataclass
class Loaded:
    """A model in the cache with what the UI says about it."""

    entry: Entry
    model: torch.nn.Module
    badge: str
    note: str = ""
    stamp: tuple | None = None  # (path, mtime) of the weights loaded
    amp: bool = False  # analyses run under autocast (see precision())
    amp_check: dict = field(default_factory=dict)  # the measurement that decided ``amp``

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def trained(self) -> bool:
        return self.badge != BADGE_RANDOM

    @property
    def is_lite(self) -> bool:
        return self.entry.is_lite

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _stamp(path) -> tuple | None:
    """What identifies the weights on disk: the file and its card, with their mtimes."""
    if path is None:
        return None
    out = [str(path)]
    for p in (Path(path), Path(path).with_suffix(".json")):
        try:
            out.append(p.stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


def _load(entry: Entry) -> Loaded:
    """Build ``entry``'s model with the best weights available, on DEVICE, in eval mode."""
    from ..models.weights import load_weights
    note = ""
    if entry.family == "external":
        from ..models.external import load
        return Loaded(entry, load(entry.name).to(DEVICE).eval(), entry.badge, note,
                      _stamp(entry.path))
    if entry.family == "user":
        classes = entry.card.get("classes") or None
        model = create_model(entry.arch, num_classes=len(classes) if classes else None)
        load_weights(model, entry.path)
        model.info.card.update(entry.card)
        if classes:
            model.info.classes = [str(c) if CLASS_NAME_RE.match(str(c)) else escape(c)
                                  for c in classes]  # a card from before names were checked
        model.info.name = entry.name
        badge = entry.badge
    else:
        try:
            model = create_model(entry.arch, pretrained=True)
            badge = BADGE_SHAPES if entry.family == "lite" else BADGE_IMAGENET
        except E.WeightsError as e:  # no checkpoint yet, downloads off, download failed
            model = create_model(entry.arch, pretrained=False)
            badge = BADGE_RANDOM
            note = str(e)
        if not model.info.trained:
            badge = BADGE_RANDOM
    if badge == BADGE_RANDOM and entry.family == "lite" and not model.info.classes:
        from ..data.synthetic import SHAPE_CLASSES
        model.info.classes = list(SHAPE_CLASSES)  # the task's classes; the weights are random
    model = model.to(DEVICE).eval()
    return Loaded(entry, model, badge, note, _stamp(entry.path))


class ModelCache:
    """Thread-safe LRU of loaded models: each model is built once (concurrent first requests
    wait for the same load) and kept resident on its device."""

    def __init__(self, maxsize: int = CACHE_SIZE):
        self.maxsize = max(1, int(maxsize))
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Loaded] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # how many models were built (tests check the cache works)

    def _fresh(self, name: str, entry: Entry) -> Loaded | None:
        hit = self._entries.get(name)
        if hit is None or hit.stamp != _stamp(entry.path) or hit.entry.arch != entry.arch:
            return None
        self._entries.move_to_end(name)
        return hit

    def get(self, name: str) -> Loaded:
        entry = find_entry(name)
        name = entry.name
        with self._lock:
            hit = self._fresh(name, entry)
            if hit is not None:
                return hit
            gate = self._loading.setdefault(name, threading.Lock())
        with gate:
            with self._lock:
                hit = self._fresh(name, entry)
                if hit is not None:
                    return hit
            loaded = _load(entry)
            _decide_amp(loaded)
            with self._lock:
                self.loads += 1
                self._entries[name] = loaded
                self._entries.move_to_end(name)
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
            if DEVICE.type == "cuda":
                torch.cuda.empty_cache()
            return loaded

    def loaded(self) -> list[Loaded]:
        with self._lock:
            return list(self._entries.values())

    def cached(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def drop(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)


MODELS = ModelCache()


# ------------------------------------------------------------------------------ precision
AMP_DTYPE = torch.bfloat16
AMP_TOLERANCE = dict(TOLERANCE)


def amp_setting() -> str:
    v = os.environ.get("ATTNVIZ_AMP", "auto").strip().lower()
    return {"1": "on", "true": "on", "on": "on", "0": "off", "false": "off", "off": "off"}.get(
        v, "auto")


def autocast(amp: bool = True):
    """The one autocast context of the app: AMP_DTYPE on DEVICE when ``amp``, else nothing."""
    return torch.autocast(DEVICE.type, dtype=AMP_DTYPE) if amp else contextlib.nullcontext()


def precision(loaded: Loaded):
    """The context an analysis of ``loaded`` runs in: autocast when measured exact enough."""
    return autocast(loaded.amp)


def amp_agreement(model, image) -> dict:
    """Analyse ``image`` in float32 and under autocast; how closely they agree (the library's
    :func:`attnviz.scores.precision.precision_agreement`)."""
    from ..analysis.inspect import inspect
    from ..scores.precision import precision_agreement
    ref = inspect(model, image)
    with autocast():
        low = inspect(model, image)
    return precision_agreement(ref, low, str(AMP_DTYPE).replace("torch.", ""), AMP_TOLERANCE)


def _decide_amp(loaded: Loaded) -> None:
    """Set ``loaded.amp``: off for lite models and on CPU, on when forced, else measured."""
    mode = amp_setting()
    if mode == "off" or (mode == "auto" and (DEVICE.type != "cuda" or loaded.is_lite)):
        return
    if mode == "on":
        loaded.amp, loaded.amp_check = True, {"forced": True}
        return
    try:
        from ..data.images import load_image
        from .examples import ensure_examples
        probe = load_image(ensure_examples()[0])
        loaded.amp_check = amp_agreement(loaded.model, probe)
        loaded.amp = loaded.amp_check["exact_enough"]
    except Exception as e:  # noqa: BLE001 - float32 is always a safe answer
        loaded.amp, loaded.amp_check = False, {"error": f"{type(e).__name__}: {e}"}
