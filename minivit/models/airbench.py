"""The airbench teacher: a small VGG-like convnet for CIFAR-10 (Jordan 2024, airbench94),
written with minivit's own layers (convolution by im2col, max-pooling, BatchNorm2d, GELU, a
linear head).  The architecture, names and initialisation are in
minivit/models/airbench_config.py; the whitening of the first convolution in
minivit/models/whitening.py (``init_whitening``).

    images (B, C, H, W) -> NHWC -> whiten conv 2x2 + bias -> GELU
      -> per block: conv1 -> max-pool 2 -> norm1 -> GELU -> conv2 -> norm2 -> GELU
      -> max-pool over the remaining s x s -> (B, w_last) -> head -> * head_scale

The activations are channels last (B, H, W, C) inside.  The norms have no learnt weight (a
constant 1): only their bias is a parameter.

It has the model API of the ResNet (minivit/models/resnet.py): ``params`` / ``grads`` (PyTorch
state-dict names), ``buffers`` (the running statistics), ``forward(images, train)``,
``backward(dlogits)``, ``replica()`` and the deterministic data-parallel statistics of
minivit/models/running_stats.py.
"""

from __future__ import annotations

from typing import NamedTuple

from minivit.backend import array_module, get_backend, host_rng, resolve_dtype
from minivit.layers.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from minivit.layers.conv import conv2d_nhwc_backward, conv2d_nhwc_forward
from minivit.layers.gelu import gelu_backward, gelu_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.maxpool import maxpool2d_nhwc_backward, maxpool2d_nhwc_forward
from minivit.models.airbench_config import (
    AirbenchConfig,
    airbench_buffer_shapes,
    airbench_param_shapes,
    blocks,
    get_airbench_config,
    init_airbench_buffers,
    init_airbench_params,
)
from minivit.models.base import check_images
from minivit.models.running_stats import RunningStatsModel
from minivit.models.whitening import WHITEN_EPS, patch_whitening_weights


class NormGELUCache(NamedTuple):
    name: str             # e.g. "block2.norm1"
    norm: object          # BatchNormCache
    gelu: object          # GELUCache


class AirbenchBlockCache(NamedTuple):
    name: str             # e.g. "block2"
    conv1: object         # ConvCache
    pool: object          # MaxPoolCache
    first: NormGELUCache
    conv2: object         # ConvCache
    second: NormGELUCache


class AirbenchCache(NamedTuple):
    whiten: object        # ConvCache
    whiten_gelu: object   # GELUCache
    blocks: list          # AirbenchBlockCache per block
    pool: object          # MaxPoolCache of the last max-pool (s x s -> 1 x 1)
    head: object          # LinearCache


