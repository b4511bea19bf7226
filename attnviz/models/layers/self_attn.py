"""Self-attention of SAGAN (Zhang et al., "Self-Attention Generative Adversarial Networks", ICML
2019): query/key 1x1 convs C -> C/8, value C -> C, softmax over keys, out = gamma * o + x with the
scalar gamma initialised to 0.
"""
from .danet import PositionAttention


class SelfAttention(PositionAttention):
    attr_name = "self_attn"
    block_name = "self_attn"
