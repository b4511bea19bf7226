"""Attention blocks, one file each, and a small string-to-class factory."""
from .cbam import CBAM
from .danet import ChannelAttention, PositionAttention
from .non_local import NonLocalBlock
from .scconv import SCConv
from .se import SEModule
from .self_attn import SelfAttention
from .sge import SpatialGroupEnhance
from .sk import MultiKernelSK, SelectiveKernel
from .tap import BLOCKS, KINDS, Tap, iter_taps

# attention that rescales a block's output (plugged into residual blocks after their last BN)
_GATES = {"se": SEModule, "cbam": CBAM, "sge": SpatialGroupEnhance}
# attention that stands alone between blocks or in a head
_STANDALONE = {
    "nonlocal": NonLocalBlock,
    "danet_pam": PositionAttention,
    "danet_cam": ChannelAttention,
    "self_attn": SelfAttention,
}


def get_attn(name):
    """Return the block class for a name ('se', 'cbam', 'sge', 'nonlocal', ...); None passes through."""
    if name is None or name == "" or name == "none":
        return None
    if not isinstance(name, str):
        return name  # already a class or factory
    table = {**_GATES, **_STANDALONE}
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; choose from {sorted(table)}") from None


__all__ = [
    "BLOCKS", "KINDS", "CBAM", "ChannelAttention", "MultiKernelSK", "NonLocalBlock",
    "PositionAttention", "SCConv", "SEModule", "SelectiveKernel", "SelfAttention",
    "SpatialGroupEnhance", "Tap", "get_attn", "iter_taps",
]
