"""The pre-LN Transformer encoder block, ViT equations (2) and (3):

    z'_l = MSA(LN(z_{l-1})) + z_{l-1}          (2)
    z_l  = MLP(LN(z'_l)) + z'_l                (3)

Each residual branch may be dropped per sample (stochastic depth).  ``p`` holds the block's
parameters under timm's short names (``norm1.weight``, ``attn.qkv.weight``, ...); the backward
pass returns a gradient dict with the same keys.
"""

from typing import NamedTuple

from minivit.layers.attention import attention_backward, attention_forward
from minivit.layers.dropout import drop_path_backward, drop_path_forward
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.mlp import mlp_backward, mlp_forward

BLOCK_PARAM_NAMES = (
    "norm1.weight", "norm1.bias",
    "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
)


class BlockCache(NamedTuple):
    ln1: object           # LayerNorm before attention
    attn: object          # AttentionCache
    drop_path1: object    # stochastic depth mask of the attention branch
    ln2: object           # LayerNorm before the MLP
    mlp: object           # MLPCache
    drop_path2: object    # stochastic depth mask of the MLP branch

    @property
    def probs(self):
        """The block's attention probabilities (B, h, T, T)."""
        return self.attn.probs


def block_forward(z, p, num_heads, approximate="erf", drop=0.0, attn_drop=0.0,
                  drop_path=0.0, rng=None, train=False):
    """z (B, T, D) -> (z_out (B, T, D), cache); ``cache.probs`` (B, h, T, T)."""
    # (2) z' = MSA(LN(z)) + z
    a, ln1 = layernorm_forward(z, p["norm1.weight"], p["norm1.bias"])
    a, attn = attention_forward(a, p["attn.qkv.weight"], p.get("attn.qkv.bias"),
                                p["attn.proj.weight"], p["attn.proj.bias"], num_heads,
                                attn_drop, drop, rng, train)
    a, dp1 = drop_path_forward(a, drop_path, rng, train)
    a += z                      # z' = branch + z, in place on the branch's new output
    z1 = a
    # (3) z = MLP(LN(z')) + z'
    m, ln2 = layernorm_forward(z1, p["norm2.weight"], p["norm2.bias"])
    m, mlp = mlp_forward(m, p["mlp.fc1.weight"], p["mlp.fc1.bias"], p["mlp.fc2.weight"],
                         p["mlp.fc2.bias"], approximate, drop, rng, train)
    m, dp2 = drop_path_forward(m, drop_path, rng, train)
    m += z1                     # in place, as above
    return m, BlockCache(ln1, attn, dp1, ln2, mlp, dp2)


def block_backward(dz_out, cache):
    """dz_out (B, T, D) -> (dz (B, T, D), grads dict with the block's short names)."""
    c = cache
    g = {}
    # through (3): the residual passes dz_out straight to z', the branch adds its gradient
    dm = drop_path_backward(dz_out, c.drop_path2)
    dm, g["mlp.fc1.weight"], g["mlp.fc1.bias"], g["mlp.fc2.weight"], g["mlp.fc2.bias"] = \
        mlp_backward(dm, c.mlp)
    dm, g["norm2.weight"], g["norm2.bias"] = layernorm_backward(dm, c.ln2)
    dm += dz_out                # dz' = dz_out + branch gradient (in place on LayerNorm's dx)
    dz1 = dm
    # through (2)
    da = drop_path_backward(dz1, c.drop_path1)
    da, g["attn.qkv.weight"], g["attn.qkv.bias"], g["attn.proj.weight"], g["attn.proj.bias"] = \
        attention_backward(da, c.attn)
    da, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(da, c.ln1)
    da += dz1
    return da, g
