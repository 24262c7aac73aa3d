"""A convnet with BatchNorm buffers (the ResNet, the airbench teacher) to a model file and
back: the parameters and buffers under their PyTorch names, and the metadata {"format": ...,
config key: "<the config as JSON>"}.  resnet_files.py and airbench_files.py name each kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from minivit.backend import DTYPES, resolve_dtype, to_device, to_numpy
from minivit.io.files import write_arrays
from minivit.models.base import check_param_shapes


@dataclass(frozen=True)
class ConvnetFile:
    """What tells one kind of convnet file from another, and builds its model."""
    label: str                      # in messages: "ResNet", "airbench"
    noun: str                       # "the ResNet", "the airbench net"
    format: str                     # the metadata's "format"
    config_key: str                 # the metadata key of the config's JSON
    config: type                    # its from_dict builds the config
    model: type                     # model(cfg, params, buffers)
    param_shapes: Callable
    buffer_shapes: Callable
    first_param: str                # a parameter whose dtype is the file's


def save_convnet(kind: ConvnetFile, model, path) -> None:
    """Parameters, buffers and config to .safetensors / .npz (by suffix), atomically."""
    arrays = {k: to_numpy(v) for k, v in {**model.params, **model.buffers}.items()}
    write_arrays(path, arrays, {"format": kind.format,
                                kind.config_key: json.dumps(model.config.to_dict())})


def scalar_buffer(name: str, array):
    """num_batches_tracked is a 0-d array; the files keep every tensor at least 1-d (1,)."""
    if name.endswith("num_batches_tracked") and array.shape == (1,):
        return array.reshape(())
    return array


def convnet_from_arrays(kind: ConvnetFile, arrays: dict, meta: dict, path, dtype=None,
                        num_classes=None):
    """What ``save_convnet`` wrote (host arrays, metadata) -> the model on the active backend.
    dtype: default the file's (float32 / float64).  ValueError naming the file on a mismatch."""
    arrays = {k: scalar_buffer(k, v) for k, v in arrays.items()}
    try:
        cfg = kind.config.from_dict(json.loads(meta[kind.config_key]))
        param_shapes, buffer_shapes = kind.param_shapes(cfg), kind.buffer_shapes(cfg)
        check_param_shapes({**param_shapes, **buffer_shapes}, arrays,
                           f"{kind.label} parameters and buffers")
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a readable minivit {kind.label} file ({e})") from None
    if num_classes is not None and num_classes != cfg.num_classes:
        raise ValueError(f"{path}: {kind.noun} has {cfg.num_classes} classes, not "
                         f"{num_classes}")
    stored = arrays[kind.first_param].dtype.name
    dt = resolve_dtype(dtype if dtype is not None else
                       (stored if stored in DTYPES else "float32"))
    params = {k: to_device(arrays[k], dt) for k in param_shapes}
    buffers = {k: to_device(arrays[k], None if k.endswith("num_batches_tracked") else dt)
               for k in buffer_shapes}
    return kind.model(cfg, params, buffers)


__all__ = ["ConvnetFile", "convnet_from_arrays", "save_convnet", "scalar_buffer"]