class AirbenchNet(RunningStatsModel):
    """params, grads: {PyTorch name: array}; buffers: running statistics by name."""

    param_shapes = staticmethod(airbench_param_shapes)
    buffer_shapes = staticmethod(airbench_buffer_shapes)

    def __init__(self, config: AirbenchConfig, params: dict, buffers: dict | None = None,
                 seed: int = 0):
        super().__init__(config, params, buffers, seed)
        self.bn_momentum = config.bn_momentum
        self.blocks = blocks(config)

    def check_images(self, images) -> None:
        check_images(images, self.config, self.dtype, self.params["whiten.weight"])

    # ------------------------------------------------------------------ forward
    def _norm_gelu(self, x, name, train, stats):
        """x (B, H, W, C) -> GELU(norm(x)): the norm with weight 1 and a learnt bias."""
        b, C = self.buffers, x.shape[-1]
        ones = array_module(x).ones(C, dtype=x.dtype)
        y, norm, s = batchnorm2d_forward(x, ones, self.params[f"{name}.bias"],
                                         b[f"{name}.running_mean"], b[f"{name}.running_var"],
                                         train, eps=self.config.bn_eps)
        if s is not None:
            stats[name] = s
        y, gelu = gelu_forward(y)
        return y, NormGELUCache(name, norm, gelu)

    def _block(self, x, name, train, stats, keep):
        p = self.params
        h, conv1 = conv2d_nhwc_forward(x, p[f"{name}.conv1.weight"], None, 1, 1, keep)
        h, pool = maxpool2d_nhwc_forward(h, 2)
        h, first = self._norm_gelu(h, f"{name}.norm1", train, stats)
        h, conv2 = conv2d_nhwc_forward(h, p[f"{name}.conv2.weight"], None, 1, 1, keep)
        h, second = self._norm_gelu(h, f"{name}.norm2", train, stats)
        return h, AirbenchBlockCache(name, conv1, pool, first, conv2, second)

    def forward(self, images, train=False, keep_cache=True, patch_dropout=True):
        """images (B, C, H, W) -> logits (B, num_classes).

        train=True normalises by batch statistics and updates the running statistics (a
        replica records them instead); train=False uses the running statistics.
        keep_cache=False: no backward follows.  patch_dropout: a ViT option, no effect here."""
        self.check_images(images)
        p, stats = self.params, {}
        x = images.transpose(0, 2, 3, 1)                                     # (B, H, W, C)
        x, whiten = conv2d_nhwc_forward(x, p["whiten.weight"], p["whiten.bias"], 1, 0,
                                        keep_cache)
        x, whiten_gelu = gelu_forward(x)
        caches = []
        for name, _, _ in self.blocks:
            x, cache = self._block(x, name, train, stats, keep_cache)
            caches.append(cache)
        x, pool = maxpool2d_nhwc_forward(x, x.shape[1])                      # (B, 1, 1, C)
        logits, head = linear_forward(x.reshape(x.shape[0], -1), p["head.weight"])
        logits *= self.config.head_scale
        self._cache = AirbenchCache(whiten, whiten_gelu, caches, pool, head) \
            if keep_cache else None
        self.finish_batch_stats(stats, train)
        return logits

    __call__ = forward

    # ------------------------------------------------------------------ backward
    @staticmethod
    def _norm_gelu_backward(dy, c: NormGELUCache, g: dict):
        dy = gelu_backward(dy, c.gelu)
        dx, _, g[f"{c.name}.bias"] = batchnorm2d_backward(dy, c.norm)      # weight: fixed 1
        return dx

    def backward(self, dlogits):
        """dlogits (B, num_classes) -> dimages (B, C, H, W); fills ``self.grads``."""
        c = self.pop_cache()
        g = {}
        dfeatures, g["head.weight"], _ = linear_backward(dlogits * self.config.head_scale,
                                                         c.head)
        B, C = dfeatures.shape
        dx = maxpool2d_nhwc_backward(dfeatures.reshape(B, 1, 1, C), c.pool)
        for b in reversed(c.blocks):
            dx = self._norm_gelu_backward(dx, b.second, g)
            dx, g[f"{b.name}.conv2.weight"], _ = conv2d_nhwc_backward(dx, b.conv2, False)
            dx = self._norm_gelu_backward(dx, b.first, g)
            dx = maxpool2d_nhwc_backward(dx, b.pool)
            dx, g[f"{b.name}.conv1.weight"], _ = conv2d_nhwc_backward(dx, b.conv1, False)
        dx = gelu_backward(dx, c.whiten_gelu)
        dimages, g["whiten.weight"], g["whiten.bias"] = conv2d_nhwc_backward(dx, c.whiten)
        self.store_grads(g)                                  # into the gradient buffer
        return dimages.transpose(0, 3, 1, 2)

    def init_whitening(self, images, eps: float = WHITEN_EPS) -> None:
        """Set the whitening filters from the patch covariance of ``images`` (B, C, H, W),
        normalised training images (airbench: the first 5,000)."""
        self.check_images(images)
        self.params["whiten.weight"] = patch_whitening_weights(
            images, self.config.whiten_kernel, eps)

    def __repr__(self):
        c = self.config
        return (f"AirbenchNet({c.name}: {c.image_size}px, widths {list(c.widths)}, "
                f"{c.num_classes} classes, {self.num_params():,} params, {self.dtype}, "
                f"{get_backend()})")


def create_airbench(config="airbench", seed=0, dtype="float32", **overrides) -> AirbenchNet:
    """A freshly initialised airbench net on the active backend (config: a name or
    AirbenchConfig); its whitening filters are set later with ``init_whitening``."""
    cfg = get_airbench_config(config, **overrides)
    dt = resolve_dtype(dtype)
    return AirbenchNet(cfg, init_airbench_params(cfg, seed, dt), init_airbench_buffers(cfg, dt),
                       seed=int(host_rng(seed).integers(2**31 - 1)))


__all__ = ["AirbenchNet", "create_airbench"]
