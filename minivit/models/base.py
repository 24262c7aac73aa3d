"""What the model classes share: the parameter and image checks, the generator, the cache of
one forward pass, ``replica`` and ``clear_cache`` (``ModelBase``); and, for the pre-training
models (MAE, masked patch prediction), the config fields and checks of their ViT encoder
(``PretrainingConfig``); the encoder as a ViT (``PretrainingModel``) is in minivit/models/vit.py.

A subclass names its parameters with ``param_shapes(config)`` and the ViTConfig its images
must fit with ``vit_config``.

Parameters and gradients each live in one flat buffer (minivit/models/flat_params.py):
``model.params`` and ``model.grads`` are dicts of named views (timm names, the tensors'
shapes) into ``model.flat_params`` / ``model.flat_grads``.  Assigning
``model.params[k] = array`` (or ``model.params = dict``) copies into the views; a backward
pass ends with ``store_grads``, which writes every gradient into its view in one
concatenation.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from minivit.backend import array_module, is_array
from minivit.backend import rng as make_rng
from minivit.models.flat_params import FlatDict
from minivit.models.vit_config import (
    CONFIGS,
    STOCHASTIC_FIELDS,
    ViTConfig,
    config_from_dict,
    get_config,
)


def check_param_shapes(expected: dict, params: dict, what: str) -> None:
    """Raise ValueError listing every missing, unexpected or mis-shaped parameter."""
    missing = [k for k in expected if k not in params]
    unexpected = [k for k in params if k not in expected]
    shapes = [f"{k}: got {tuple(params[k].shape)}, expected {s}"
              for k, s in expected.items() if k in params and tuple(params[k].shape) != s]
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes))
    if problems:
        raise ValueError(f"{what} do not match: " + " | ".join(problems))


def check_images(images, cfg: ViTConfig, dtype, like) -> None:
    """Raise ValueError unless images are (B, C, H, W) of cfg's size, float ``dtype``, on the
    backend of the array ``like``."""
    if not is_array(images):
        raise ValueError(f"images must be a NumPy/CuPy array of shape (B, {cfg.in_chans}, "
                         f"{cfg.image_size}, {cfg.image_size}), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have 4 dimensions (B, C, H, W), got shape "
                         f"{tuple(images.shape)}")
    B, C, H, W = images.shape
    if C != cfg.in_chans:
        raise ValueError(f"images have {C} channels, expected {cfg.in_chans} "
                         f"(shape (B, C, H, W), got {tuple(images.shape)})")
    if H % cfg.patch_size or W % cfg.patch_size:
        raise ValueError(f"image size {H}x{W} is not divisible by the patch size "
                         f"{cfg.patch_size}")
    if (H, W) != (cfg.image_size, cfg.image_size):
        raise ValueError(f"images are {H}x{W}, expected {cfg.image_size}x{cfg.image_size} "
                         "(resample pos_embed with minivit.models.resample to change resolution)")
    if images.dtype.kind != "f":
        raise ValueError(f"images must be floating point ({dtype}), got dtype "
                         f"{images.dtype}; normalise uint8 pixels first "
                         "(e.g. minivit.data.normalize)")
    if images.dtype != dtype:
        raise ValueError(f"images have dtype {images.dtype}, expected the model's dtype "
                         f"{dtype}; cast with images.astype('{dtype}')")
    if array_module(images) is not array_module(like):
        raise ValueError("images and model are on different backends; move the images "
                         "with minivit.to_device")


class ModelBase:
    """params / grads: dicts of views into one flat buffer each, same keys (``grads`` is {}
    until the first backward); config: the model's config; rng: the generator of the model's
    random draws; ``_cache``: what the last forward kept for backward.

    The parameters are copied into the model's buffer (in ``param_shapes`` order, cast to the
    dtype of the first one)."""

    WHAT = "parameters"               # how error messages name the parameters

    def __init__(self, config, params: dict, seed: int = 0):
        self.check_params(config, params)
        self.config = config
        first = next(iter(params.values()))
        self.dtype = first.dtype
        self._params = FlatDict.from_arrays({k: params[k] for k in self.param_shapes(config)},
                                            self.dtype)
        self._new_grad_buffer()
        self.rng = make_rng(seed, array_module(first))
        self._cache = None

    def _new_grad_buffer(self):
        xp = array_module(self._params.flat)
        self._grad_views = FlatDict(self._params.layout,
                                    xp.zeros(self._params.layout.size, dtype=self.dtype))
        self.grads = {}

    @property
    def params(self) -> FlatDict:
        return self._params

    @params.setter
    def params(self, new: dict):
        """Copy every array of ``new`` (all the parameters, same shapes) into the buffer."""
        if new is not self._params:
            self.check_params(self.config, new)
            self._params.update(new)

    @property
    def flat_params(self):
        """The 1-D buffer that ``params`` views."""
        return self._params.flat

    @property
    def flat_grads(self):
        """The 1-D buffer that ``grads`` views (after a backward)."""
        return self._grad_views.flat

    def store_grads(self, grads: dict) -> None:
        """Write ``grads`` (every parameter's gradient, by name) into the gradient buffer;
        ``self.grads`` is then its views."""
        self._grad_views.layout.pack(grads, out=self._grad_views.flat)
        self.grads = self._grad_views

    def use_grad_buffer(self) -> FlatDict:
        """Mark the gradient buffer as filled (written directly, e.g. by a sum over
        replicas); returns ``self.grads``."""
        self.grads = self._grad_views
        return self.grads

    @staticmethod
    def param_shapes(config) -> dict:
        raise NotImplementedError

    @classmethod
    def check_params(cls, config, params: dict) -> None:
        check_param_shapes(cls.param_shapes(config), params, cls.WHAT)

    @property
    def vit_config(self) -> ViTConfig:
        return self.config

    def check_images(self, images) -> None:
        check_images(images, self.vit_config, self.dtype, self.params["cls_token"])

    def replica(self):
        """A model that shares this one's parameter buffer but keeps its own activations,
        gradient buffer and generator (one per thread in
        ``minivit.parallel.threads.DataParallel``)."""
        r = copy.copy(self)
        r._new_grad_buffer()
        r.rng = make_rng(0, array_module(self._params.flat))
        r._cache = None
        return r

    def clear_cache(self) -> None:
        """Drop the activations kept by the last forward (no backward will follow)."""
        self._cache = None

    def pop_cache(self):
        """The last forward's cache, released (each forward allows one backward)."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first "
                               "(each forward allows one backward)")
        cache, self._cache = self._cache, None
        return cache

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))


