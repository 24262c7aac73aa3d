"""The Transformer MLP: two linear layers with a GELU between (ViT section 3.1).

    MLP(x) = fc2(dropout(GELU(fc1(x))))   then dropout again (timm's Mlp: drop1, drop2)
    fc1: D -> mlp_dim,  fc2: mlp_dim -> D
"""

from minivit.layers.dropout import dropout_backward, dropout_forward
from minivit.layers.gelu import gelu_backward, gelu_forward
from minivit.layers.linear import linear_backward, linear_forward


def mlp_forward(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, approximate="erf",
                drop=0.0, rng=None, train=False):
    """x (B, T, D) -> y (B, T, D)."""
    h, fc1_cache = linear_forward(x, fc1_weight, fc1_bias)      # (B, T, mlp_dim)
    a, gelu_cache = gelu_forward(h, approximate)
    a, drop1_cache = dropout_forward(a, drop, rng, train)
    y, fc2_cache = linear_forward(a, fc2_weight, fc2_bias)      # (B, T, D)
    y, drop2_cache = dropout_forward(y, drop, rng, train)
    return y, (fc1_cache, gelu_cache, drop1_cache, fc2_cache, drop2_cache)


def mlp_backward(dy, cache):
    """dy (B, T, D) -> (dx, dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias)."""
    fc1_cache, gelu_cache, drop1_cache, fc2_cache, drop2_cache = cache
    dy = dropout_backward(dy, drop2_cache)
    da, dfc2_w, dfc2_b = linear_backward(dy, fc2_cache)
    da = dropout_backward(da, drop1_cache)
    dh = gelu_backward(da, gelu_cache)
    dx, dfc1_w, dfc1_b = linear_backward(dh, fc1_cache)
    return dx, dfc1_w, dfc1_b, dfc2_w, dfc2_b
