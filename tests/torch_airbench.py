"""A PyTorch airbench net with minivit's module names, built for a minivit AirbenchConfig, so
that its state dict (parameters and BatchNorm buffers) has exactly minivit's names and shapes:
the norms' weight is a constant 1 outside the state dict, as in minivit.  Test modules and the
benchmark import it after ``pytest.importorskip("torch")``."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minivit.models.airbench_config import blocks


class BiasNorm(nn.BatchNorm2d):
    """BatchNorm2d whose weight is a fixed 1, not a parameter nor in the state dict."""

    def __init__(self, channels, eps, momentum):
        super().__init__(channels, eps=eps, momentum=momentum)
        del self.weight
        self.register_buffer("weight", torch.ones(channels), persistent=False)


class ConvGroup(nn.Module):
    def __init__(self, c_in, c_out, eps, momentum):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = BiasNorm(c_out, eps, momentum)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = BiasNorm(c_out, eps, momentum)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class TorchAirbench(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.whiten = nn.Conv2d(cfg.in_chans, cfg.whiten_width, cfg.whiten_kernel)
        for name, c_in, c_out in blocks(cfg):
            setattr(self, name, ConvGroup(c_in, c_out, cfg.bn_eps, cfg.bn_momentum))
        self.block_names = [name for name, _, _ in blocks(cfg)]
        self.head = nn.Linear(cfg.widths[-1], cfg.num_classes, bias=False)
        self.head_scale = cfg.head_scale

    def forward(self, x):
        x = F.gelu(self.whiten(x))
        for name in self.block_names:
            x = getattr(self, name)(x)
        x = F.max_pool2d(x, x.shape[-1]).flatten(1)
        return self.head(x) * self.head_scale


def build_torch_airbench(model, dtype=torch.float64):
    """A TorchAirbench holding a minivit AirbenchNet's parameters and buffers (strict)."""
    module = TorchAirbench(model.config).to(dtype)
    state = {k: torch.from_numpy(np.array(v)) for k, v in {**model.params,
                                                            **model.buffers}.items()}
    module.load_state_dict(state, strict=True)
    return module
