"""The rest of ViT equation (1): prepend the learnable class token x_class and add E_pos.

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos,   E_pos in R^{(N+1) x D}

``cls_token`` has timm's shape (1, 1, D) and ``pos_embed`` (1, N+1, D); both are shared by
every image in the batch, so their gradients are sums over the batch.
"""

from minivit.backend import array_module


def embed_tokens_forward(patch_tokens, cls_token, pos_embed):
    """patch_tokens (B, N, D), cls_token (1, 1, D), pos_embed (1, N+1, D) -> z0 (B, N+1, D)."""
    xp = array_module(patch_tokens)
    B, N, D = patch_tokens.shape
    if pos_embed.shape != (1, N + 1, D):
        raise ValueError(f"pos_embed has shape {tuple(pos_embed.shape)}, expected {(1, N + 1, D)} "
                         f"for {N} patches of width {D}")
    cls = xp.broadcast_to(cls_token, (B, 1, D))
    z0 = xp.concatenate([cls, patch_tokens], axis=1) + pos_embed
    return z0, None


def embed_tokens_backward(dz0, cache=None):
    """dz0 (B, N+1, D) -> (dpatch_tokens (B, N, D), dcls_token (1, 1, D), dpos_embed (1, N+1, D))."""
    dcls = dz0[:, :1, :].sum(axis=0, keepdims=True)
    dpos = dz0.sum(axis=0, keepdims=True)
    return dz0[:, 1:, :], dcls, dpos
