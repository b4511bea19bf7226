"""Attributions: Captum's methods and the CAM family at any layer, built once per model and
called with ``attribute(inputs, target)``: :mod:`.methods` (the methods by name, aliases and
groups), :mod:`.explainer` (the :class:`Explainer`, its cache and the per-model lock), :mod:`.cam`
(the CAM family in plain torch), :mod:`.choice` (class and layer choices). :mod:`.explain` is
callable as the function ``explain(model, image, method=...)``."""
from . import explain  # noqa: F401 - the module, callable as attnviz.explain(...)
from .explain import Attribution, Explainer

__all__ = ["Attribution", "Explainer", "explain"]
