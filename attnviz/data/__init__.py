"""Data: images read safely and turned into model inputs, synthetic tasks with known ground
truth (shapes; the relational same/different task), batching and sharding across processes.
``attnviz.datasets`` is this package."""
from .folders import load_image_folder
from .batch import DEFAULT_BATCH, as_input, chunks, image_paths, is_batch
from .images import Preprocess, load_image, preprocess
from .relational import PALETTE, RELATION_CLASSES, RelationalData, make_relational
from .synthetic import *  # noqa: F401,F403 - the synthetic tasks are this package's face
from .synthetic import __all__ as _synthetic_all

__all__ = list(_synthetic_all) + [
    "DEFAULT_BATCH", "PALETTE", "Preprocess", "RELATION_CLASSES", "RelationalData", "as_input",
    "chunks", "image_paths", "is_batch", "load_image", "load_image_folder", "make_relational",
    "preprocess"]
