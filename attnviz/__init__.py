"""attnviz: look inside convolutional networks that carry attention modules.

    import attnviz
    model = attnviz.create_model("lite_cbam", pretrained=True)
    with attnviz.capture(model) as rec:
        model(x)

The package flows in layers, each importing only those below it: ``kinds``/``errors`` ->
``models`` -> ``data`` -> ``capture`` -> ``attribution`` -> ``scores`` -> ``analysis`` ->
``render`` -> ``training``/``tools`` -> ``cli``/``app`` (docs/architecture.md).
``attnviz.capture``, ``attnviz.explain`` and ``attnviz.inspect`` are modules that can be called
as their function.
"""
import sys as _sys

from . import errors, kinds
from .models.info import ModelInfo, describe, imagenet_classes
from .models.registry import create_model, list_models
from .models.weights import load_weights
from . import data as datasets  # attnviz.datasets: the synthetic tasks and image folders
from .data.images import load_image
from . import capture  # the package, callable: attnviz.capture(model)
from .capture import AttentionMap, intervene, list_taps
from .capture.discover import discover, register_adapter, unregister_adapter
from .attribution import explain  # the module, callable: attnviz.explain(model, image)
from . import scores as metrics
from .analysis import inspect  # the module, callable: attnviz.inspect(model, image)
from .analysis.inspect import Analysis, score_analysis

# the documented module names: `import attnviz.inspect as m` gives the module
for _name, _module in (("explain", explain), ("inspect", inspect), ("metrics", metrics),
                       ("datasets", datasets)):
    _sys.modules[f"{__name__}.{_name}"] = _module
del _name, _module

__version__ = "0.1.0"
__all__ = ["Analysis", "AttentionMap", "capture", "create_model", "datasets", "errors", "explain",
           "inspect", "intervene", "kinds", "list_models", "list_taps", "load_image",
           "load_weights", "metrics", "discover", "register_adapter", "unregister_adapter",
           "describe", "imagenet_classes", "ModelInfo", "score_analysis"]
