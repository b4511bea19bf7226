"""Models for the app: the catalogue (what the dropdowns offer, with a weights badge) and a small
thread-safe LRU cache holding each loaded model once, resident on its device (CUDA when present).

    entry = MODELS.get("lite_cbam")      # Loaded(model, badge, ...); loads at most once
    choices = model_choices()            # [(label, name)], trained lite models first

Weights: a lite model loads its shipped checkpoint (``models/<name>.safetensors``); until one
exists it runs with random weights and says so. ImageNet architectures load public weights when
they are on disk or downloads are allowed (``ATTNVIZ_ALLOW_DOWNLOAD=1``, or on a Space), else random weights.
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
import time
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


def autocast(amp: bool = True):
    """The one autocast context of the app: AMP_DTYPE on DEVICE when ``amp``, else nothing."""
    return torch.autocast(DEVICE.type, dtype=AMP_DTYPE) if amp else contextlib.nullcontext()


def precision(loaded: Loaded):
    """The context an analysis of ``loaded`` runs in: autocast when measured exact enough."""
    return autocast(loaded.amp)


def amp_agreement(model, image) -> dict:
    """Analyse ``image`` in float32 and under autocast; how closely they agree."""
    from ..inspect import inspect
    from ..maps import to_spatial
    from ..metrics import rank_correlation
    ref = inspect(model, image)
    with autocast():
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
    affinity explorer, re-scaling and the score table need.

    Each new Session is registered in :data:`SESSIONS`, which bounds what all sessions hold
    together (each counted with its image, maps and attributions): when the total passes
    ATTNVIZ_SESSION_MEMORY_MB the least recently used sessions lose their analysis; reading
    ``analysis`` then raises an AttnvizError saying to analyse again. A session's analysis is
    also freed when its browser leaves and when its ``gr.State`` expires."""

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

    def __post_init__(self):
        SESSIONS.add(self)

    def __getattribute__(self, name):
        if name == "analysis":
            SESSIONS.touch(self)
        elif name == "display":  # released with the analysis: say why, as the analysis does
            a = object.__getattribute__(self, "analysis")
            if isinstance(a, _Dropped):
                return a.display
        return object.__getattribute__(self, name)

    @property
    def scale(self) -> float:
        """Display pixels per original pixel."""
        return self.display.shape[1] / self.analysis.image.shape[1]

    def nbytes(self) -> int:
        """Bytes held by the analysis (image, maps, attributions) and the display copy."""
        a = object.__getattribute__(self, "analysis")
        n = self.display.nbytes + (self.mask.nbytes if self.mask is not None else 0)
        if isinstance(a, _Dropped):
            return n
        n += getattr(getattr(a, "image", None), "nbytes", 0)
        for r in getattr(a, "maps", ()):
            n += r.tensor.numel() * r.tensor.element_size()
        for att in getattr(a, "attributions", {}).values():
            n += att.raw.numel() * att.raw.element_size()
            n += getattr(att.map, "nbytes", 0)
        return int(n)


class _Dropped:
    """Stands in for a session's freed analysis: any use says what happened and what to do."""

    def __init__(self, why: str):
        self._why = why

    def __getattr__(self, name):
        raise E.AttnvizError(self._why)


DROPPED_LRU = ("This analysis was dropped to free server memory (the server keeps "
               "{mb:.0f} MB of analyses for all sessions together and drops the least recently "
               "used first). Press Analyse to run it again.")
DROPPED_LEFT = "This analysis was freed when its page was closed. Press Analyse to run it again."
DROPPED_IDLE = ("This analysis was freed after {s:.0f} s unused (a session without a page keeps "
                "its analysis that long). Run the analysis again.")


def _drop(sess, why: str) -> None:
    """Replace a session's analysis and display image by what says why they went."""
    object.__setattr__(sess, "analysis", _Dropped(why))
    object.__setattr__(sess, "display", np.zeros((1, 1, 3), np.uint8))


# sessions that opened the page (their load event ran): the others are API sessions
PAGES: OrderedDict[str, None] = OrderedDict()
PAGES_MAX = 10_000
_PAGES_LOCK = threading.Lock()


def mark_page(request=None) -> None:
    """Record the current request's session as a page's (called by the page's load event)."""
    sid = getattr(request, "session_hash", None) or request_session()
    if not sid:
        return
    with _PAGES_LOCK:
        PAGES[sid] = None
        PAGES.move_to_end(sid)
        while len(PAGES) > PAGES_MAX:
            PAGES.popitem(last=False)


