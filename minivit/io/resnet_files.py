"""A ResNet to a model file and back (``minivit.save`` / ``minivit.load`` call these).

The file holds the parameters and the BatchNorm buffers under their torchvision names (so
it loads into a torchvision-named PyTorch ResNet with ``load_state_dict(strict=True)``) and the
metadata {"format": "minivit-resnet", "minivit_resnet_config": "<ResNetConfig as JSON>"}: the
format key is what tells a ResNet file from a ViT's ("minivit").
"""

from __future__ import annotations

from functools import partial

from minivit.io.convnet_files import ConvnetFile, convnet_from_arrays, save_convnet
from minivit.models.resnet import ResNet
from minivit.models.resnet_config import (
    RESNET_FORMAT,
    ResNetConfig,
    resnet_buffer_shapes,
    resnet_param_shapes,
)

RESNET_CONFIG_KEY = "minivit_resnet_config"
RESNET_FILE = ConvnetFile("ResNet", "the ResNet", RESNET_FORMAT, RESNET_CONFIG_KEY,
                          ResNetConfig, ResNet, resnet_param_shapes, resnet_buffer_shapes,
                          "conv1.weight")
save_resnet = partial(save_convnet, RESNET_FILE)                  # (model, path)
resnet_from_arrays = partial(convnet_from_arrays, RESNET_FILE)    # (arrays, meta, path, ...)


__all__ = ["RESNET_CONFIG_KEY", "RESNET_FILE", "resnet_from_arrays", "save_resnet"]
