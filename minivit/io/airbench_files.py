"""An airbench net to a model file and back (``minivit.save`` / ``minivit.load`` call these).

The file holds the parameters and the BatchNorm buffers under their PyTorch names (so it loads
into tests/torch_airbench.py's twin with ``load_state_dict(strict=True)``) and the metadata
{"format": "minivit-airbench", "minivit_airbench_config": "<AirbenchConfig as JSON>"}.
"""

from __future__ import annotations

import json

from minivit.backend import DTYPES, resolve_dtype, to_device, to_numpy
from minivit.io.files import write_arrays
from minivit.io.resnet_files import scalar_buffer
from minivit.models.airbench import AirbenchNet
from minivit.models.airbench_config import (
    AIRBENCH_FORMAT,
    AirbenchConfig,
    airbench_buffer_shapes,
    airbench_param_shapes,
)
from minivit.models.base import check_param_shapes

AIRBENCH_CONFIG_KEY = "minivit_airbench_config"


def save_airbench(model: AirbenchNet, path) -> None:
    """Parameters, buffers and config to .safetensors / .npz (by suffix), atomically."""
    arrays = {k: to_numpy(v) for k, v in {**model.params, **model.buffers}.items()}
    write_arrays(path, arrays, {"format": AIRBENCH_FORMAT,
                                AIRBENCH_CONFIG_KEY: json.dumps(model.config.to_dict())})


def airbench_from_arrays(arrays: dict, meta: dict, path, dtype=None,
                         num_classes=None) -> AirbenchNet:
    """What ``save_airbench`` wrote (host arrays, metadata) -> an AirbenchNet on the active
    backend.  dtype: default the file's.  ValueError naming the file on a mismatch."""
    arrays = {k: scalar_buffer(k, v) for k, v in arrays.items()}
    try:
        cfg = AirbenchConfig.from_dict(json.loads(meta[AIRBENCH_CONFIG_KEY]))
        check_param_shapes({**airbench_param_shapes(cfg), **airbench_buffer_shapes(cfg)},
                           arrays, "airbench parameters and buffers")
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a readable minivit airbench file ({e})") from None
    if num_classes is not None and num_classes != cfg.num_classes:
        raise ValueError(f"{path}: the airbench net has {cfg.num_classes} classes, not "
                         f"{num_classes}")
    stored = arrays["whiten.weight"].dtype.name
    dt = resolve_dtype(dtype if dtype is not None else
                       (stored if stored in DTYPES else "float32"))
    params = {k: to_device(arrays[k], dt) for k in airbench_param_shapes(cfg)}
    buffers = {k: to_device(arrays[k], None if k.endswith("num_batches_tracked") else dt)
               for k in airbench_buffer_shapes(cfg)}
    return AirbenchNet(cfg, params, buffers)


__all__ = ["AIRBENCH_CONFIG_KEY", "airbench_from_arrays", "save_airbench"]
