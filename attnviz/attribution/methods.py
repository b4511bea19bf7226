"""The attribution methods by name: Captum's and the CAM family's, their aliases, the groups the
rest of attnviz loops over (layer methods, CAM-reduced maps, batched, fast, single-pass), and the
layer a layer method runs at (:func:`resolve_layer`).
"""
from __future__ import annotations

from torch import nn

from .cam import CAM_ALIASES, CAMS
from ..errors import LayerError, UnknownOptionError
from ..capture.discover import cam_layer_of

CAPTUM_METHODS = ("gradcam", "guided_gradcam", "integrated_gradients", "smoothgrad", "saliency",
                  "occlusion", "gradient_shap")
METHODS = (*CAPTUM_METHODS, *CAMS)
ALIASES = {"grad_cam": "gradcam", "grad-cam": "gradcam", "guided_grad_cam": "guided_gradcam",
           "ig": "integrated_gradients", "noise_tunnel": "smoothgrad", "gradientshap":
           "gradient_shap", "shap": "gradient_shap", **CAM_ALIASES}
LAYER_METHODS = ("gradcam", "guided_gradcam", *CAMS)
# maps reduced as Grad-CAM's (the positive part of a (B, 1, h, w) map on the layer's grid)
CAM_METHODS = ("gradcam", *CAMS)
# methods whose one attribution takes many forward passes, ``batch_size`` inputs at a time
BATCHED = ("scorecam", "ablationcam")
# methods one request can afford on a CPU (one forward, at most one backward, per image);
# Score-CAM and Ablation-CAM take a forward pass per channel of their layer
FAST = ("gradcam", "guided_gradcam", "saliency", "gradcam++", "xgradcam", "layercam", "hirescam",
        "eigencam")
# methods that evaluate the model once on the input itself: with target=None they attribute the
# top logit (the predicted class) without a separate forward pass
SINGLE_PASS = ("gradcam", "guided_gradcam", "saliency")


def canonical_method(method: str) -> str:
    m = str(method).strip().lower().replace(" ", "_")
    m = ALIASES.get(m, m)
    m = ALIASES.get(m.replace("-", "_"), m)
    if m not in METHODS:
        raise UnknownOptionError(f"unknown attribution method {method!r}; choose from "
                                 f"{list(METHODS)}")
    return m


def resolve_layer(model: nn.Module, layer=None) -> tuple[str, nn.Module]:
    """(path, module) for a layer given by path, as a module, or None (``model.info.cam_layer``)."""
    if isinstance(layer, nn.Module):
        for name, mod in model.named_modules():
            if mod is layer:
                return name, mod
        raise LayerError("the layer given is not a submodule of this model")
    if layer is None:
        layer = cam_layer_of(model)
        if layer is None:
            raise LayerError("this model has no layer whose output is a spatial map for "
                             "Grad-CAM; pass layer=...")
    try:
        return str(layer), model.get_submodule(str(layer))
    except AttributeError as e:
        names = [n for n, _ in model.named_children()]
        raise LayerError(f"this model has no layer {layer!r}; top-level layers are {names}; "
                         "use a dotted path such as 'layer4' or 'layer3.0'") from e
