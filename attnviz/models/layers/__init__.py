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

from ... import kinds as _kinds
from ...kinds import CONV, GATE, STANDALONE, BlockSpec

# The attention blocks attnviz builds, one row each (name, display name, class, slot, its taps'
# kinds): the table the factory, the tap validation, the zoo and the app read.
BLOCK_TABLE = (
    BlockSpec("se", "SE", SEModule, GATE, ("channel",)),
    BlockSpec("cbam", "CBAM", CBAM, GATE, ("channel", "spatial")),
    BlockSpec("sk", "SK", SelectiveKernel, CONV, ("kernel",)),
    BlockSpec("sge", "SGE", SpatialGroupEnhance, GATE, ("group",)),
    BlockSpec("nonlocal", "non-local", NonLocalBlock, STANDALONE, ("affinity",)),
    BlockSpec("danet_pam", "DANet position", PositionAttention, STANDALONE, ("affinity",)),
    BlockSpec("danet_cam", "DANet", ChannelAttention, STANDALONE, ("channel_affinity",)),
    BlockSpec("self_attn", "SAGAN self-attention", SelfAttention, STANDALONE, ("affinity",)),
    BlockSpec("scconv", "SCNet", SCConv, CONV, ("calibration",)),
)
for _b in BLOCK_TABLE:
    _kinds.register_block(_b)


def get_attn(name):
    """Return the block class for a name in ``attnviz.kinds``' block table ('se', 'cbam', 'sge',
    'nonlocal', ...); None, "" and "none" give None; a class or factory passes through.
    Raises UnknownBlockError (a ValueError) for an unknown name."""
    if name is None or name == "" or name == "none":
        return None
    if not isinstance(name, str):
        return name  # already a class or factory
    return _kinds.block(name).block_class()


__all__ = [
    "BLOCKS", "BLOCK_TABLE", "KINDS", "CBAM", "ChannelAttention", "MultiKernelSK", "NonLocalBlock",
    "PositionAttention", "SCConv", "SEModule", "SelectiveKernel", "SelfAttention",
    "SpatialGroupEnhance", "Tap", "get_attn", "iter_taps",
]
