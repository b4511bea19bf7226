"""attnviz: look inside convolutional networks that carry attention modules.

    import attnviz
    model = attnviz.create_model("lite_cbam", pretrained=True)
    with attnviz.capture(model) as rec:
        model(x)
"""
from . import errors
from .capture import AttentionMap, capture, intervene, list_taps
from .discover import discover, register_adapter, unregister_adapter
from .model_info import describe, imagenet_classes
from .models.resnet import ModelInfo
from . import metrics
from .explain import explain  # the function; the module stays importable as attnviz.explain
from .inspect import Analysis, inspect, score_analysis  # the module: sys.modules["attnviz.inspect"]
from .preprocess import load_image
from .models.registry import create_model, list_models
from .weights import load_weights

__version__ = "0.1.0"
__all__ = ["Analysis", "AttentionMap", "capture", "create_model", "errors", "explain", "inspect",
           "intervene", "list_models", "list_taps", "load_image", "load_weights", "metrics",
           "discover", "register_adapter", "unregister_adapter", "describe", "imagenet_classes",
           "ModelInfo", "score_analysis"]
