"""``create_model`` / ``list_models``: build a configuration by name, optionally with weights."""
from __future__ import annotations

from ..errors import UnknownModelError
from .zoo import IMAGENET, LITE, REGISTRY


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered models; ``family`` is "lite" or "imagenet" to filter."""
    if family is None:
        return list(REGISTRY)
    table = {"lite": LITE, "imagenet": IMAGENET}
    if family not in table:
        raise ValueError(f"family must be 'lite' or 'imagenet', not {family!r}")
    return list(table[family])


def create_model(name: str, num_classes: int | None = None, pretrained: bool = False, **kw):
    """Build model ``name``. ``pretrained=True`` loads its shipped checkpoint (lite models) or its
    known public weights (ImageNet models; needs downloads allowed, see ``attnviz.weights``).
    The model comes back in eval mode with ``model.info`` (a ModelInfo) describing it."""
    if name not in REGISTRY:
        import difflib
        close = difflib.get_close_matches(str(name), REGISTRY, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise UnknownModelError(f"Unknown model {name!r}.{hint} Available: {', '.join(REGISTRY)}")
    build = REGISTRY[name]
    model = build(**kw) if num_classes is None else build(num_classes=num_classes, **kw)
    if pretrained:
        from ..weights import load_pretrained
        load_pretrained(model, name)
    return model.eval()
