"""The patch embedding: ViT equation (1), z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos.

This file does the x_p^i E part: cut the image into patches and project each flattened patch
(P*P*C values) to D dimensions with one shared linear map E, plus a bias.  The weight is stored
as timm stores it, as a convolution kernel ``patch_embed.proj.weight`` of shape (D, C, P, P):
a stride-P convolution with a P x P kernel is exactly this projection (tests/layers/test_layers.py
checks it against a direct convolution).
"""

from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.patches import patchify_backward, patchify_forward


def _kernel_as_matrix(weight):
    """(D, C, P, P) -> (D, P*P*C), columns in patchify's (row, column, channel) order."""
    D = weight.shape[0]
    return weight.transpose(0, 2, 3, 1).reshape(D, -1)


def patch_embed_forward(images, weight, bias):
    """images (B, C, H, W), weight (D, C, P, P), bias (D,) -> (tokens (B, N, D), cache)."""
    patches, patch_cache = patchify_forward(images, weight.shape[2])   # (B, N, P*P*C)
    tokens, lin_cache = linear_forward(patches, _kernel_as_matrix(weight), bias)
    return tokens, (lin_cache, weight.shape, patch_cache)


def patch_embed_backward(dtokens, cache):
    """dtokens (B, N, D) -> (dimages (B, C, H, W), dweight (D, C, P, P), dbias (D,))."""
    lin_cache, (D, C, P, _), patch_cache = cache
    dpatches, dW, dbias = linear_backward(dtokens, lin_cache)      # dW: (D, P*P*C)
    dweight = dW.reshape(D, P, P, C).transpose(0, 3, 1, 2)         # back to (D, C, P, P)
    dimages = patchify_backward(dpatches, patch_cache)
    return dimages, dweight, dbias
