"""Scores for any map: localisation against a mask (pointing, energy), faithfulness (deletion and
insertion with ROAD imputation), the randomisation sanity check, gate ablation, and evaluation
over a synthetic dataset. ``attnviz.metrics`` is this package."""
from ..errors import MetricError
from . import faithfulness  # noqa: F401 - the module, callable as faithfulness(model, ...)
from .faithfulness import (DEFAULT_REMOVAL, REMOVALS, Curve, deletion_auc, deletion_curve,
                           insertion_auc, insertion_curve, random_map, with_reference)
from .metrics import *  # noqa: F401,F403 - the metrics are this package's face
from .metrics import __all__ as _metrics_all

__all__ = list(_metrics_all) + ["MetricError", "Curve", "DEFAULT_REMOVAL", "REMOVALS",
                                "deletion_auc",
                                "deletion_curve", "faithfulness", "insertion_auc",
                                "insertion_curve", "random_map", "with_reference"]
