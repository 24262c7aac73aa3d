"""An airbench net to a model file and back (``minivit.save`` / ``minivit.load`` call these).

The file holds the parameters and the BatchNorm buffers under their PyTorch names (so it loads
into tests/torch_airbench.py's twin with ``load_state_dict(strict=True)``) and the metadata
{"format": "minivit-airbench", "minivit_airbench_config": "<AirbenchConfig as JSON>"}.
"""

from __future__ import annotations

from functools import partial

from minivit.io.convnet_files import ConvnetFile, convnet_from_arrays, save_convnet
from minivit.models.airbench import AirbenchNet
from minivit.models.airbench_config import (
    AIRBENCH_FORMAT,
    AirbenchConfig,
    airbench_buffer_shapes,
    airbench_param_shapes,
)

AIRBENCH_CONFIG_KEY = "minivit_airbench_config"
AIRBENCH_FILE = ConvnetFile("airbench", "the airbench net", AIRBENCH_FORMAT,
                            AIRBENCH_CONFIG_KEY, AirbenchConfig, AirbenchNet,
                            airbench_param_shapes, airbench_buffer_shapes, "whiten.weight")
save_airbench = partial(save_convnet, AIRBENCH_FILE)                 # (model, path)
airbench_from_arrays = partial(convnet_from_arrays, AIRBENCH_FILE)   # (arrays, meta, path, ...)


__all__ = ["AIRBENCH_CONFIG_KEY", "AIRBENCH_FILE", "airbench_from_arrays", "save_airbench"]
