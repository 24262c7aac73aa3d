"""A convolutional stem in place of the patchify projection: the ViT paper's "hybrid" input.

ViT paper, section 3.1, *Hybrid Architecture*: "the input sequence can be formed from feature
maps of a CNN ... the patch embedding projection E (Eq. 1) is applied to patches extracted from
a CNN feature map.  As a special case, the patches can have spatial size 1x1".  Xiao et al.
(2021), *Early Convolutions Help Transformers See Better*, replace the P x P patchify with a few
3 x 3, stride-2 convolutions and a final 1 x 1 convolution; it costs little and makes small
ViTs train faster and more stably.

Here: len(channels) convolutions, each 3 x 3 with stride 2 and padding 1 and followed by a ReLU,
halve the image that many times, so that 2**len(channels) = P and the feature map has the same
(H/P) x (W/P) grid as P x P patches; then a 1 x 1 convolution ``patch_embed.proj`` projects
each position's features to D.  Names follow timm's ``HybridEmbed``:

    patch_embed.backbone.{i}.conv.weight (C_i, C_{i-1}, 3, 3)   .bias (C_i,)
    patch_embed.proj.weight (D, C_last, 1, 1)                    patch_embed.proj.bias (D,)
    C_{-1} = image channels
"""

from typing import NamedTuple

from minivit.layers.conv import conv2d_backward, conv2d_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.relu import relu_backward, relu_forward

KERNEL, STRIDE, PADDING = 3, 2, 1


class ConvStemCache(NamedTuple):
    convs: list           # [(ConvCache, relu mask), ...] per convolution
    proj: object          # linear cache of the 1 x 1 projection
    proj_shape: tuple     # (D, C_last, 1, 1)
    feature_shape: tuple  # (B, C_last, h, w)


def conv_stem_forward(images, convs, proj_weight, proj_bias):
    """images (B, C, H, W); convs: [(weight (C_i, C_{i-1}, 3, 3), bias (C_i,)), ...];
    proj_weight (D, C_last, 1, 1), proj_bias (D,) -> tokens (B, N, D), cache."""
    x, caches = images, []
    for weight, bias in convs:
        x, conv_cache = conv2d_forward(x, weight, bias, STRIDE, PADDING)   # (B, C_i, H/2, W/2)
        x, relu_cache = relu_forward(x)
        caches.append((conv_cache, relu_cache))
    B, C, h, w = x.shape
    features = x.transpose(0, 2, 3, 1).reshape(B, h * w, C)    # (B, N, C_last), row-major grid
    D = proj_weight.shape[0]
    tokens, lin_cache = linear_forward(features, proj_weight.reshape(D, C), proj_bias)
    return tokens, ConvStemCache(caches, lin_cache, proj_weight.shape, (B, C, h, w))


def conv_stem_backward(dtokens, cache):
    """dtokens (B, N, D) -> (dimages (B, C, H, W), [(dweight, dbias) per conv],
    dproj_weight (D, C_last, 1, 1), dproj_bias (D,))."""
    B, C, h, w = cache.feature_shape
    dfeatures, dW, dproj_bias = linear_backward(dtokens, cache.proj)       # dW: (D, C_last)
    dx = dfeatures.reshape(B, h, w, C).transpose(0, 3, 1, 2)                # (B, C_last, h, w)
    dconvs = []
    for conv_cache, relu_cache in reversed(cache.convs):
        dx = relu_backward(dx, relu_cache)
        dx, dweight, dbias = conv2d_backward(dx, conv_cache)
        dconvs.append((dweight, dbias))
    return dx, dconvs[::-1], dW.reshape(cache.proj_shape), dproj_bias
