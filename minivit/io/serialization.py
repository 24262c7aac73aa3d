"""Weights in and out: a ``VisionTransformer`` (or an optimizer's state) to a file and back.

Two formats, picked by the file's suffix:

* ``.safetensors`` (the ``safetensors`` package, a dependency): a JSON header then raw little-endian
  tensors; no code runs on load.  The config is kept in the header's metadata:
  ``{"format": "minivit", "minivit_config": "<ViTConfig as JSON>"}``.
* ``.npz`` (NumPy only): a zip of ``.npy`` arrays, always read with ``allow_pickle=False``.
  Each metadata entry ``k`` is stored as a uint8 array of UTF-8 bytes named ``__k__``
  (so the config lives in ``__minivit_config__``).

Parameter names and shapes are exactly timm's state dict (``model.params``), so a file written
here loads into a timm-named PyTorch ViT with ``load_state_dict(strict=True)``, and a state
dict saved from PyTorch (``safetensors.torch.save_file``) loads here.  Such foreign files have
no minivit metadata: give ``config=``, or let ``load`` infer it from the shapes (all but
``num_heads``, which no shape shows; pass ``num_heads=``).

A .safetensors file written here also carries ``minivit_sha256``, a SHA-256 of every tensor's
name, dtype, shape and bytes (safetensors itself has no checksum), so bytes flipped on disk
raise instead of loading silently; a file without it (from PyTorch, say) loads unchecked.
(In .npz files the zip's CRC-32 of each member does this job.)

Writes are atomic: the file is written under a temporary name in the same directory and then
renamed over the target (``os.replace``), so a crash leaves the old file as it was.  The raw
files (arrays + metadata, checksum, atomic write) are ``minivit.io.files``; the official
google-research ``.npz`` names are mapped by ``minivit.io.official_npz``.  Reads check
everything (format, keys, shapes) before a model is built, so a bad file raises and never
gives a half-loaded model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from minivit.backend import DTYPES, host_xp, resolve_dtype, to_device, to_numpy
from minivit.io import hf
from minivit.io import official_npz as convert
from minivit.io.airbench_files import airbench_from_arrays, save_airbench
from minivit.io.files import read_arrays, write_arrays
from minivit.io.resnet_files import resnet_from_arrays, save_resnet
from minivit.models.airbench import AirbenchNet
from minivit.models.airbench_config import AIRBENCH_FORMAT
from minivit.models.init import param_shapes
from minivit.models.resample import resample_pos_embed
from minivit.models.resnet import ResNet
from minivit.models.resnet_config import RESNET_FORMAT
from minivit.models.vit import VisionTransformer, check_params
from minivit.models.vit_config import ViTConfig, get_config

CONFIG_KEY = "minivit_config"
MODEL_FORMAT = "minivit"
OPTIMIZER_FORMAT = "minivit-optimizer"


# ---------------------------------------------------------------------------- models
def infer_config(shapes: dict, num_heads: int | None = None, **fields) -> ViTConfig:
    """A ViTConfig from timm parameter shapes {name: shape}.

    Read off the shapes: patch_embed.proj.weight (D, C, P, P) -> embed_dim, in_chans,
    patch_size (or, after a convolutional stem patch_embed.backbone.{i}.conv.weight, its
    channels, and P = 2**(number of convs)); pos_embed (1, N+1, D) -> image_size = sqrt(N) P;
    blocks.{i} -> depth; mlp.fc1.weight (H, D) -> mlp_dim; head.weight (K, D) -> num_classes;
    qkv bias present or not; dist_token present -> distilled (DeiT; pos_embed is then (1, N+2, D)).
    ``num_heads`` is in no shape (qkv is (3D, D) for every head count) and must be given.
    ``fields`` set the rest (pool, gelu, ...; defaults "token", "erf").
    """
    need = ["patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight", "head.weight"]
    missing = [k for k in need if k not in shapes]
    if missing:
        raise ValueError(f"cannot infer the model config: parameters {missing} are missing")
    D, C, P, P2 = shapes["patch_embed.proj.weight"]
    if P != P2:
        raise ValueError(f"non-square patches {P}x{P2} are not supported")
    # a convolutional stem: backbone.{i}.conv (C_i, C_{i-1}, 3, 3)
    stem = []
    while f"patch_embed.backbone.{len(stem)}.conv.weight" in shapes:
        stem.append(shapes[f"patch_embed.backbone.{len(stem)}.conv.weight"])
    if stem:
        if P != 1:
            raise ValueError(f"patch_embed.proj.weight is {P}x{P} after a convolutional stem; "
                             "expected a 1x1 projection")
        C, P = stem[0][1], 2 ** len(stem)
        fields = {"conv_stem": tuple(s[0] for s in stem), **fields}
    if "dist_token" in shapes:
        fields = {"distilled": True, **fields}
    n = shapes["pos_embed"][1] - 1 - ("dist_token" in shapes)
    grid = math.isqrt(max(n, 0))
    if grid * grid != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid; pass config=")
    if num_heads is None:
        raise ValueError("cannot infer num_heads from parameter shapes (attn.qkv.weight is "
                         "(3D, D) for any number of heads): pass config= (a name such as "
                         "'cifar-tiny' or a ViTConfig) or num_heads=")
    depth = convert.block_count(shapes, r"blocks\.(\d+)\.", "its parameter names")
    return ViTConfig(image_size=grid * P, patch_size=P, in_chans=C,
                     num_classes=shapes["head.weight"][0], embed_dim=D, depth=depth,
                     num_heads=num_heads, mlp_dim=shapes["blocks.0.mlp.fc1.weight"][0],
                     qkv_bias="blocks.0.attn.qkv.bias" in shapes,
                     **{"name": "inferred", **fields})


def _default_dtype(arrays: dict) -> str:
    """The file's float dtype when it is one minivit computes in, else float32."""
    names = {a.dtype.name for a in arrays.values()}
    return names.pop() if len(names) == 1 and names <= set(DTYPES) else "float32"


