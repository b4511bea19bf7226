"""Models for the app: the catalogue (what the dropdowns offer, with a weights badge) and a small
thread-safe LRU cache holding each loaded model once, resident on its device (CUDA when present).

    entry = MODELS.get("lite_cbam")      # Loaded(model, badge, ...); loads at most once
    choices = model_choices()            # [(label, name)], trained lite models first

Weights: a lite model loads its shipped checkpoint (``models/<name>.safetensors``); until one
exists it runs with random weights and says so. ImageNet architectures load public weights when
they are on disk or downloads are allowed (``ATTNVIZ_ALLOW_DOWNLOAD=1``), else random weights.
Models trained in the app live in ``runs/`` (``$ATTNVIZ_RUNS_DIR``) and are loaded from there.
A cached model whose checkpoint appears or changes on disk is reloaded on its next use.

Mixed precision (``ATTNVIZ_AMP``: "auto" by default, "0" off, "1" on for every model and device):
on CUDA an ImageNet-sized model's analysis runs under bfloat16 autocast when that is exact enough
*for this model*, measured once when it is loaded: the analysis of a probe image in float32 and
under autocast must agree (same top-1 class, probabilities within 0.01, every spatial map and the
Grad-CAM map with Spearman rho >= 0.98). Lite models and every score, ablation and sanity pass
stay in float32.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import errors as E
from ..models.registry import create_model, list_models
from ..models.zoo import LITE, REGISTRY
from .limits import echo

ROOT = Path(__file__).resolve().parents[2]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CACHE_SIZE = int(os.environ.get("ATTNVIZ_MODEL_CACHE", "6"))
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")

BADGE_SHAPES = "trained on shapes"
BADGE_IMAGENET = "ImageNet weights"
BADGE_RANDOM = "random weights"
BADGE_USER = "trained here"


def runs_dir() -> Path:
    return Path(os.environ.get("ATTNVIZ_RUNS_DIR") or ROOT / "runs")


def models_dir() -> Path:
    from ..weights import MODELS_DIR
    return Path(MODELS_DIR)


# ------------------------------------------------------------------------------ catalogue
@dataclass
class Entry:
    """A model the app can offer: ``name`` (what the API takes), ``arch`` (registry name),
    ``family`` (lite, user, imagenet), ``badge`` and the weights file when there is one."""

    name: str
    arch: str
    family: str
    badge: str
    path: Path | None = None
    card: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.family == "user":
            return f"{self.name} · {self.arch}, {self.badge}"
        return f"{self.name} · {self.badge}"

    @property
    def is_lite(self) -> bool:
        return self.family in ("lite", "user")

    @property
    def trained(self) -> bool:
        return self.badge != BADGE_RANDOM


def _lite_entry(name: str) -> Entry:
    from ..weights import local_weights
    path = local_weights(name)
    return Entry(name, name, "lite", BADGE_SHAPES if path else BADGE_RANDOM, path)


def _imagenet_entry(name: str) -> Entry:
    from .. import sources
    from ..weights import local_weights
    path = local_weights(name)
    src = sources.get_source(name)
    ok = path is not None or (src is not None and sources.downloads_allowed())
    return Entry(name, name, "imagenet", BADGE_IMAGENET if ok else BADGE_RANDOM, path)


def user_entries() -> list[Entry]:
    """Models trained in the app (``runs/<name>.safetensors`` with its card) that the current
    request may see (see :mod:`.user_models`)."""
    from .user_models import visible
    out = []
    d = runs_dir()
    if not d.is_dir():
        return out
    for ckpt in sorted(d.glob("*.safetensors")):
        card_path = ckpt.with_suffix(".json")
        try:
            card = json.loads(card_path.read_text())
        except (OSError, ValueError):
            continue
        arch = card.get("architecture")
        name = ckpt.stem
        if arch not in LITE or name in REGISTRY or not visible(card):
            continue
        data = str(card.get("training", {}).get("data", ""))
        badge = BADGE_USER + (", your images" if data.startswith("user") else ", shapes")
        out.append(Entry(name, arch, "user", badge, ckpt, card))
    return out


def external_entries() -> list[Entry]:
    """Models given with ``app.py --model`` or ``build_demo(models=...)`` (see external.py)."""
    from ..external import FAMILY, externals
    return [Entry(x.name, x.card.get("architecture", "custom"), FAMILY, x.badge, x.weights,
                  dict(x.card)) for x in externals()]


def catalogue() -> list[Entry]:
    """Every model, in dropdown order: your own models (``--model``), trained lite models,
    models trained here, lite models still without a checkpoint, then the ImageNet
    architectures."""
    lite = [_lite_entry(n) for n in list_models("lite")]
    imagenet = [_imagenet_entry(n) for n in list_models("imagenet")]
    return (external_entries() + [e for e in lite if e.trained] + user_entries() + [e for e in lite if not e.trained]
            + sorted(imagenet, key=lambda e: not e.trained))


def find_entry(name) -> Entry:
    """The catalogue entry for ``name``; UnknownModelError with the choices otherwise."""
    if not isinstance(name, str):
        raise E.UnknownModelError(f"Unknown model {echo(name)}: give the model by its name, "
                                  "such as 'lite_cbam' (see /models for the list).")
    if not name.strip():
        raise E.UnknownModelError("Choose a model: give a model name such as 'lite_cbam'.")
    name = name.strip()
    # a dropdown label ("lite_cbam · trained on shapes") is accepted as well as the name
    name = name.split(" · ")[0].strip()
    if name in LITE:
        return _lite_entry(name)
    if name in REGISTRY:
        return _imagenet_entry(name)
    for e in external_entries():
        if e.name == name:
            return e
    for e in user_entries():
        if e.name == name:
            return e
    import difflib
    names = [e.name for e in catalogue()]
    close = difflib.get_close_matches(name, names, n=3) if len(name) <= 100 else []
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise E.UnknownModelError(f"Unknown model {echo(name)}.{hint} Available: "
                              f"{', '.join(names)}.")


def model_choices(family: str | None = None) -> list[tuple[str, str]]:
    """[(label, name)] for a dropdown; ``family="lite"`` keeps lite and trained-here models."""
    es = catalogue()
    if family == "lite":
        es = [e for e in es if e.is_lite]
    return [(e.label, e.name) for e in es]


def default_model() -> str:
    """Your first own model (``--model``), else a trained lite model with spatial attention
    maps, else lite_cbam."""
    cat = catalogue()
    if cat and cat[0].family == "external":
        return cat[0].name
    for pref in ("lite_cbam", "lite_nonlocal", "lite_danet", "lite_sge"):
        for e in cat:
            if e.name == pref and e.trained:
                return pref
    for e in cat:
        if e.family == "lite" and e.trained and e.name != "lite_resnet":
            return e.name
    return "lite_cbam"  # random weights until its checkpoint lands; lite_resnet has no attention


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
    from ..weights import load_weights
    note = ""
    if entry.family == "external":
        from ..external import load
        return Loaded(entry, load(entry.name).to(DEVICE).eval(), entry.badge, note,
                      _stamp(entry.path))
    if entry.family == "user":
        classes = entry.card.get("classes") or None
        model = create_model(entry.arch, num_classes=len(classes) if classes else None)
        load_weights(model, entry.path)
        model.info.card.update(entry.card)
        if classes:
            from .user_models import CLASS_NAME_RE, escape
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
        from ..datasets import SHAPE_CLASSES
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
AMP_TOLERANCE = {"prob": 0.01, "spearman": 0.98}


def amp_setting() -> str:
    v = os.environ.get("ATTNVIZ_AMP", "auto").strip().lower()
    return {"1": "on", "true": "on", "on": "on", "0": "off", "false": "off", "off": "off"}.get(
        v, "auto")


def _autocast():
    return torch.autocast(DEVICE.type, dtype=AMP_DTYPE)


def precision(loaded: Loaded):
    """The context an analysis of ``loaded`` runs in: autocast when measured exact enough."""
    return _autocast() if loaded.amp else contextlib.nullcontext()


def amp_agreement(model, image) -> dict:
    """Analyse ``image`` in float32 and under autocast; how closely they agree."""
    from ..inspect import inspect
    from ..maps import to_spatial
    from ..metrics import rank_correlation
    ref = inspect(model, image)
    with _autocast():
        low = inspect(model, image)
    rhos = []
    for a, b in zip(ref.maps, low.maps):
        sa, sb = to_spatial(a), to_spatial(b)
        if sa is not None and float(sa.float().std()) > 1e-6:
            rhos.append(float(rank_correlation(sa[0].float().cpu().numpy(),
                                               sb[0].float().cpu().numpy())))
    ga, gb = (x.attributions["gradcam"].map for x in (ref, low))
    if float(np.std(ga)) > 1e-6:
        rhos.append(float(rank_correlation(ga, gb)))
    rhos = [r for r in rhos if r == r]  # NaN: a map constant in one precision
    out = {"dtype": str(AMP_DTYPE).replace("torch.", ""),
           "same_top1": int(np.argmax(ref.probs)) == int(np.argmax(low.probs)),
           "max_prob_diff": float(np.abs(ref.probs - low.probs).max()),
           "min_spearman": min(rhos) if rhos else 1.0}
    out["exact_enough"] = bool(out["same_top1"]
                               and out["max_prob_diff"] <= AMP_TOLERANCE["prob"]
                               and out["min_spearman"] >= AMP_TOLERANCE["spearman"])
    return out


def _decide_amp(loaded: Loaded) -> None:
    """Set ``loaded.amp``: off for lite models and on CPU, on when forced, else measured."""
    mode = amp_setting()
    if mode == "off" or (mode == "auto" and (DEVICE.type != "cuda" or loaded.is_lite)):
        return
    if mode == "on":
        loaded.amp, loaded.amp_check = True, {"forced": True}
        return
    try:
        from .examples import ensure_examples
        from ..preprocess import load_image
        probe = load_image(ensure_examples()[0])
        loaded.amp_check = amp_agreement(loaded.model, probe)
        loaded.amp = loaded.amp_check["exact_enough"]
    except Exception as e:  # noqa: BLE001 - float32 is always a safe answer
        loaded.amp, loaded.amp_check = False, {"error": f"{type(e).__name__}: {e}"}


# ------------------------------------------------------------------------------ parameters
_PARAMS: dict[str, int] = {}


def parameter_count(arch: str, num_classes: int | None = None) -> int:
    """Parameters of an architecture, counted on the meta device (no memory, no weights)."""
    key = f"{arch}:{num_classes}"
    if key not in _PARAMS:
        with torch.device("meta"):
            m = create_model(arch) if num_classes is None else create_model(arch, num_classes)
        _PARAMS[key] = int(sum(p.numel() for p in m.parameters()))
    return _PARAMS[key]


# ------------------------------------------------------------------------------ session
@dataclass
class Session:
    """The last analysis of one browser session (kept in ``gr.State``): what export, the
    affinity explorer, re-scaling and the score table need."""

    analysis: object  # attnviz.inspect.Analysis (records and raw attributions on the CPU)
    model_name: str
    method: str  # the attribution the user asked for
    display: np.ndarray  # the image as sent to the browser (fit to 512)
    image_name: str = "image"
    mask: np.ndarray | None = None  # object mask when the image is a shipped example
    example: str | None = None
    query: tuple | None = None  # (x, y) in original-image pixels
    scores: dict = field(default_factory=dict)
    badge: str = ""
    version: int = 0

    @property
    def scale(self) -> float:
        """Display pixels per original pixel."""
        return self.display.shape[1] / self.analysis.image.shape[1]
