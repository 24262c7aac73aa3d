"""Hugging Face transformers' ViT (``ViTForImageClassification``) <-> minivit.

    save_hf(model, "vit-hf")              # config.json + model.safetensors
    # transformers.ViTForImageClassification.from_pretrained("vit-hf") gives minivit's logits
    model = minivit.load("vit-hf")        # a folder written by save_pretrained (or by save_hf)

A checkpoint written by ``save_pretrained`` is a folder with ``config.json`` (the sizes, the
activation, ``layer_norm_eps``, the labels) and ``model.safetensors``.  Its names, against
timm's (and minivit's; D = embed_dim):

    vit.embeddings.cls_token (1, 1, D)                         -> cls_token
    vit.embeddings.position_embeddings (1, N+1, D)             -> pos_embed
    vit.embeddings.patch_embeddings.projection.{weight,bias}   -> patch_embed.proj.*
    vit.encoder.layer.{i}.
        layernorm_before.*                                     -> blocks.{i}.norm1.*
        attention.attention.{query,key,value}.weight (D, D)    -> blocks.{i}.attn.qkv.weight
                                                                  (3D, D): rows q | k | v
        attention.attention.{query,key,value}.bias (D,)        -> blocks.{i}.attn.qkv.bias
        attention.output.dense.*                               -> blocks.{i}.attn.proj.*
        layernorm_after.*                                      -> blocks.{i}.norm2.*
        intermediate.dense.*                                   -> blocks.{i}.mlp.fc1.*
        output.dense.*                                         -> blocks.{i}.mlp.fc2.*
    vit.layernorm.*                                            -> norm.*
    classifier.{weight,bias}                                   -> head.*

A ``ViTModel`` checkpoint has the same names without ``vit.``, no classifier and a pooler
(``pooler.dense``, unused by the classifier): it loads with ``new_head=True``.  transformers 5
names the modules otherwise in memory (``vit.layers.{i}.attention.q_proj``, ``mlp.fc1``, ...)
and writes the names above; a state dict saved straight from memory is read too (V5_NAMES).

What does not map one to one:

* The classifier reads the class token only: a mean-pooled (``pool="mean"``) or distilled
  (DeiT) minivit model has no ``ViTForImageClassification`` equivalent and is refused, as is a
  convolutional stem.
* ``hidden_act="gelu"`` is the exact GELU (minivit's "erf"); "gelu_pytorch_tanh" and
  "gelu_new" are the tanh approximation.
* minivit's LayerNorm eps is 1e-6 (ViT's, timm's); HF's default is 1e-12.  ``save_hf``
  writes 1e-6; reading a checkpoint with another eps warns once (logits then differ from
  transformers' by about eps / variance of the features, a few 1e-7 in practice).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from minivit.backend import host_xp, to_numpy
from minivit.io.files import read_arrays, read_json, write_arrays, write_json
from minivit.layers.layernorm import EPS as LN_EPS
from minivit.models.vit_config import MAX_SIZES, ViTConfig

HF_WEIGHTS = "model.safetensors"
HF_CONFIG = "config.json"
HF_PREPROCESSOR = "preprocessor_config.json"
GELU_TO_HF = {"erf": "gelu", "tanh": "gelu_pytorch_tanh"}
HF_TO_GELU = {"gelu": "erf", "gelu_python": "erf", "gelu_pytorch_tanh": "tanh",
              "gelu_new": "tanh", "gelu_python_tanh": "tanh"}
QKV = ("query", "key", "value")
TOP = {   # timm -> HF, outside the blocks
    "cls_token": "vit.embeddings.cls_token",
    "pos_embed": "vit.embeddings.position_embeddings",
    "patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
    "norm.weight": "vit.layernorm.weight",
    "norm.bias": "vit.layernorm.bias",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}
BLOCK = {  # timm (under blocks.{i}.) -> HF (under vit.encoder.layer.{i}.); w = weight, bias
    **{f"norm1.{w}": f"layernorm_before.{w}" for w in ("weight", "bias")},
    **{f"attn.proj.{w}": f"attention.output.dense.{w}" for w in ("weight", "bias")},
    **{f"norm2.{w}": f"layernorm_after.{w}" for w in ("weight", "bias")},
    **{f"mlp.fc1.{w}": f"intermediate.dense.{w}" for w in ("weight", "bias")},
    **{f"mlp.fc2.{w}": f"output.dense.{w}" for w in ("weight", "bias")},
}
HEAD = ("classifier.weight", "classifier.bias")
# transformers 5 names the modules differently in memory (``model.state_dict()``) and writes
# the names above to disk; a state dict saved from memory is renamed back, specific first.
V5_NAMES = [*((rf"(^|\.)layers\.(\d+)\.{re.escape(new)}\.", rf"\1encoder.layer.\2.{old}.")
              for new, old in (("attention.q_proj", "attention.attention.query"),
                               ("attention.k_proj", "attention.attention.key"),
                               ("attention.v_proj", "attention.attention.value"),
                               ("attention.o_proj", "attention.output.dense"),
                               ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"))),
            (r"(^|\.)layers\.(\d+)\.", r"\1encoder.layer.\2.")]     # layernorm_before/after
# config.json fields and transformers' ViTConfig defaults (a config.json may leave them out)
HF_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
               "intermediate_size": 3072, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
               "image_size": 224, "patch_size": 16, "num_channels": 3, "qkv_bias": True}


# ---------------------------------------------------------------------------- minivit -> HF
def check_hf_compatible(cfg: ViTConfig) -> None:
    """ValueError saying why when ``cfg`` has no ViTForImageClassification equivalent."""
    why = None
    if cfg.pool != "token":
        why = (f"the model pools by pool={cfg.pool!r}, while HF's ViTForImageClassification "
               "classifies the class token only")
    elif cfg.distilled:
        why = ("the model is distilled (DeiT: class and distillation tokens, two heads), while "
               "HF's ViTForImageClassification has one head on the class token")
    elif cfg.conv_stem:
        why = "the model has a convolutional stem; HF's ViT embeds patches with one convolution"
    if why:
        raise ValueError(f"cannot write a Hugging Face ViT: {why}; use minivit.save "
                         "(.safetensors, timm names) or the ONNX export instead")


def hf_config(cfg: ViTConfig, label_names=None, dtype: str = "float32") -> dict:
    """The config.json of ``cfg`` as ViTForImageClassification; labels "LABEL_k" unless
    ``label_names`` (one per class, distinct) are given."""
    K = cfg.num_classes
    names = list(label_names or [])
    if len(names) != K or len(set(names)) != K:
        names = [f"LABEL_{k}" for k in range(K)]
    return {"architectures": ["ViTForImageClassification"], "model_type": "vit",
            "hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.depth,
            "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.mlp_dim,
            "hidden_act": GELU_TO_HF[cfg.gelu], "layer_norm_eps": LN_EPS,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
            "image_size": cfg.image_size, "patch_size": cfg.patch_size,
            "num_channels": cfg.in_chans, "qkv_bias": cfg.qkv_bias,
            "encoder_stride": cfg.patch_size,
            "id2label": {str(k): n for k, n in enumerate(names)},
            "label2id": {n: k for k, n in enumerate(names)}, "torch_dtype": dtype}


def timm_to_hf(params: dict, cfg: ViTConfig) -> dict:
    """{timm name: array} -> {HF name: host array}: q, k, v split off the fused qkv."""
    np = host_xp()
    p = {k: to_numpy(v) for k, v in params.items()}
    D = cfg.embed_dim
    out = {hf: p[timm] for timm, hf in TOP.items()}
    for i in range(cfg.depth):
        b, o = f"vit.encoder.layer.{i}.", f"blocks.{i}."
        for j, n in enumerate(QKV):
            out[b + f"attention.attention.{n}.weight"] = p[o + "attn.qkv.weight"][j * D:(j + 1) * D]
            if cfg.qkv_bias:
                out[b + f"attention.attention.{n}.bias"] = p[o + "attn.qkv.bias"][j * D:(j + 1) * D]
        out.update({b + hf: p[o + timm] for timm, hf in BLOCK.items()})
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def preprocessor_config(cfg: ViTConfig, mean, std) -> dict:
    """preprocessor_config.json for transformers' ViTImageProcessor: what ``minivit predict``
    does to an image (bicubic resize to the model's size, /255, the training mean/std)."""
    return {"image_processor_type": "ViTImageProcessor", "do_resize": True,
            "size": {"height": cfg.image_size, "width": cfg.image_size}, "resample": 3,
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": [float(v) for v in mean], "image_std": [float(v) for v in std]}


def save_hf(model, directory, label_names=None, mean=None, std=None) -> None:
    """Write ``model`` as a transformers ViTForImageClassification folder: ``config.json``
    (sizes, GELU, layer_norm_eps 1e-6, labels: ``label_names`` or LABEL_k) and
    ``model.safetensors`` (the model's dtype); with the training ``mean`` and ``std`` also
    ``preprocessor_config.json``, so that ``transformers.pipeline("image-classification",
    directory)`` classifies image files.  ``directory`` is made if missing (not its parents).
    ValueError for a model HF's ViT cannot hold (mean-pooled, distilled, conv stem).
    """
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ViTConfig):
        raise TypeError(f"save_hf writes a Vision Transformer, got {type(model).__name__}")
    check_hf_compatible(cfg)
    arrays = timm_to_hf(model.params, cfg)
    dtype = arrays[TOP["cls_token"]].dtype.name
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{d}: exists and is not a folder; a Hugging Face checkpoint is a folder")
    if not d.parent.is_dir():
        raise FileNotFoundError(f"{d.parent}: no such folder (to write the checkpoint {d} in)")
    d.mkdir(exist_ok=True)
    write_arrays(d / HF_WEIGHTS, arrays, {"format": "pt"})      # "pt": what HF's reader wants
    write_json(d / HF_CONFIG, hf_config(cfg, label_names, dtype))
    if mean is not None and std is not None:
        write_json(d / HF_PREPROCESSOR, preprocessor_config(cfg, mean, std))


# ---------------------------------------------------------------------------- HF -> minivit
def is_hf(names) -> bool:
    """True when the names look like an HF ViT checkpoint (ViTForImageClassification/ViTModel)."""
    return any(k in ("vit.embeddings.cls_token", "embeddings.cls_token") for k in names)


def read_hf_config(folder) -> dict:
    """config.json of an HF checkpoint folder; ValueError naming it unless it is a ViT's."""
    path = Path(folder) / HF_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a Hugging Face checkpoint is a folder with "
                                f"{HF_CONFIG} and {HF_WEIGHTS}")
    hf = read_json(path)
    if not isinstance(hf, dict) or hf.get("model_type") != "vit":
        kind = hf.get("model_type") if isinstance(hf, dict) else None
        raise ValueError(f"{path}: not a Hugging Face ViT config (model_type {kind!r}, expected "
                         "'vit'); a training run's model file is RUN/model.safetensors")
    return hf


