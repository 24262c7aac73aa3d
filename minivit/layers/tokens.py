"""The rest of ViT equation (1): prepend the learnable class token x_class and add E_pos.

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos,   E_pos in R^{(N+1) x D}

``cls_token`` has timm's shape (1, 1, D) and ``pos_embed`` (1, N+1, D); both are shared by
every image in the batch, so their gradients are sums over the batch.

``embed_prefix_*`` is the same for any number P of prefix tokens (1, P, D) before the patches:
DeiT's distilled ViT has two, the class token and the distillation token (pos_embed (1, N+2, D)).
"""

from minivit.backend import array_module


def embed_prefix_forward(patch_tokens, prefix_tokens, pos_embed):
    """patch_tokens (B, N, D), prefix_tokens (1, P, D), pos_embed (1, P+N, D) -> z0 (B, P+N, D)."""
    xp = array_module(patch_tokens)
    B, N, D = patch_tokens.shape
    P = prefix_tokens.shape[1]
    if pos_embed.shape != (1, N + P, D):
        raise ValueError(f"pos_embed has shape {tuple(pos_embed.shape)}, expected {(1, N + P, D)} "
                         f"for {P} prefix token(s) and {N} patches of width {D}")
    prefix = xp.broadcast_to(prefix_tokens, (B, P, D))
    z0 = xp.concatenate([prefix, patch_tokens], axis=1) + pos_embed
    return z0, None


def embed_prefix_backward(dz0, num_prefix):
    """dz0 (B, P+N, D) -> (dpatch_tokens (B, N, D), dprefix (1, P, D), dpos_embed (1, P+N, D))."""
    dprefix = dz0[:, :num_prefix, :].sum(axis=0, keepdims=True)
    dpos = dz0.sum(axis=0, keepdims=True)
    return dz0[:, num_prefix:, :], dprefix, dpos


def embed_tokens_forward(patch_tokens, cls_token, pos_embed):
    """patch_tokens (B, N, D), cls_token (1, 1, D), pos_embed (1, N+1, D) -> z0 (B, N+1, D)."""
    return embed_prefix_forward(patch_tokens, cls_token, pos_embed)


def embed_tokens_backward(dz0, cache=None):
    """dz0 (B, N+1, D) -> (dpatch_tokens (B, N, D), dcls_token (1, 1, D),
    dpos_embed (1, N+1, D))."""
    return embed_prefix_backward(dz0, 1)
