"""The convolutional teacher: a ResNet for small images, written with minivit's own layers
(convolution by im2col, BatchNorm2d, ReLU, global average pooling, a linear head).  The
architecture, names and initialisation are in minivit/models/resnet_config.py.

Inside, the activations are channels last (B, H, W, C): the images are transposed once at the
stem and the features are pooled from NHWC, so every convolution's im2col copies rows of
contiguous channels and its matrix product gives the next layer's input without a transpose;
the ReLU after a BatchNorm runs in place on the norm's output.

It has the model API of the ViT: ``params`` / ``grads`` (torchvision names), ``forward(images,
train)``, ``backward(dlogits)``, ``replica()``, ``clear_cache()``, ``num_params()``; and, unlike
the ViT, ``buffers``: the BatchNorm running statistics, which training updates and evaluation
(train=False) uses; they are no parameters (no gradient, no optimizer state) but are saved
with the model and kept in checkpoints.

Data parallelism (minivit.parallel.threads): each thread's replica normalises its shard by that
shard's own batch statistics (as PyTorch's DistributedDataParallel without SyncBatchNorm), so
unlike the ViT a ResNet's training depends on the number of threads.  The running statistics
are updated once per step, deterministically: the replicas only record their shards'
statistics, and ``merge_replica_stats`` pools them in shard order into the statistics of the
whole batch (BatchNorm's pool_batch_stats) before the momentum update.
"""

from __future__ import annotations

from typing import NamedTuple

from minivit.backend import array_module, get_backend, host_rng, resolve_dtype
from minivit.layers.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from minivit.layers.conv import conv2d_nhwc_backward, conv2d_nhwc_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.relu import relu_backward, relu_forward
from minivit.models.base import check_images
from minivit.models.resnet_config import (
    ResNetConfig,
    get_resnet_config,
    init_resnet_buffers,
    init_resnet_params,
    resnet_buffer_shapes,
    resnet_param_shapes,
    stages,
)
from minivit.models.running_stats import RunningStatsModel


class ConvBNCache(NamedTuple):
    conv_name: str        # e.g. "layer2.0.conv1"
    bn_name: str          # e.g. "layer2.0.bn1"
    conv: object          # ConvCache
    bn: object            # BatchNormCache (with the ReLU after the norm, if any)


class BlockCache(NamedTuple):
    first: ConvBNCache    # conv1, bn1, ReLU
    second: ConvBNCache   # conv2, bn2
    shortcut: object      # ConvBNCache of downsample.0 / .1, or None (identity)
    relu: object          # ReLU cache of the residual add


class ResNetCache(NamedTuple):
    stem: ConvBNCache
    blocks: list          # BlockCache per block
    feature_shape: tuple  # (B, h, w, C) before global average pooling
    fc: object            # linear cache


