"""The model catalogue: which models the app offers (lite models, models trained here, your own
``--model`` files, ImageNet architectures), each with its weights badge, in dropdown order, and
their parameter counts.

    choices = model_choices()          # [(label, name)], trained lite models first
    entry = find_entry("lite_cbam")    # Entry(name, arch, family, badge, path)

Weights: a lite model loads its shipped checkpoint (``models/<name>.safetensors``); until one
exists it runs with random weights and says so. ImageNet architectures load public weights when
they are on disk or downloads are allowed (``ATTNVIZ_ALLOW_DOWNLOAD=1``, or on a Space), else
random weights. Models trained in the app live in ``runs/`` (``$ATTNVIZ_RUNS_DIR``).
Loading is :mod:`.model_cache`'s job.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import errors as E
from ..models.registry import create_model, list_models
from ..models.zoo import IMAGENET, LINK, LITE, REGISTRY
from .limits import echo
from .user_models import NAME_RE, models_dir, runs_dir, visible  # noqa: F401 - re-exported

BADGE_SHAPES = "trained on shapes"
BADGE_IMAGENET = "ImageNet weights"
BADGE_RANDOM = "random weights"
BADGE_USER = "trained here"


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
    from ..models.weights import local_weights
    path = local_weights(name)
    return Entry(name, name, "lite", BADGE_SHAPES if path else BADGE_RANDOM, path)


def _imagenet_entry(name: str) -> Entry:
    from ..models import sources
    from ..models.weights import local_weights
    path = local_weights(name)
    src = sources.get_source(name)
    ok = path is not None or (src is not None and sources.downloads_allowed())
    return Entry(name, name, "imagenet", BADGE_IMAGENET if ok else BADGE_RANDOM, path)


def user_entries() -> list[Entry]:
    """Models trained in the app (``runs/<name>.safetensors`` with its card) that the current
    request may see (see :mod:`.user_models`)."""
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
    from ..models.external import FAMILY, externals
    return [Entry(x.name, x.card.get("architecture", "custom"), FAMILY, x.badge, x.weights,
                  dict(x.card)) for x in externals()]


def catalogue() -> list[Entry]:
    """Every model, in dropdown order: your own models (``--model``), trained lite models,
    models trained here, lite models still without a checkpoint, then the ImageNet
    architectures."""
    # the link-task bodies (list_models("link")) are not listed: they ship no weights of their
    # own, only link-task checkpoints, which the Statistics tab shows; by name they still work
    lite = [_lite_entry(n) for n in list_models("lite")]
    imagenet = [_imagenet_entry(n) for n in list_models("imagenet")]
    return (external_entries() + [e for e in lite if e.trained] + user_entries()
            + [e for e in lite if not e.trained]
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
    if name in LITE or name in LINK:
        return _lite_entry(name)
    if name in IMAGENET:
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


