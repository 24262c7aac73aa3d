"""The convnets ``minivit train --config NAME`` can train (the teachers of a distilled ViT):
the ResNets and the airbench net, by config name.

    CONVNET_CONFIGS             name -> config (ResNetConfig or AirbenchConfig)
    get_convnet_config(name, **overrides)
    create_convnet(name, seed, dtype, **overrides)
    prepare_convnet(model, data)            what a new model does with the training images
"""

from __future__ import annotations

from minivit.backend import to_device
from minivit.data.batches import normalize
from minivit.models.airbench import AirbenchNet, create_airbench
from minivit.models.airbench_config import AIRBENCH_CONFIGS, get_airbench_config
from minivit.models.resnet import create_resnet
from minivit.models.resnet_config import RESNET_CONFIGS, get_resnet_config

CONVNET_CONFIGS = {**RESNET_CONFIGS, **AIRBENCH_CONFIGS}
WHITENING_IMAGES = 5000          # airbench: the patch covariance of the first 5,000 images


def get_convnet_config(name: str, **overrides):
    get = get_airbench_config if name in AIRBENCH_CONFIGS else get_resnet_config
    return get(name, **overrides)


def create_convnet(name: str, seed=0, dtype="float32", **overrides):
    create = create_airbench if name in AIRBENCH_CONFIGS else create_resnet
    return create(name, seed=seed, dtype=dtype, **overrides)


def prepare_convnet(model, data) -> None:
    """A new model before its first step: the airbench net sets its whitening filters from
    the first WHITENING_IMAGES training images of ``data`` (a CIFAR10Data), normalised as the
    training batches are; a ResNet does nothing."""
    if isinstance(model, AirbenchNet):
        images = normalize(data.train_x[:WHITENING_IMAGES], data.mean, data.std, model.dtype)
        model.init_whitening(to_device(images))


__all__ = ["CONVNET_CONFIGS", "create_convnet", "get_convnet_config", "prepare_convnet"]
