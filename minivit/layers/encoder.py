"""The Transformer encoder: a stack of blocks (``block.py``), ViT equations (2) and (3) for
l = 1 .. L.  The ViT, the MAE encoder and decoder and masked patch prediction all use it.

    forward:   z_0 -> block_1 -> z_1 -> ... -> block_L -> z_L
    backward:  dz_L -> block_L -> ... -> block_1 -> dz_0   (the blocks in reverse)

Random draws (dropout, stochastic depth) happen block by block, in forward order, from the
one generator ``rng``.  ``blocks`` is a list of the blocks' parameter dicts under timm's short
names (``stack_params`` cuts them out of a model's flat dict); the gradients come back as one
dict per block with the same keys.
"""

from typing import NamedTuple

from minivit.layers.block import BLOCK_PARAM_NAMES, block_backward, block_forward


class EncoderCache(NamedTuple):
    blocks: list          # BlockCache of each block ([] when keep=False)
    probs: list           # attention probabilities (B, h, T, T) per block ([] unless asked)


def block_params(params: dict, prefix: str, i: int) -> dict:
    """Block ``{prefix}.{i}``'s parameters of a flat dict under their short names
    (``attn.qkv.bias`` only where present)."""
    pre = f"{prefix}.{i}."
    return {k: params[pre + k] for k in BLOCK_PARAM_NAMES if pre + k in params}


def stack_params(params: dict, prefix: str, depth: int) -> list:
    """[block_params of {prefix}.0, ..., {prefix}.{depth-1}]."""
    return [block_params(params, prefix, i) for i in range(depth)]


def stack_grads(block_grads: list, prefix: str) -> dict:
    """[grads of block 0, ...] -> flat dict ``{prefix}.{i}.{name}`` (None gradients left out)."""
    return {f"{prefix}.{i}.{k}": v for i, g in enumerate(block_grads)
            for k, v in g.items() if v is not None}


def drop_path_rates(depth: int, rate: float) -> list:
    """Stochastic depth rate of each block, rising linearly from 0 to ``rate`` (timm's rule)."""
    return [rate * i / (depth - 1) if depth > 1 else rate for i in range(depth)]


def encoder_forward(z, blocks, num_heads, approximate="erf", drop=0.0, attn_drop=0.0,
                    drop_paths=None, rng=None, train=False, keep=True, keep_probs=False,
                    states=None):
    """z (B, T, D) -> (z_L (B, T, D), EncoderCache).

    drop_paths: one stochastic depth rate per block (None: all 0).  keep=False: no backward
    will follow, so the block caches are not kept; keep_probs: keep the attention
    probabilities of every block in ``cache.probs`` (with or without ``keep``).  states: a
    list to append each block's output z_l (B, T, D) to (``minivit explain``).
    """
    caches, probs = [], []
    for i, p in enumerate(blocks):
        dp = 0.0 if drop_paths is None else drop_paths[i]
        z, c = block_forward(z, p, num_heads, approximate, drop, attn_drop, dp, rng, train)
        if keep:
            caches.append(c)
        if keep_probs:
            probs.append(c.probs)
        if states is not None:
            states.append(z)
    return z, EncoderCache(caches, probs)


def encoder_backward(dz, cache, states=None):
    """dz_L (B, T, D) -> (dz_0 (B, T, D), [grads dict of block 0, block 1, ...]).
    states: a list to append the gradient w.r.t. each block's input z_{l-1} to, last block
    first (``minivit explain``)."""
    grads = [None] * len(cache.blocks)
    for i in reversed(range(len(cache.blocks))):
        dz, grads[i] = block_backward(dz, cache.blocks[i])
        if states is not None:
            states.append(dz)
    return dz, grads
