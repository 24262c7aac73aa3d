"""A PyTorch ResNet with torchvision's module names, built for a minivit ResNetConfig, so that
its state dict (parameters and BatchNorm buffers) has exactly minivit's names and shapes.
Test modules import it after ``pytest.importorskip("torch")``."""

import numpy as np
import torch
from torch import nn

from minivit.models.resnet_config import stages


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, down):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                        nn.BatchNorm2d(c_out)) if down else None

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.conv1 = nn.Conv2d(cfg.in_chans, cfg.widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.widths[0])
        by_stage = {}
        for prefix, c_in, c_out, stride, down in stages(cfg):
            by_stage.setdefault(prefix.split(".")[0], []).append(
                BasicBlock(c_in, c_out, stride, down))
        for name, blocks in by_stage.items():
            setattr(self, name, nn.Sequential(*blocks))
        self.stage_names = list(by_stage)
        self.fc = nn.Linear(cfg.widths[-1], cfg.num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))


def build_torch_resnet(model):
    """A float64 TorchResNet holding a minivit ResNet's parameters and buffers (strict)."""
    module = TorchResNet(model.config).double()
    state = {k: torch.from_numpy(np.array(v)) for k, v in {**model.params,
                                                            **model.buffers}.items()}
    module.load_state_dict(state, strict=True)
    return module