@dataclass(frozen=True)
class PretrainingConfig:
    """The encoder field of a pre-training config: a ViTConfig, a name from CONFIGS or a dict;
    a patchify encoder with no dropout, stochastic depth or patch dropout.  A subclass sets
    TASK (its name in messages), WHAT (in from_dict's) and checks its own fields in
    ``check_fields``."""
    encoder: ViTConfig = field(default_factory=lambda: CONFIGS["cifar-tiny"])

    TASK = "pre-training"
    WHAT = ""

    def __post_init__(self):
        enc = self.encoder
        object.__setattr__(self, "encoder",
                           get_config(ViTConfig.from_dict(enc) if isinstance(enc, dict) else enc))
        self.check_fields()
        if self.encoder.conv_stem:
            raise ValueError(f"{self.TASK} needs a patchify encoder (conv_stem=()): a "
                             "convolutional stem's 3x3 windows overlap the neighbouring "
                             "patches, so a visible token would see pixels of the hidden ones")
        bad = [k for k in STOCHASTIC_FIELDS if getattr(self.encoder, k)]
        if bad:
            raise ValueError(f"{self.TASK} uses no dropout, stochastic depth or patch dropout "
                             f"(it hides patches itself); set {', '.join(bad)} of the encoder to 0")

    def check_fields(self) -> None:
        pass

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "encoder": self.encoder.to_dict()}

    @classmethod
    def from_dict(cls, d: dict):
        return config_from_dict(cls, d, cls.WHAT)
