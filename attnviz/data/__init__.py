"""Data: images read safely and turned into model inputs, synthetic tasks with known ground
truth (shapes; the relational tasks: same/different squares, a cue naming a shape), batching
and sharding across processes. ``attnviz.datasets`` is this package."""
from .folders import load_image_folder
from .batch import DEFAULT_BATCH, as_input, chunks, image_paths, is_batch
from .images import Preprocess, load_image, preprocess
from .relational import PALETTE, RELATION_CLASSES, RelationalData, make_relational
from .cued import CUED_CLASSES, make_cued
from .link_tasks import LINK_TASKS, LinkTask
from .synthetic import *  # noqa: F401,F403 - the synthetic tasks are this package's face
from .synthetic import __all__ as _synthetic_all

__all__ = list(_synthetic_all) + [
    "CUED_CLASSES", "DEFAULT_BATCH", "LINK_TASKS", "LinkTask", "PALETTE", "Preprocess",
    "RELATION_CLASSES", "RelationalData", "as_input", "chunks", "image_paths", "is_batch",
    "load_image", "load_image_folder", "make_cued", "make_relational", "preprocess"]
