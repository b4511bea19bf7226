"""Load a checkpoint written by :mod:`attnviz.train` under any name (e.g. the relational models
``models/lite_nonlocal_rel.safetensors``): the card next to it names the architecture and the
classes, so the model is built with the right number of outputs before the weights go in."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import WeightsError
from .weights import load_weights
from .registry import create_model


def load_checkpoint(path) -> object:
    """Build the card's architecture with the card's classes, load ``path`` strictly, and carry
    the card (input size, mean, std, classes) into ``model.info``. Raises WeightsError when the
    checkpoint or its card is missing or unusable."""

    path = Path(path)
    card_path = path.with_suffix(".json")
    if not path.is_file():
        raise WeightsError(f"no checkpoint {path.name}; train it first (scripts/train_relational.sh)")
    try:
        card = json.loads(card_path.read_text())
        arch, classes = card["architecture"], list(card["classes"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"the model card {card_path.name} is missing or lacks architecture and "
                           f"classes ({type(e).__name__}); it is written by attnviz.train") from None
    model = load_weights(create_model(arch, num_classes=len(classes)), path)
    info = model.info
    info.card.update(card)
    info.name = card.get("name", path.stem)
    info.classes = classes
    if isinstance(card.get("input_size"), int):
        info.input_size = card["input_size"]
    for key in ("mean", "std"):
        if isinstance(card.get(key), list) and len(card[key]) == 3:
            setattr(info, key, tuple(float(v) for v in card[key]))
    return model
