"""The relational tasks with link ground truth, as one spec the trainer, the link scores, the CLI
and the app loop over.

- ``relational``: same or different colour of two far-apart squares
  (:func:`~attnviz.data.relational.make_relational`). Both squares must be compared, but a model
  may read the link in one direction only, and which one it reads may depend on the colours.
- ``cued``: a small cue whose colour names which of two far-apart shapes to classify
  (:func:`~attnviz.data.cued.make_cued`). The query (the cue) and its partner (the named shape)
  play different roles.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .cued import CUED_CLASSES, make_cued
from .relational import RELATION_CLASSES, make_relational


@dataclass(frozen=True)
class LinkTask:
    name: str  # --task value
    make: Callable  # make(n, seed, size, indices=None, check=None) -> RelationalData
    classes: tuple
    suffix: str  # checkpoint names: <architecture><suffix>, e.g. lite_sagan_rel
    description: str  # for cards and help texts
    # training: weight of the loss on the answer read at the query's cell (attnviz.models.readout);
    # a task whose query must itself know the label sets it, so its reader is fixed
    query_loss: float = 0.0


LINK_TASKS = {t.name: t for t in (
    LinkTask("relational", make_relational, tuple(RELATION_CLASSES), "_rel",
             "synthetic relational same/different squares (fresh each epoch)"),
    LinkTask("cued", make_cued, tuple(CUED_CLASSES), "_cue",
             "synthetic cued shapes: a small cue's colour names which of two far-apart shapes "
             "to classify (fresh each epoch)", query_loss=1.0),
)}
