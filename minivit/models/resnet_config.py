"""The configuration of the convolutional teacher: a ResNet for small images (He et al. 2016,
section 4.2, the CIFAR-10 networks), its parameter and buffer names, and its initialisation.

    conv1 3x3 -> bn1 -> ReLU                                          (B, w_1, H, W)
    layer{s}.{j}: stage s of blocks[s] basic blocks of width widths[s]; the first block of
        every stage but the first halves H and W (stride 2) and its shortcut is a 1x1 stride-2
        convolution + BatchNorm (``downsample.0`` / ``downsample.1``)
    global average pooling -> fc                                      (B, num_classes)

A basic block:  out = ReLU(bn2(conv2(ReLU(bn1(conv1(x))))) + shortcut(x)).

    name       blocks     widths        parameters (10 classes)
    resnet8    (1, 1, 1)  (16, 32, 64)  78,042
    resnet14   (2, 2, 2)  (16, 32, 64)  175,258
    resnet20   (3, 3, 3)  (16, 32, 64)  272,474

Names are torchvision's (``conv1.weight``, ``layer1.0.bn1.running_mean``, ``fc.weight``); the
convolutions have no bias, as there.  Initialisation as torchvision's ResNet: convolutions
He normal with fan_out (``kaiming_normal_(mode="fan_out", nonlinearity="relu")``),
BatchNorm weight 1 and bias 0, ``fc`` PyTorch's Linear default uniform(+-1/sqrt(fan_in)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from minivit.backend import host_rng, host_xp, to_device
from minivit.limits import check_params_fit
from minivit.models.running_stats import init_running_stats, running_stats_shapes
from minivit.models.vit_config import check_positive_ints, config_from_dict, named_config

RESNET_FORMAT = "minivit-resnet"          # the "format" of a saved ResNet file


@dataclass(frozen=True)
class ResNetConfig:
    blocks: tuple = (3, 3, 3)             # basic blocks per stage
    widths: tuple = (16, 32, 64)          # channels per stage
    num_classes: int = 10
    image_size: int = 32
    in_chans: int = 3
    name: str = field(default="custom", compare=False)

    # the image checks of minivit.models.base read a patch size: a ResNet has none
    patch_size = 1

    def __post_init__(self):
        check_positive_ints(self, ("num_classes", "image_size", "in_chans"), "config.")
        for k in ("blocks", "widths"):
            set_int_tuple(self, k)
        if len(self.blocks) != len(self.widths):
            raise ValueError(f"config.blocks has {len(self.blocks)} stages but config.widths "
                             f"has {len(self.widths)}; expected one width per stage")
        if self.image_size % 2 ** (len(self.blocks) - 1):
            raise ValueError(f"image size {self.image_size} is not divisible by "
                             f"{2 ** (len(self.blocks) - 1)}, the downsampling of "
                             f"{len(self.blocks)} stages")

    def replace(self, **changes) -> "ResNetConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "blocks": list(self.blocks),
                "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict) -> "ResNetConfig":
        return config_from_dict(cls, d, "ResNet ")


def set_int_tuple(config, name: str) -> None:
    """Make the field ``name`` of a frozen config a tuple of positive ints (a list, or a string
    "1,2,3" from the command line, is accepted); ValueError otherwise."""
    v = getattr(config, name)
    if isinstance(v, str):
        v = tuple(int(c) for c in v.strip("[]() ").split(",") if c.strip())
    if not isinstance(v, (tuple, list)) or not v or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in v):
        raise ValueError(f"config.{name} must be a list of positive integers, got {v!r}")
    object.__setattr__(config, name, tuple(v))


RESNET_CONFIGS: dict[str, ResNetConfig] = {
    "resnet8": ResNetConfig(blocks=(1, 1, 1), name="resnet8"),
    "resnet14": ResNetConfig(blocks=(2, 2, 2), name="resnet14"),
    "resnet20": ResNetConfig(blocks=(3, 3, 3), name="resnet20"),
}


def get_resnet_config(name_or_config, **overrides) -> ResNetConfig:
    return named_config(RESNET_CONFIGS, ResNetConfig, "ResNet", name_or_config, overrides)


def stages(cfg: ResNetConfig):
    """[(block prefix, c_in, c_out, stride, has downsample)] in forward order."""
    out, c_in = [], cfg.widths[0]
    for s, (n, width) in enumerate(zip(cfg.blocks, cfg.widths)):
        for j in range(n):
            stride = 2 if (s > 0 and j == 0) else 1
            out.append((f"layer{s + 1}.{j}", c_in, width, stride, stride != 1 or c_in != width))
            c_in = width
    return out


def batchnorms(cfg: ResNetConfig) -> dict:
    """Every BatchNorm's name prefix -> its channels, in forward order."""
    bns = {"bn1": cfg.widths[0]}
    for prefix, _, c_out, _, down in stages(cfg):
        bns[f"{prefix}.bn1"] = bns[f"{prefix}.bn2"] = c_out
        if down:
            bns[f"{prefix}.downsample.1"] = c_out
    return bns


