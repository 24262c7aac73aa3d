"""Model configuration: one dataclass, and the named configs of the ViT paper, timm and CIFAR.

Sizes follow Dosovitskiy et al. (2020), Table 1, and timm's ``vit_*_patch16_224``:

    name        D     depth heads  MLP     params at 224 px / 1000 classes
    vit-ti16    192   12    3      768     5,717,416
    vit-s16     384   12    6      1536    22,050,664
    vit-b16     768   12    12     3072    86,567,656
    vit-l16     1024  24    16     4096    304,326,632
    vit-h14     1280  32    16     5120    632,045,800

The CIFAR configs take 32 x 32 images in 4 x 4 patches (N = 64 tokens + class token).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

POOLS = ("token", "mean")
GELUS = ("erf", "tanh")
# the fields that make a training forward pass random (masks drawn from the model's generator)
STOCHASTIC_FIELDS = ("drop_rate", "attn_drop_rate", "drop_path_rate", "patch_drop_rate")


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 10
    embed_dim: int = 192          # D
    depth: int = 6                # L, number of encoder blocks
    num_heads: int = 3            # h; head width d = D / h
    mlp_dim: int = 768            # hidden width of the MLP
    qkv_bias: bool = True
    pool: str = "token"           # "token": class token -> head; "mean": mean of patch tokens
                                  # after the final norm (timm: global_pool="avg", fc_norm=False)
    gelu: str = "erf"             # "erf" (exact) or "tanh" (approximation)
    drop_rate: float = 0.0        # dropout after pos-embed, attn proj, MLP (timm's drop_rate)
    attn_drop_rate: float = 0.0   # dropout on the attention probabilities
    drop_path_rate: float = 0.0   # stochastic depth, linearly increasing over blocks
    patch_drop_rate: float = 0.0  # PatchDropout: share of patch tokens each training image
                                  # drops after pos-embed (layers/patch_dropout.py)
    head_init: str = "trunc_normal"  # or "zeros" (fine-tuning)
    conv_stem: tuple = ()         # () = patchify; (C_0, C_1, ...) = the hybrid: that many 3x3
                                  # stride-2 convs + ReLU, then a 1x1 projection; needs
                                  # 2**len(conv_stem) == patch_size (minivit/layers/conv_stem.py)
    distilled: bool = False       # DeiT: a distillation token beside the class token, with
                                  # its own head (head_dist) that learns from a teacher
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        check_positive_ints(self, ("image_size", "patch_size", "in_chans", "num_classes",
                                   "embed_dim", "depth", "num_heads", "mlp_dim"), "config.")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch size {self.patch_size} does not divide image size "
                             f"{self.image_size}; expected image_size % patch_size == 0")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads "
                             f"{self.num_heads}")
        if self.pool not in POOLS:
            raise ValueError(f"config.pool must be one of {POOLS}, got {self.pool!r}")
        if not isinstance(self.distilled, bool):
            raise ValueError(f"config.distilled must be true or false, got {self.distilled!r}")
        if self.distilled and self.pool != "token":
            raise ValueError("a distilled ViT reads its class and distillation tokens; it needs "
                             f"pool='token', got pool={self.pool!r}")
        if self.gelu not in GELUS:
            raise ValueError(f"config.gelu must be one of {GELUS}, got {self.gelu!r}")
        if self.head_init not in ("trunc_normal", "zeros"):
            raise ValueError("config.head_init must be 'trunc_normal' or 'zeros', "
                             f"got {self.head_init!r}")
        self._check_conv_stem()
        for k in STOCHASTIC_FIELDS:
            v = getattr(self, k)
            if not (0.0 <= float(v) < 1.0):
                raise ValueError(f"config.{k} must be in [0, 1), got {v!r}")

    def _check_conv_stem(self):
        stem = self.conv_stem
        if isinstance(stem, str):             # "64,128", as typed on a command line
            try:
                stem = tuple(int(c) for c in stem.strip("[]() ").split(",") if c.strip())
            except ValueError:
                raise ValueError(f"config.conv_stem must be channel counts such as 64,128, "
                                 f"got {self.conv_stem!r}") from None
        if not isinstance(stem, (tuple, list)) or len(stem) > 12 or not all(
                isinstance(c, int) and not isinstance(c, bool)
                and 0 < c <= MAX_CONV_STEM_CHANNELS for c in stem):
            raise ValueError(f"config.conv_stem must be a list of at most 12 positive "
                             f"channel counts up to {MAX_CONV_STEM_CHANNELS} (e.g. [64, 128]), "
                             f"got {self.conv_stem!r}"[:300])
        object.__setattr__(self, "conv_stem", tuple(stem))    # JSON gives a list
        if stem and 2 ** len(stem) != self.patch_size:
            raise ValueError(f"config.conv_stem has {len(stem)} stride-2 convolutions, which "
                             f"shrink the image {2 ** len(stem)}x, but patch_size is "
                             f"{self.patch_size}; expected patch_size == 2**len(conv_stem)")

    @property
    def num_patches(self) -> int:          # N = H W / P^2
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_prefix_tokens(self) -> int:    # class token (+ distillation token)
        return 2 if self.distilled else 1

    @property
    def grid_size(self) -> int:            # patches per side
        return self.image_size // self.patch_size

    @property
    def head_dim(self) -> int:             # d = D / h
        return self.embed_dim // self.num_heads

    @property
    def patch_dim(self) -> int:            # P * P * C
        return self.patch_size * self.patch_size * self.in_chans

    def replace(self, **changes) -> "ViTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready: conv_stem as a list (``from_dict`` makes it a tuple again)."""
        return {**dataclasses.asdict(self), "conv_stem": list(self.conv_stem)}

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        return config_from_dict(cls, d)


