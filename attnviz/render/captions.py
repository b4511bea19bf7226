"""What a person reads beside a map: the display names of the attribution methods, a map's
caption among the maps of its analysis ("layer3.0 · CBAM spatial · 16x16", the module told apart
by its distinguishing path under any naming), and an attribution drawn as a map: on its own grid
(:func:`attribution_grid`) with the colour normalisation that suits its method
(:func:`attribution_norm`). Shared by the app's views and the export writer.
"""
from __future__ import annotations

import functools

import numpy as np

from ..analysis.labels import record_labels
from ..attribution.cam import CAMS
from ..attribution.explain import CAM_METHODS, reduce_attribution
from .overlay import caption

METHOD_NAMES = {"gradcam": "Grad-CAM", "guided_gradcam": "Guided Grad-CAM",
                "integrated_gradients": "Integrated Gradients", "smoothgrad": "SmoothGrad",
                "saliency": "Saliency", "occlusion": "Occlusion", "gradient_shap": "GradientSHAP",
                **{name: spec.title for name, spec in CAMS.items()}}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


@functools.lru_cache(maxsize=256)
def _labels(key: tuple) -> dict:
    return record_labels([_Row(*k) for k in key])


class _Row:
    def __init__(self, tap, layer, block, kind):
        self.tap, self.layer, self.block, self.kind = tap, layer, block, kind


def module_label(rec, records) -> str:
    """The module's distinguishing path among ``records`` (attnviz.analysis.labels):
    "layer3.0" (torchvision), "stages.2.blocks.1" (timm), "features.7" (flat)."""
    key = tuple((r.tap, r.layer, r.block, r.kind) for r in records)
    return _labels(key).get(rec.tap) or record_labels([rec])[rec.tap]


def map_caption(rec, records) -> str:
    """"layer3.0 · CBAM spatial · 16x16": the module's label among ``records``, what, size."""
    full = caption(rec)
    label = module_label(rec, records)
    return label + full[len(rec.layer):] if full.startswith(rec.layer) else full


def attribution_grid(analysis, method: str) -> np.ndarray:
    """An attribution's map on its own grid (Grad-CAM: the layer's grid, ReLU'd; pixel methods:
    |attribution| summed over colour channels on the model-input grid), float32."""
    m = reduce_attribution(analysis.attributions[method].raw, method)
    return m[0].cpu().numpy().astype(np.float32)


def attribution_norm(method: str) -> str:
    """Pixel attributions have a few very hot pixels: clip their colour range at percentiles."""
    return "minmax" if method in CAM_METHODS else "percentile"