def request_session() -> str | None:
    """The current Gradio request's session id, or None outside a request."""
    try:
        from gradio.context import LocalContext
        req = LocalContext.request.get(None)
    except Exception:  # noqa: BLE001 - outside Gradio
        return None
    return getattr(req, "session_hash", None) if req is not None else None


class SessionStore:
    """Every session's current analysis, least recently used first, within ``max_mb`` in all.

    One entry per browser / API session (a new analysis replaces the session's previous one);
    adding one evicts the least recently used others until the total fits (the newest is kept
    even alone over the limit)."""

    def __init__(self, max_mb: float, api_idle_seconds: float = float("inf")):
        self.max_bytes = int(max_mb * 2**20)
        self.api_idle_seconds = api_idle_seconds
        self._lock = threading.Lock()
        self._entries: OrderedDict[object, tuple[Session, int]] = OrderedDict()
        self._used: dict[object, float] = {}
        self.evicted = 0
        self.freed = 0
        self.idle = 0

    def _sweep_idle(self) -> None:
        """(Under the lock.) Drop the analyses of sessions without a page idle too long."""
        now = time.time()
        for key in [k for k, t in self._used.items()
                    if now - t > self.api_idle_seconds and k not in PAGES]:
            sess, _ = self._entries.pop(key)
            del self._used[key]
            self.idle += 1
            _drop(sess, DROPPED_IDLE.format(s=self.api_idle_seconds))

    def _key(self, sess) -> object:
        return getattr(sess, "_owner", None) or id(sess)

    def add(self, sess: Session) -> None:
        object.__setattr__(sess, "_owner", request_session())
        size = sess.nbytes()
        with self._lock:
            key = self._key(sess)
            self._entries.pop(key, None)  # the session's previous analysis: gr.State drops it
            self._entries[key] = (sess, size)
            self._used[key] = time.time()
            self._sweep_idle()
            total = sum(n for _, n in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                old_key, (old, n) = self._entries.popitem(last=False)
                self._used.pop(old_key, None)
                total -= n
                self.evicted += 1
                _drop(old, DROPPED_LRU.format(mb=self.max_bytes / 2**20))

    def touch(self, sess) -> None:
        key = self._key(sess)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is sess:
                self._entries.move_to_end(key)
                self._used[key] = time.time()

    def resize(self, sess) -> None:
        """Re-count a session whose analysis grew (a slow attribution added)."""
        with self._lock:
            key = self._key(sess)
            if key in self._entries and self._entries[key][0] is sess:
                self._entries[key] = (sess, sess.nbytes())

    def free(self, sess=None, owner: str | None = None) -> None:
        """Free one session's analysis (its gr.State expired) or a browser session's (it left)."""
        with self._lock:
            if sess is not None:
                key = self._key(sess)
                hit = self._entries.get(key)
                if hit is None or hit[0] is not sess:
                    return
            else:
                key = owner
            hit = self._entries.pop(key, None)
            self._used.pop(key, None)
            if hit is not None:
                self.freed += 1
                _drop(hit[0], DROPPED_LEFT)

    def stats(self) -> dict:
        with self._lock:
            self._sweep_idle()
            total = sum(n for _, n in self._entries.values())
            return {"sessions": len(self._entries), "mb": round(total / 2**20, 1),
                    "max_mb": round(self.max_bytes / 2**20, 1), "evicted": self.evicted,
                    "freed": self.freed, "idle_freed": self.idle}


def _session_memory_mb() -> float:
    from .limits import SESSION_MEMORY_MB
    return SESSION_MEMORY_MB


def _api_idle_seconds() -> float:
    from .limits import API_SESSION_IDLE_SECONDS
    return API_SESSION_IDLE_SECONDS


SESSIONS = SessionStore(_session_memory_mb(), _api_idle_seconds())


def free_session(sess) -> None:
    """gr.State's delete_callback: the state expired or its session closed."""
    if isinstance(sess, Session):
        SESSIONS.free(sess)


def free_request_session(request=None) -> None:
    """demo.unload: the browser left; free its analysis now (Gradio keeps closed sessions'
    state for an hour)."""
    sid = getattr(request, "session_hash", None) or request_session()
    if sid:
        SESSIONS.free(owner=sid)