class ResNet(RunningStatsModel):
    """params, grads: {torchvision name: array}; buffers: running statistics by name."""

    param_shapes = staticmethod(resnet_param_shapes)
    buffer_shapes = staticmethod(resnet_buffer_shapes)

    def __init__(self, config: ResNetConfig, params: dict, buffers: dict | None = None,
                 seed: int = 0):
        super().__init__(config, params, buffers, seed)
        self.stages = stages(config)

    def check_images(self, images) -> None:
        check_images(images, self.config, self.dtype, self.params["conv1.weight"])

    # ------------------------------------------------------------------ forward
    def _conv_bn(self, x, conv, bn, stride, padding, train, stats, relu, keep):
        """x (B, H, W, C_in) -> (B, H', W', C_out): conv (no bias), BatchNorm, ReLU if relu."""
        p, b = self.params, self.buffers
        y, conv_cache = conv2d_nhwc_forward(x, p[f"{conv}.weight"], None, stride, padding, keep)
        y, bn_cache, s = batchnorm2d_forward(y, p[f"{bn}.weight"], p[f"{bn}.bias"],
                                             b[f"{bn}.running_mean"], b[f"{bn}.running_var"],
                                             train, relu=relu)
        if s is not None:
            stats[bn] = s
        return y, ConvBNCache(conv, bn, conv_cache, bn_cache)

    def _block(self, x, prefix, stride, down, train, stats, keep):
        h, first = self._conv_bn(x, f"{prefix}.conv1", f"{prefix}.bn1", stride, 1, train,
                                 stats, True, keep)
        h, second = self._conv_bn(h, f"{prefix}.conv2", f"{prefix}.bn2", 1, 1, train, stats,
                                  False, keep)
        shortcut, sc = x, None
        if down:
            shortcut, sc = self._conv_bn(x, f"{prefix}.downsample.0", f"{prefix}.downsample.1",
                                         stride, 0, train, stats, False, keep)
        out, relu = relu_forward(h + shortcut, inplace=True)          # on the new sum
        return out, BlockCache(first, second, sc, relu)

    def forward(self, images, train=False, keep_cache=True, patch_dropout=True):
        """images (B, C, H, W) -> logits (B, num_classes).

        train=True normalises by batch statistics and updates the running statistics (a
        replica records them instead); train=False uses the running statistics.
        keep_cache=False: no backward follows.  patch_dropout: a ViT option, no effect here."""
        self.check_images(images)
        stats = {}
        x = images.transpose(0, 2, 3, 1)                                     # (B, H, W, C)
        x, stem = self._conv_bn(x, "conv1", "bn1", 1, 1, train, stats, True, keep_cache)
        blocks = []
        for prefix, _, _, stride, down in self.stages:
            x, cache = self._block(x, prefix, stride, down, train, stats, keep_cache)
            blocks.append(cache)
        pooled = x.mean(axis=(1, 2))                                          # (B, C)
        logits, fc = linear_forward(pooled, self.params["fc.weight"], self.params["fc.bias"])
        self._cache = ResNetCache(stem, blocks, x.shape, fc) if keep_cache else None
        self.finish_batch_stats(stats, train)
        return logits

    __call__ = forward

    # ------------------------------------------------------------------ backward
    def _conv_bn_backward(self, dy, c: ConvBNCache, g: dict):
        dy, g[f"{c.bn_name}.weight"], g[f"{c.bn_name}.bias"] = batchnorm2d_backward(dy, c.bn)
        dx, g[f"{c.conv_name}.weight"], _ = conv2d_nhwc_backward(dy, c.conv, need_bias=False)
        return dx

    def backward(self, dlogits):
        """dlogits (B, num_classes) -> dimages (B, C, H, W); fills ``self.grads``."""
        c = self.pop_cache()
        g = {}
        dpooled, g["fc.weight"], g["fc.bias"] = linear_backward(dlogits, c.fc)
        B, h, w, C = c.feature_shape
        xp = array_module(dlogits)
        dx = xp.broadcast_to((dpooled / (h * w))[:, None, None, :], c.feature_shape)
        for block in reversed(c.blocks):
            dsum = relu_backward(dx, block.relu)
            dh = self._conv_bn_backward(dsum, block.second, g)
            dh = self._conv_bn_backward(dh, block.first, g)
            dshort = dsum if block.shortcut is None else \
                self._conv_bn_backward(dsum, block.shortcut, g)
            dx = dh + dshort
        dimages = self._conv_bn_backward(dx, c.stem, g)                      # (B, H, W, C)
        self.store_grads(g)                                  # into the gradient buffer
        return dimages.transpose(0, 3, 1, 2)

    def __repr__(self):
        c = self.config
        return (f"ResNet({c.name}: {c.image_size}px, blocks {list(c.blocks)}, widths "
                f"{list(c.widths)}, {c.num_classes} classes, {self.num_params():,} params, "
                f"{self.dtype}, {get_backend()})")


def create_resnet(config="resnet20", seed=0, dtype="float32", **overrides) -> ResNet:
    """A freshly initialised ResNet on the active backend (config: a name or ResNetConfig)."""
    cfg = get_resnet_config(config, **overrides)
    dt = resolve_dtype(dtype)
    return ResNet(cfg, init_resnet_params(cfg, seed, dt), init_resnet_buffers(cfg, dt),
                  seed=int(host_rng(seed).integers(2**31 - 1)))



__all__ = ["ResNet", "create_resnet"]