def resnet_param_shapes(cfg: ResNetConfig) -> dict:
    """Every learnable parameter name -> shape, in torchvision's state-dict order."""
    shapes = {"conv1.weight": (cfg.widths[0], cfg.in_chans, 3, 3),
              "bn1.weight": (cfg.widths[0],), "bn1.bias": (cfg.widths[0],)}
    for prefix, c_in, c_out, _, down in stages(cfg):
        shapes[f"{prefix}.conv1.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{prefix}.bn1.weight"] = shapes[f"{prefix}.bn1.bias"] = (c_out,)
        shapes[f"{prefix}.conv2.weight"] = (c_out, c_out, 3, 3)
        shapes[f"{prefix}.bn2.weight"] = shapes[f"{prefix}.bn2.bias"] = (c_out,)
        if down:
            shapes[f"{prefix}.downsample.0.weight"] = (c_out, c_in, 1, 1)
            shapes[f"{prefix}.downsample.1.weight"] = (c_out,)
            shapes[f"{prefix}.downsample.1.bias"] = (c_out,)
    shapes["fc.weight"] = (cfg.num_classes, cfg.widths[-1])
    shapes["fc.bias"] = (cfg.num_classes,)
    return shapes


def resnet_buffer_shapes(cfg: ResNetConfig) -> dict:
    """The BatchNorm running statistics: name -> shape (num_batches_tracked: an int64 ())."""
    return running_stats_shapes(batchnorms(cfg))


def init_resnet_params(cfg: ResNetConfig, seed=0, dtype="float32") -> dict:
    """Fresh parameters {name: array on the active backend}, drawn on the host."""
    np, gen = host_xp(), host_rng(seed)
    params = {}
    check_params_fit(resnet_param_shapes(cfg), np.dtype(dtype).itemsize, "ResNet")
    for name, shape in resnet_param_shapes(cfg).items():
        if len(shape) == 4:                                   # a convolution, He fan_out
            fan_out = shape[0] * shape[2] * shape[3]
            w = gen.normal(0.0, (2.0 / fan_out) ** 0.5, size=shape)
        elif name.startswith("fc."):
            bound = 1.0 / cfg.widths[-1] ** 0.5
            w = gen.uniform(-bound, bound, size=shape)
        else:                                                  # BatchNorm
            w = np.ones(shape) if name.endswith(".weight") else np.zeros(shape)
        params[name] = to_device(w, dtype)
    return params


def init_resnet_buffers(cfg: ResNetConfig, dtype="float32") -> dict:
    """Running mean 0, running variance 1, no batch seen yet."""
    return init_running_stats(resnet_buffer_shapes(cfg), dtype)


def count_resnet_params(cfg: ResNetConfig) -> int:
    return sum(int(host_xp().prod(s)) for s in resnet_param_shapes(cfg).values())


__all__ = ["RESNET_CONFIGS", "RESNET_FORMAT", "ResNetConfig", "batchnorms", "count_resnet_params",
           "get_resnet_config", "init_resnet_buffers", "init_resnet_params",
           "resnet_buffer_shapes", "resnet_param_shapes", "stages"]