def write_params(path, params: dict, fmt: str, config_key: str, config: dict) -> None:
    """A model's parameters (any backend) and its config dict to ``path``, atomically.

    For the models that are not a plain ViT (MAE, masked patch prediction): the file says
    ``format=fmt`` and keeps the config as JSON under ``config_key``."""
    meta = {"format": fmt, config_key: json.dumps(config)}
    write_arrays(path, {k: to_numpy(v) for k, v in params.items()}, meta)


def read_params(path, fmt: str, config_key: str, what: str, dtype=None):
    """What ``write_params`` wrote -> (config dict, {name: host array}, dtype to load in).

    ValueError naming the file when it is not a ``what`` file (another format); FileNotFoundError
    or ValueError from the reader when it is missing, truncated or corrupt."""
    arrays, meta = read_arrays(path)
    if meta.get("format") != fmt:
        raise ValueError(f"{path}: not a minivit {what} file (format {meta.get('format')!r})")
    config = config_json(path, meta, config_key)
    return config, arrays, resolve_dtype(dtype if dtype is not None else _default_dtype(arrays))


def config_json(path, meta: dict, key: str) -> dict:
    """The JSON object stored under ``key`` in a file's metadata; ValueError naming the file
    when it is missing, not JSON, or not an object (``null``, ``5``)."""
    text = meta.get(key)
    try:
        config = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the config in the metadata ({key}) is not valid JSON ({e}); "
                         "the file is damaged: use another copy") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the config in the metadata ({key}) must be a JSON object, "
                         f"got {str(config)[:40]}; the file is damaged: use another copy")
    return config


def check_size(cfg, arrays: dict, source) -> None:
    """A compact ValueError when ``cfg`` describes far more (or fewer) tensors or values than
    the file holds (a damaged or hostile config), before the key-by-key check lists them."""
    np = host_xp()
    names = param_shapes(cfg)
    held = sum(int(np.prod(a.shape, dtype=np.int64)) for a in arrays.values())
    implied = sum(math.prod(shape) for shape in names.values())
    if abs(len(names) - len(arrays)) > 64 or implied > 64 * held + (1 << 24):
        extra = [k for k in names if k not in arrays][:3]
        raise ValueError(f"{source}: its config (depth {cfg.depth}, embed_dim {cfg.embed_dim}) "
                         f"implies {len(names)} tensors with {implied} values, the file holds "
                         f"{len(arrays)} with {held} (missing e.g. {extra}); the config does "
                         "not describe these tensors")