# Upper bounds on the sizes a config may declare (a file's metadata is a config): far above
# any real ViT (ViT-22B: D 6144, depth 48), low enough that a damaged or hostile value
# ("depth": 1000000000) is refused before anything is allocated for it.
MAX_SIZES = {"image_size": 4096, "patch_size": 4096, "in_chans": 64, "num_classes": 1_000_000,
             "embed_dim": 16384, "depth": 256, "num_heads": 1024, "mlp_dim": 65536,
             "decoder_embed_dim": 16384, "decoder_depth": 256, "decoder_num_heads": 1024,
             "decoder_mlp_dim": 65536}
MAX_CONV_STEM_CHANNELS = 16384


def check_positive_ints(config, names, prefix: str = "") -> None:
    """ValueError unless each named field of ``config`` is an int >= 1 (not a bool) and at
    most its MAX_SIZES bound."""
    for k in names:
        v = getattr(config, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{prefix}{k} must be a positive integer, got {v!r}")
        if v > MAX_SIZES.get(k, v):
            raise ValueError(f"{prefix}{k} is {v}, more than the largest supported "
                             f"({MAX_SIZES[k]}); the config is damaged or not a ViT's")


def config_from_dict(cls, d: dict, what: str = ""):
    """cls(**d) for a config dataclass, with a ValueError naming any unknown key."""
    if not isinstance(d, dict):
        raise ValueError(f"the {what}config must be a JSON object, got {type(d).__name__} "
                         f"{str(d)[:40]}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {what}config keys {unknown}; known keys: {sorted(names)}")
    try:
        return cls(**d)
    except TypeError as e:                # a field of the wrong JSON type (null for a rate)
        raise ValueError(f"bad {what}config value: {e}") from None


def _imagenet(name, dim, depth, heads, mlp, patch=16):
    return ViTConfig(image_size=224, patch_size=patch, num_classes=1000, embed_dim=dim,
                     depth=depth, num_heads=heads, mlp_dim=mlp, name=name)


CONFIGS: dict[str, ViTConfig] = {
    # ImageNet-size models of the paper / timm (224 px, 1000 classes).
    "vit-ti16": _imagenet("vit-ti16", 192, 12, 3, 768),
    "vit-s16": _imagenet("vit-s16", 384, 12, 6, 1536),
    "vit-b16": _imagenet("vit-b16", 768, 12, 12, 3072),
    "vit-l16": _imagenet("vit-l16", 1024, 24, 16, 4096),
    "vit-h14": _imagenet("vit-h14", 1280, 32, 16, 5120, patch=14),
    # CIFAR-10 models: 32 px images, 4 x 4 patches, 10 classes.
    "cifar-nano": ViTConfig(embed_dim=128, depth=6, num_heads=4, mlp_dim=256, name="cifar-nano"),
    "cifar-tiny": ViTConfig(embed_dim=192, depth=6, num_heads=3, mlp_dim=768, name="cifar-tiny"),
    "cifar-small": ViTConfig(embed_dim=384, depth=7, num_heads=6, mlp_dim=1536, name="cifar-small"),
}


def named_config(configs: dict, cls: type, kind: str, name_or_config, overrides: dict):
    """``name_or_config`` (a key of ``configs``, or a ``cls``) with its fields overridden;
    ValueError naming the ``kind`` and the known names for an unknown one."""
    if isinstance(name_or_config, cls):
        cfg = name_or_config
    elif name_or_config in configs:
        cfg = configs[name_or_config]
    else:
        raise ValueError(f"unknown {kind} config {name_or_config!r}; expected one of "
                         f"{sorted(configs)}")
    return cfg.replace(**overrides) if overrides else cfg


def get_config(name_or_config, **overrides) -> ViTConfig:
    """A named config (see CONFIGS) or a ViTConfig, with optional field overrides."""
    if isinstance(name_or_config, ViTConfig):
        cfg = name_or_config
    elif isinstance(name_or_config, str):
        if name_or_config not in CONFIGS:
            raise ValueError(f"unknown config {name_or_config!r}; "
                             f"expected one of {sorted(CONFIGS)}")
        cfg = CONFIGS[name_or_config]
    else:
        raise TypeError(f"expected a config name or ViTConfig, got {type(name_or_config).__name__}")
    return cfg.replace(**overrides) if overrides else cfg


def count_params(cfg: ViTConfig) -> int:
    """Number of parameters, from the config alone (no arrays are made)."""
    D, N, H, L = cfg.embed_dim, cfg.num_patches, cfg.mlp_dim, cfg.depth
    patch = D * cfg.patch_dim + D
    P = cfg.num_prefix_tokens
    tokens = P * D + (N + P) * D                  # cls_token (+ dist_token), pos_embed
    block = 2 * 2 * D + (3 * D * D + (3 * D if cfg.qkv_bias else 0)) + (D * D + D) \
        + (H * D + H) + (D * H + D)
    head = (cfg.num_classes * D + cfg.num_classes) * (2 if cfg.distilled else 1)
    return patch + tokens + L * block + 2 * D + head
