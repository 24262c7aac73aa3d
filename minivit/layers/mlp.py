"""The Transformer MLP: two linear layers with a GELU between (ViT section 3.1).

    MLP(x) = fc2(dropout(GELU(fc1(x))))   then dropout again (timm's Mlp: drop1, drop2)
    fc1: D -> mlp_dim,  fc2: mlp_dim -> D

Memory: fc2's backward needs its input a = dropout(GELU(h)), and the GELU's backward needs h
and Phi(h).  Rather than keep all three (B, T, mlp_dim) arrays, the forward keeps h and
Phi(h) (the GELU's cache) and the backward rebuilds a from them: one multiplication (two with
dropout) instead of a third array per block.
"""

from typing import NamedTuple

from minivit.layers.dropout import dropout_backward, dropout_forward
from minivit.layers.gelu import gelu_backward, gelu_forward, gelu_output
from minivit.layers.linear import linear_backward, linear_forward


class MLPCache(NamedTuple):
    fc1: object           # linear cache of fc1
    gelu: object          # GELUCache: h and Phi(h)
    drop1: object         # dropout mask after the GELU
    fc2: object           # linear cache of fc2, without its input (rebuilt by the backward)
    drop2: object         # dropout mask after fc2


def mlp_forward(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, approximate="erf",
                drop=0.0, rng=None, train=False):
    """x (B, T, D) -> (y (B, T, D), cache)."""
    h, fc1_cache = linear_forward(x, fc1_weight, fc1_bias)      # (B, T, mlp_dim)
    a, gelu_cache = gelu_forward(h, approximate)
    a, drop1_cache = dropout_forward(a, drop, rng, train)
    y, fc2_cache = linear_forward(a, fc2_weight, fc2_bias)      # (B, T, D)
    y, drop2_cache = dropout_forward(y, drop, rng, train)
    return y, MLPCache(fc1_cache, gelu_cache, drop1_cache, fc2_cache._replace(x=None),
                       drop2_cache)


def mlp_backward(dy, cache):
    """dy (B, T, D) -> (dx, dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias)."""
    dy = dropout_backward(dy, cache.drop2)
    a = gelu_output(cache.gelu)                                  # fc2's input, rebuilt
    if cache.drop1 is not None:
        a *= cache.drop1
    da, dfc2_w, dfc2_b = linear_backward(dy, cache.fc2._replace(x=a))
    del a
    da = dropout_backward(da, cache.drop1)
    dh = gelu_backward(da, cache.gelu)
    dx, dfc1_w, dfc1_b = linear_backward(dh, cache.fc1)
    return dx, dfc1_w, dfc1_b, dfc2_w, dfc2_b
