"""Taps: parameter-free identity modules through which every attention tensor passes.

A forward hook on a tap sees the attention tensor; a hook that returns a value replaces it
(that is how gate ablation works). Taps add no state-dict keys, so released checkpoints still
load strictly. Each tap instance is used in exactly one place.

Kinds and the canonical shape a tap sees (``attnviz.kinds`` holds the specs; a tap's block must be
in its block table with the tap's kind among the block's kinds):
    channel           (B, C)         channel gate
    spatial           (B, H, W)      spatial map
    group             (B, G, H, W)   SGE group factors
    kernel            (B, M, C)      SK kernel-selection weights (softmax over M)
    affinity          (B, Nq, Nk)    position affinity (softmax over keys)
    channel_affinity  (B, C, C)      DANet channel affinity (softmax over the last axis)
    calibration       (B, C, H, W)   SCNet calibration gate
"""
from torch import nn

from ... import kinds as _kinds
from ...errors import UnknownKindError

KINDS = _kinds.KINDS  # live views of attnviz.kinds' tables
BLOCKS = _kinds.BLOCKS


class Tap(nn.Identity):
    """Identity carrying the `kind` of tensor it sees and the `block` it belongs to.

    Blocks may pass grid sizes as keyword arguments (``query_hw``, ``key_hw``); hooks registered
    with ``with_kwargs=True`` receive them as metadata.
    """

    def __init__(self, kind: str, block: str):
        super().__init__()
        _kinds.get(kind)
        spec = _kinds.block(block)
        if kind not in spec.kinds:
            raise UnknownKindError(f"block {block!r} declares tap kinds {spec.kinds}, not "
                                   f"{kind!r}; add it to the block's row in attnviz.kinds")
        self.kind = kind
        self.block = block

    def forward(self, x, **meta):  # noqa: D401 - identity
        return x

    def extra_repr(self):
        return f"kind={self.kind}, block={self.block}"


def iter_taps(model: nn.Module):
    """Yield (dotted name, tap) for every tap in forward-definition order."""
    for name, module in model.named_modules():
        if isinstance(module, Tap):
            yield name, module
