"""``create_model`` / ``list_models``: build a configuration by name, optionally with weights."""
from __future__ import annotations

import os
import zlib

import torch

from ..errors import OptionError, UnknownModelError
from .zoo import IMAGENET, LINK, LITE, REGISTRY
from .weights import load_pretrained

SEED_ENV = "ATTNVIZ_SEED"
DEFAULT_SEED = 0


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered models; ``family`` filters: "lite" (the shipped lite models),
    "link" (the lite bodies with the attention block last, trained on the link tasks) or
    "imagenet"."""
    if family is None:
        return list(REGISTRY)
    table = {"lite": LITE, "link": LINK, "imagenet": IMAGENET}
    if family not in table:
        raise ValueError(f"family must be one of {', '.join(map(repr, table))}, not {family!r}")
    return list(table[family])


def base_seed(seed=None) -> int:
    """The seed random initialisation starts from: ``seed``, else the ``ATTNVIZ_SEED``
    environment variable, else 0."""
    raw = os.environ.get(SEED_ENV, "").strip() if seed is None else seed
    if raw in ("", None):
        return DEFAULT_SEED
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise OptionError(f"the random-init seed must be an integer, not {raw!r} (set "
                          f"{SEED_ENV} or create_model(..., seed=N))") from None


def model_seed(name: str, seed=None) -> int:
    """The seed model ``name``'s random initialisation uses: one stream per (base seed, name),
    the same on every machine (crc32, not Python's salted ``hash``)."""
    return zlib.crc32(f"{base_seed(seed)}:{name}".encode()) & 0x7FFFFFFF


def create_model(name: str, num_classes: int | None = None, pretrained: bool = False,
                 seed: int | None = None, **kw):
    """Build model ``name``. ``pretrained=True`` loads its shipped checkpoint (lite models) or its
    known public weights (ImageNet models; needs downloads allowed, see ``attnviz.weights``).
    The model comes back in eval mode with ``model.info`` (a ModelInfo) describing it.

    Random initialisation is seeded per model name (:func:`model_seed`), so a model without
    weights is the same model on every call and every machine; ``seed`` (or the ``ATTNVIZ_SEED``
    environment variable) picks another draw. The global torch RNG is left as it was."""
    if name not in REGISTRY:
        import difflib
        close = difflib.get_close_matches(str(name), REGISTRY, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise UnknownModelError(f"Unknown model {name!r}.{hint} Available: {', '.join(REGISTRY)}")
    build = REGISTRY[name]
    with torch.random.fork_rng(devices=[]):  # builds on the CPU; the caller's RNG untouched
        torch.manual_seed(model_seed(name, seed))
        model = build(**kw) if num_classes is None else build(num_classes=num_classes, **kw)
    if pretrained:
        load_pretrained(model, name)
    return model.eval()
