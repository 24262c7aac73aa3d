"""The logit lens: the model's own final LayerNorm and head read off every block's output.

    y_l = head(pool(LN(z_l)))       pooled: what the model would answer if it stopped at block l
    y_lt = head(LN(z_lt))           per token: what each token alone would say

At the last block y_L is the model's prediction.  ``logits_after`` runs the remaining blocks
first: the loss as a function of any block's output (the per-token gradients are checked
against its finite differences).
"""

from __future__ import annotations

from minivit.layers.encoder import encoder_forward, stack_params
from minivit.layers.layernorm import layernorm_forward
from minivit.layers.linear import linear_forward


def pool_tokens(model, z):
    """z (B, T, D) after the final norm -> (B, D): the class token or the patch tokens' mean,
    as the model pools."""
    cfg = model.config
    if cfg.pool == "token":
        return z[:, 0]
    return z[:, cfg.num_prefix_tokens:].mean(axis=1)


def head_logits(model, z):
    """z (B, T, D) a block's output -> (per-token logits (B, T, K), pooled logits (B, K))."""
    p = model.params
    normed, _ = layernorm_forward(z, p["norm.weight"], p["norm.bias"])
    tokens, _ = linear_forward(normed, p["head.weight"], p["head.bias"])
    pooled, _ = linear_forward(pool_tokens(model, normed), p["head.weight"], p["head.bias"])
    return tokens, pooled


def logit_lens(model, states):
    """[z_1, ..., z_L] (B, T, D) each -> ([y_lt (B, T, K)] per block, [y_l (B, K)] per block)."""
    lens = [head_logits(model, z) for z in states]
    return [t for t, _ in lens], [y for _, y in lens]


def logits_after(model, z, block: int):
    """z (B, T, D) the input of block ``block`` (0-based; depth: the encoder's output) -> the
    logits (B, K), running blocks ``block`` .. L-1 in evaluation mode."""
    cfg = model.config
    blocks = stack_params(model.params, "blocks", cfg.depth)[block:]
    if blocks:
        z, _ = encoder_forward(z, blocks, cfg.num_heads, cfg.gelu, keep=False)
    return head_logits(model, z)[1]


__all__ = ["head_logits", "logit_lens", "logits_after", "pool_tokens"]