def is_hf_folder(path) -> bool:
    """True when ``path`` is a folder whose config.json says model_type "vit"."""
    try:
        return Path(path).is_dir() and read_hf_config(path) is not None
    except (OSError, ValueError):
        return False


def hf_label_names(folder) -> list | None:
    """The class names in an HF folder's config.json (id2label), or None."""
    labels = read_hf_config(folder).get("id2label")
    try:
        return [str(labels[str(k)]) for k in range(len(labels))] if labels else None
    except (KeyError, TypeError):
        return None


def hf_weights_file(folder) -> Path:
    """FOLDER/model.safetensors; FileNotFoundError naming what is there instead."""
    folder = Path(folder)
    path = folder / HF_WEIGHTS
    if not path.is_file():
        other = [n for n in ("model.safetensors.index.json", "pytorch_model.bin")
                 if (folder / n).is_file()]
        why = (f"; {other[0]} is read by transformers only: load it there and save_pretrained "
               "it again as one model.safetensors") if other else ""
        raise FileNotFoundError(f"{path} not found{why}")
    return path


def _square(value, name: str, path) -> int:
    """An int, or [n, n] as HF allows for image_size / patch_size."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{path}: {name} must be an integer (square images), got {value!r}")


def vit_config(hf: dict, num_classes: int, source) -> ViTConfig:
    """A minivit ViTConfig from an HF ViT config.json (its defaults where a field is left out)."""
    c = {**HF_DEFAULTS, **hf}
    act = c["hidden_act"]
    if act not in HF_TO_GELU:
        raise ValueError(f"{source}: hidden_act {act!r} is not a GELU minivit computes; "
                         f"expected one of {sorted(HF_TO_GELU)}")
    eps = c["layer_norm_eps"]
    if eps != LN_EPS:
        warnings.warn(f"{source}: layer_norm_eps is {eps}, minivit computes LayerNorm with "
                      f"{LN_EPS}: logits differ from transformers' by about eps / variance")
    try:
        return ViTConfig(image_size=_square(c["image_size"], "image_size", source),
                         patch_size=_square(c["patch_size"], "patch_size", source),
                         in_chans=c["num_channels"], num_classes=num_classes,
                         embed_dim=c["hidden_size"], depth=c["num_hidden_layers"],
                         num_heads=c["num_attention_heads"], mlp_dim=c["intermediate_size"],
                         qkv_bias=bool(c["qkv_bias"]), gelu=HF_TO_GELU[act], name="hf")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: config.json does not describe a ViT minivit can build "
                         f"({e})") from None


def hf_names(cfg: ViTConfig) -> list:
    """Every name of a ViTForImageClassification checkpoint for ``cfg``."""
    names = list(TOP.values())
    for i in range(cfg.depth):
        b = f"vit.encoder.layer.{i}."
        ws = ("weight", "bias") if cfg.qkv_bias else ("weight",)
        names += [b + f"attention.attention.{n}.{w}" for n in QKV for w in ws]
        names += [b + hf for hf in BLOCK.values()]
    return names


def classic_name(name: str) -> str:
    """A transformers-5 in-memory name (vit.layers.0.attention.q_proj.weight) as written to
    disk (vit.encoder.layer.0.attention.attention.query.weight); other names unchanged."""
    for pattern, classic in V5_NAMES:
        renamed = re.sub(pattern, classic, name)
        if renamed != name:
            return renamed
    return name


def hf_to_timm(arrays: dict, hf: dict, *, source="HF checkpoint", new_head=False):
    """{HF name: array} + config.json -> ({timm name: host array}, ViTConfig).

    Lists every missing and unknown name.  A checkpoint without a classifier (ViTModel) needs
    ``new_head`` (a zero head comes in its place: minivit.io.serialization.build_model)."""
    np = host_xp()
    w = {k if k.startswith(("vit.", "classifier.")) else "vit." + k: to_numpy(v)
         for k, v in arrays.items() if not re.match(r"(vit\.)?pooler\.", k)}
    w = {classic_name(k): v for k, v in w.items()}
    has_head = all(k in w for k in HEAD)
    if not has_head and not new_head:
        raise ValueError(f"{source}: has no classifier (a ViTModel checkpoint); pass "
                         "new_head=True and num_classes= to start from a zero head")
    labels = hf.get("id2label")
    K = (w[HEAD[0]].shape[0] if has_head and w[HEAD[0]].ndim == 2
         else len(labels) if isinstance(labels, dict) and labels else 1)
    cfg = vit_config(hf, min(max(K, 1), MAX_SIZES["num_classes"]), source)
    expected = hf_names(cfg)
    missing = [k for k in expected if k not in w and not (k in HEAD and not has_head)]
    unknown = [k for k in w if k not in expected]
    if missing or unknown:
        raise ValueError(f"{source}: does not match its config.json (depth {cfg.depth}, "
                         f"qkv_bias {cfg.qkv_bias}): missing {missing[:6]}"
                         f"{' ...' if len(missing) > 6 else ''}; unknown {unknown[:6]}"
                         f"{' ...' if len(unknown) > 6 else ''}")
    if not has_head:
        w[HEAD[0]] = np.zeros((K, cfg.embed_dim), dtype=w[TOP["norm.weight"]].dtype)
        w[HEAD[1]] = np.zeros((K,), dtype=w[HEAD[0]].dtype)
    out = {timm: w[hf_name] for timm, hf_name in TOP.items()}
    for i in range(cfg.depth):
        b, o = f"vit.encoder.layer.{i}.", f"blocks.{i}."
        ws = ("weight", "bias") if cfg.qkv_bias else ("weight",)
        for kind in ws:
            parts = [w[b + f"attention.attention.{n}.{kind}"] for n in QKV]
            if len({p.shape for p in parts}) != 1:
                raise ValueError(f"{source}: {b}attention.attention query, key and value "
                                 f"{kind}s differ in shape: {[p.shape for p in parts]}")
            out[o + f"attn.qkv.{kind}"] = np.concatenate(parts)
        out.update({o + timm: w[b + hf_name] for timm, hf_name in BLOCK.items()})
    return out, cfg


def read_hf_folder(folder, *, new_head=False):
    """An HF ViT checkpoint folder -> ({timm name: host array}, ViTConfig)."""
    hf = read_hf_config(folder)
    arrays, _ = read_arrays(hf_weights_file(folder))
    return hf_to_timm(arrays, hf, source=folder, new_head=new_head)


__all__ = ["HF_CONFIG", "HF_PREPROCESSOR", "HF_WEIGHTS", "check_hf_compatible", "hf_config",
           "hf_label_names", "hf_names", "hf_to_timm", "is_hf", "is_hf_folder",
           "preprocessor_config", "read_hf_config", "read_hf_folder", "save_hf", "timm_to_hf",
           "vit_config"]