def build_model(arrays: dict, cfg: ViTConfig, *, source="weights", num_classes=None,
                image_size=None, resample="bicubic", dtype=None, new_head=False
                ) -> VisionTransformer:
    """Host arrays with timm names that fit ``cfg`` -> a VisionTransformer on the active backend.

    Checks every key and shape first (ValueError listing all problems, prefixed by ``source``),
    then: resamples pos_embed for another ``image_size``; with ``new_head`` replaces
    head.weight (K, D) / head.bias (K,) by zeros (K = num_classes or the file's); casts to
    ``dtype`` (default: the file's float32/float64, else float32); moves to the device.
    """
    check_size(cfg, arrays, source)
    try:
        check_params(cfg, arrays)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    np = host_xp()
    params = {k: arrays[k] for k in param_shapes(cfg)}                    # timm order
    dt = resolve_dtype(dtype if dtype is not None else _default_dtype(params))
    if image_size is not None and image_size != cfg.image_size:
        new = cfg.replace(image_size=image_size)
        params["pos_embed"] = resample_pos_embed(params["pos_embed"].astype("float64"),
                                                 new.grid_size, cfg.num_prefix_tokens,
                                                 resample)
        cfg = new
    if new_head:
        K = cfg.num_classes if num_classes is None else num_classes
        params["head.weight"] = np.zeros((K, cfg.embed_dim))
        params["head.bias"] = np.zeros((K,))
        cfg = cfg.replace(num_classes=K, head_init="zeros")
    elif num_classes is not None and num_classes != cfg.num_classes:
        raise ValueError(f"{source}: the head has {cfg.num_classes} classes, not {num_classes}; "
                         f"pass new_head=True to replace it by a zero head with {num_classes} "
                         "outputs (fine-tuning)")
    return VisionTransformer(cfg, {k: to_device(v, dt) for k, v in params.items()})


def save(model: VisionTransformer, path) -> None:
    """Write ``model.params`` (timm names and shapes) and ``model.config`` to ``path``.

    ``.safetensors`` or ``.npz`` by suffix; arrays are copied to the host; the write is atomic.
    A ResNet (minivit.models.resnet) is written with its BatchNorm buffers
    (minivit.io.resnet_files).
    """
    if isinstance(model, ResNet):
        return save_resnet(model, path)
    if isinstance(model, AirbenchNet):
        return save_airbench(model, path)
    arrays = {k: to_numpy(v) for k, v in model.params.items()}
    meta = {"format": MODEL_FORMAT, CONFIG_KEY: json.dumps(model.config.to_dict())}
    write_arrays(path, arrays, meta)


def load(path, config=None, *, num_classes=None, image_size=None, resample="bicubic",
         dtype=None, new_head=False, num_heads=None) -> VisionTransformer:
    """Read a model written by ``save``, a timm-named state dict, an official ViT ``.npz``, or
    a Hugging Face ViT checkpoint (its folder, or its model.safetensors beside config.json).

    config      : name or ViTConfig describing the file; default: the file's own config, or
                  inferred from the shapes (then ``num_heads`` is needed)
    num_classes : must equal the file's unless ``new_head=True`` (zero head with this many outputs)
    image_size  : another resolution: pos_embed is resampled (``resample``: "bicubic"/"bilinear")
    dtype       : "float32" / "float64"; default: the file's (float32 if it is neither)

    FileNotFoundError for a missing file; ValueError naming the file for a corrupt or truncated
    file, or listing every missing / unexpected / mis-shaped parameter.
    """
    kw = dict(num_classes=num_classes, image_size=image_size, resample=resample, dtype=dtype,
              new_head=new_head)
    if Path(path).is_dir():                       # a Hugging Face checkpoint folder
        arrays, cfg = hf.read_hf_folder(path, new_head=new_head)
        return build_model(arrays, get_config(config or cfg), source=path, **kw)
    arrays, meta = read_arrays(path)
    if CONFIG_KEY not in meta and hf.is_hf(arrays):   # its model.safetensors
        arrays, cfg = hf.hf_to_timm(arrays, hf.read_hf_config(Path(path).parent), source=path,
                                    new_head=new_head)
        return build_model(arrays, get_config(config or cfg), source=path, **kw)
    if meta.get("format") == OPTIMIZER_FORMAT:
        raise ValueError(f"{path}: holds optimizer state, not a model; use load_optimizer")
    if meta.get("format") == RESNET_FORMAT:
        return resnet_from_arrays(arrays, meta, path, dtype=dtype, num_classes=num_classes)
    if meta.get("format") == AIRBENCH_FORMAT:
        return airbench_from_arrays(arrays, meta, path, dtype=dtype, num_classes=num_classes)
    if CONFIG_KEY not in meta and convert.is_official(arrays):
        return build_from_official(arrays, config, source=path, **kw)
    if config is not None:
        cfg = get_config(config)
    elif CONFIG_KEY in meta:
        try:
            cfg = ViTConfig.from_dict(config_json(path, meta, CONFIG_KEY))
        except ValueError as e:
            raise ValueError(e if str(e).startswith(str(path)) else f"{path}: {e}") from None
    else:
        try:
            cfg = infer_config({k: a.shape for k, a in arrays.items()}, num_heads)
        except ValueError as e:
            raise ValueError(f"{path}: has no minivit config and {e}") from None
    return build_model(arrays, cfg, source=path, **kw)


