"""A ResNet to a model file and back (``minivit.save`` / ``minivit.load`` call these).

The file holds the parameters and the BatchNorm buffers under their torchvision names (so
it loads into a torchvision-named PyTorch ResNet with ``load_state_dict(strict=True)``) and the
metadata {"format": "minivit-resnet", "minivit_resnet_config": "<ResNetConfig as JSON>"}: the
format key is what tells a ResNet file from a ViT's ("minivit").
"""

from __future__ import annotations

import json

from minivit.backend import DTYPES, resolve_dtype, to_device, to_numpy
from minivit.io.files import write_arrays
from minivit.models.base import check_param_shapes
from minivit.models.resnet import ResNet
from minivit.models.resnet_config import (
    RESNET_FORMAT,
    ResNetConfig,
    resnet_buffer_shapes,
    resnet_param_shapes,
)

RESNET_CONFIG_KEY = "minivit_resnet_config"


def save_resnet(model: ResNet, path) -> None:
    """Parameters, buffers and config to .safetensors / .npz (by suffix), atomically."""
    arrays = {k: to_numpy(v) for k, v in {**model.params, **model.buffers}.items()}
    write_arrays(path, arrays, {"format": RESNET_FORMAT,
                                RESNET_CONFIG_KEY: json.dumps(model.config.to_dict())})


def scalar_buffer(name: str, array):
    """num_batches_tracked is a 0-d array; the files keep every tensor at least 1-d (1,)."""
    if name.endswith("num_batches_tracked") and array.shape == (1,):
        return array.reshape(())
    return array


def resnet_from_arrays(arrays: dict, meta: dict, path, dtype=None,
                       num_classes=None) -> ResNet:
    """What ``save_resnet`` wrote (host arrays, metadata) -> a ResNet on the active backend.
    dtype: default the file's (float32 / float64).  ValueError naming the file on a mismatch."""
    arrays = {k: scalar_buffer(k, v) for k, v in arrays.items()}
    try:
        cfg = ResNetConfig.from_dict(json.loads(meta[RESNET_CONFIG_KEY]))
        check_param_shapes({**resnet_param_shapes(cfg), **resnet_buffer_shapes(cfg)}, arrays,
                           "ResNet parameters and buffers")
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a readable minivit ResNet file ({e})") from None
    if num_classes is not None and num_classes != cfg.num_classes:
        raise ValueError(f"{path}: the ResNet has {cfg.num_classes} classes, not {num_classes}")
    stored = arrays["conv1.weight"].dtype.name
    dt = resolve_dtype(dtype if dtype is not None else
                       (stored if stored in DTYPES else "float32"))
    params = {k: to_device(arrays[k], dt) for k in resnet_param_shapes(cfg)}
    buffers = {k: to_device(arrays[k], None if k.endswith("num_batches_tracked") else dt)
               for k in resnet_buffer_shapes(cfg)}
    return ResNet(cfg, params, buffers)


__all__ = ["RESNET_CONFIG_KEY", "resnet_from_arrays", "save_resnet", "scalar_buffer"]
