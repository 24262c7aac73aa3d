"""The configuration of the airbench teacher (Jordan 2024, airbench94: 94% CIFAR-10 test
accuracy in about 10 epochs), its parameter and buffer names, and its initialisation.

    whiten   2x2 convolution, no padding, 2*C*k*k = 24 filters, bias -> GELU    (B, 24, 31, 31)
    block{s} for each width w_s (64, 256, 256):
        conv1 3x3 (padding 1, no bias) -> max-pool 2x2 -> norm1 -> GELU    H, W halved
        conv2 3x3 (padding 1, no bias) -> norm2 -> GELU
    max-pool over what is left (3x3 -> 1x1 at 32 px) -> head (no bias) -> times head_scale

The whitening filters are set from the training images' patch covariance
(minivit/models/whitening.py; airbench keeps them fixed); until then they are drawn as the other
convolutions.  The BatchNorms have no weight (it stays 1) and learn only their bias; their
eps is 1e-12 and their running statistics move with momentum 0.4 (airbench's 0.6 is the share
kept).  head_scale (1/9) is the head's temperature: the logits are the linear map divided by 9.

Names are those of a PyTorch state dict of modules ``whiten``, ``block1``..``block3`` (``conv1``,
``norm1``, ``conv2``, ``norm2``) and ``head``; the norms' running statistics are buffers.

Initialisation as airbench's: convolutions and head PyTorch's default uniform(+-1/sqrt(fan_in)),
the first C_in filters of every 3x3 convolution the identity (``dirac_``: the centre tap of
channel i in filter i is 1, the rest 0), the whitening bias and the norm biases 0.

    name      widths           parameters (10 classes)
    airbench  (64, 256, 256)   1,971,640
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from minivit.backend import host_rng, host_xp, to_device
from minivit.limits import check_params_fit
from minivit.models.resnet_config import set_int_tuple
from minivit.models.running_stats import init_running_stats, running_stats_shapes
from minivit.models.vit_config import check_positive_ints, config_from_dict, named_config

AIRBENCH_FORMAT = "minivit-airbench"      # the "format" of a saved airbench file


@dataclass(frozen=True)
class AirbenchConfig:
    widths: tuple = (64, 256, 256)        # channels of each block
    whiten_kernel: int = 2                # the whitening convolution's k
    head_scale: float = 1 / 9             # logits = head(features) * head_scale
    bn_eps: float = 1e-12
    bn_momentum: float = 0.4              # PyTorch's convention: the share of the new batch
    num_classes: int = 10
    image_size: int = 32
    in_chans: int = 3
    name: str = field(default="custom", compare=False)

    # the image checks of minivit.models.base read a patch size: a convnet has none
    patch_size = 1

    def __post_init__(self):
        check_positive_ints(self, ("whiten_kernel", "num_classes", "image_size", "in_chans"),
                            "config.")
        set_int_tuple(self, "widths")
        for k in ("head_scale", "bn_eps", "bn_momentum"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"config.{k} must be a positive number, got {v!r}")
        if self.bn_momentum > 1:
            raise ValueError(f"config.bn_momentum must be at most 1, got {self.bn_momentum}")
        if self.final_size() < 1:
            raise ValueError(f"image size {self.image_size} is too small for a "
                             f"{self.whiten_kernel}x{self.whiten_kernel} whitening and "
                             f"{len(self.widths)} halvings")

    @property
    def whiten_width(self) -> int:
        return 2 * self.in_chans * self.whiten_kernel ** 2

    def final_size(self) -> int:
        """The side of the feature map before the last max-pool."""
        size = self.image_size - self.whiten_kernel + 1
        for _ in self.widths:
            size //= 2
        return size

    def replace(self, **changes) -> "AirbenchConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict) -> "AirbenchConfig":
        return config_from_dict(cls, d, "airbench ")


AIRBENCH_CONFIGS: dict[str, AirbenchConfig] = {"airbench": AirbenchConfig(name="airbench")}


def get_airbench_config(name_or_config, **overrides) -> AirbenchConfig:
    return named_config(AIRBENCH_CONFIGS, AirbenchConfig, "airbench", name_or_config, overrides)


def blocks(cfg: AirbenchConfig):
    """[(block name, c_in, c_out)] in forward order."""
    ins = (cfg.whiten_width, *cfg.widths[:-1])
    return [(f"block{s + 1}", c_in, c_out) for s, (c_in, c_out) in enumerate(zip(ins, cfg.widths))]


def norms(cfg: AirbenchConfig) -> dict:
    """Every BatchNorm's name prefix -> its channels, in forward order."""
    return {f"{b}.norm{j}": c_out for b, _, c_out in blocks(cfg) for j in (1, 2)}


def airbench_param_shapes(cfg: AirbenchConfig) -> dict:
    """Every learnable parameter name -> shape, in PyTorch's state-dict order."""
    k, w = cfg.whiten_kernel, cfg.whiten_width
    shapes = {"whiten.weight": (w, cfg.in_chans, k, k), "whiten.bias": (w,)}
    for b, c_in, c_out in blocks(cfg):
        shapes[f"{b}.conv1.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{b}.norm1.bias"] = (c_out,)
        shapes[f"{b}.conv2.weight"] = (c_out, c_out, 3, 3)
        shapes[f"{b}.norm2.bias"] = (c_out,)
    shapes["head.weight"] = (cfg.num_classes, cfg.widths[-1])
    return shapes


def airbench_buffer_shapes(cfg: AirbenchConfig) -> dict:
    """The BatchNorm running statistics: name -> shape (num_batches_tracked: an int64 ())."""
    return running_stats_shapes(norms(cfg))


def init_airbench_params(cfg: AirbenchConfig, seed=0, dtype="float32") -> dict:
    """Fresh parameters {name: array on the active backend}, drawn on the host."""
    np, gen = host_xp(), host_rng(seed)
    shapes = airbench_param_shapes(cfg)
    check_params_fit(shapes, np.dtype(dtype).itemsize, "airbench")
    params = {}
    for name, shape in shapes.items():
        if name.endswith(".weight"):                         # convolutions and the head
            bound = 1.0 / int(np.prod(shape[1:])) ** 0.5
            w = gen.uniform(-bound, bound, size=shape)
            if len(shape) == 4 and shape[2] == 3:            # identity on the first C_in filters
                c_in = shape[1]
                w[:c_in] = 0.0
                w[np.arange(min(c_in, shape[0])), np.arange(min(c_in, shape[0])), 1, 1] = 1.0
        else:                                                # whitening and norm biases
            w = np.zeros(shape)
        params[name] = to_device(w, dtype)
    return params


def init_airbench_buffers(cfg: AirbenchConfig, dtype="float32") -> dict:
    """Running mean 0, running variance 1, no batch seen yet."""
    return init_running_stats(airbench_buffer_shapes(cfg), dtype)


def count_airbench_params(cfg: AirbenchConfig) -> int:
    return sum(int(host_xp().prod(s)) for s in airbench_param_shapes(cfg).values())


__all__ = ["AIRBENCH_CONFIGS", "AIRBENCH_FORMAT", "AirbenchConfig", "airbench_buffer_shapes",
           "airbench_param_shapes", "blocks", "count_airbench_params", "get_airbench_config",
           "init_airbench_buffers", "init_airbench_params", "norms"]