# ---------------------------------------------------------------------------- official .npz
def build_from_official(arrays: dict, config=None, *, source="official checkpoint",
                        num_classes=None, image_size=None, resample="bicubic", dtype=None,
                        new_head=False):
    """Official arrays -> VisionTransformer (config inferred from the shapes unless given)."""
    params, heads = convert.official_to_timm(arrays, source=source, new_head=new_head)
    cfg = get_config(config) if config is not None else None
    if cfg is not None and cfg.num_heads != heads:
        raise ValueError(f"{source}: the attention kernels have {heads} heads, the config "
                         f"{cfg.name!r} says {cfg.num_heads}")
    if "head.weight" not in params:       # dropped with pre_logits: a placeholder, zeroed later
        K = num_classes if num_classes is not None else (cfg.num_classes if cfg else None)
        if K is None:
            raise ValueError(f"{source}: the head was dropped with pre_logits; pass num_classes=")
        np, D = host_xp(), params["norm.weight"].shape[0]
        params["head.weight"], params["head.bias"] = np.zeros((K, D)), np.zeros((K,))
    if cfg is None:
        try:
            cfg = infer_config({k: a.shape for k, a in params.items()}, heads, name="official")
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
    return build_model(params, cfg, source=source, num_classes=num_classes, image_size=image_size,
                       resample=resample, dtype=dtype, new_head=new_head)


def load_official_npz(path, config=None, *, num_classes=None, image_size=None, resample="bicubic",
                      dtype=None, new_head=False):
    """Read an official google-research/vision_transformer ``.npz`` -> VisionTransformer.

    config: name or ViTConfig; default inferred from the shapes (heads from the query kernel
    (D, heads, d)), with pool "token" and the exact GELU.  The other arguments are ``load``'s.
    """
    arrays, _ = read_arrays(path)
    return build_from_official(arrays, config, source=path, num_classes=num_classes,
                               image_size=image_size, resample=resample, dtype=dtype,
                               new_head=new_head)


# ---------------------------------------------------------------------------- optimizers
def save_optimizer(optimizer, path) -> None:
    """Write ``optimizer.state_dict()`` (arrays; "step" and the class name in the metadata)."""
    state = optimizer.state_dict()
    arrays = {k: to_numpy(v) for k, v in state.items() if k != "step"}
    meta = {"format": OPTIMIZER_FORMAT, "step": str(int(state["step"])),
            "optimizer": type(optimizer).__name__}
    write_arrays(path, arrays, meta)


def load_optimizer(optimizer, path, dtype=None) -> None:
    """Restore a state written by ``save_optimizer`` into ``optimizer`` (same class and names)."""
    arrays, meta = read_arrays(path)
    if meta.get("format") != OPTIMIZER_FORMAT:
        raise ValueError(f"{path}: not a minivit optimizer state file "
                         f"(format {meta.get('format')!r}); use load for model weights")
    kind = meta.get("optimizer")
    if kind != type(optimizer).__name__:
        raise ValueError(f"{path}: holds {kind} state, cannot load it into "
                         f"{type(optimizer).__name__}")
    unknown = [k for k in arrays if k.split(".", 1)[-1] not in optimizer.names]
    if unknown:
        raise ValueError(f"{path}: state for parameters the optimizer does not have: {unknown}")
    state = {k: to_device(v, dtype) for k, v in arrays.items()}
    optimizer.load_state_dict({"step": int(meta["step"]), **state})


__all__ = ["save", "load", "save_optimizer", "load_optimizer", "infer_config", "build_model",
           "build_from_official", "load_official_npz"]
