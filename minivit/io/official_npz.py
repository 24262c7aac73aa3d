"""The official google-research/vision_transformer ``.npz`` checkpoints (Flax names) <-> minivit.

The names and layouts only: ``minivit.io.serialization`` reads such a file into a model
(``load`` recognises one, ``load_official_npz``); ``export_official_npz`` writes one.

The JAX/Flax code names parameters by module path and stores Dense kernels as (in, out) and the
patch-embedding convolution as (P, P, C, D) (HWIO); timm (and minivit) use PyTorch's (out, in)
and (D, C, P, P).  Attention keeps the heads as a separate axis.  The map, as timm's
``_load_weights`` does it (D = embed_dim, h = heads, d = D / h, H = mlp_dim, K = classes):

    embedding/kernel (P, P, C, D)            -> patch_embed.proj.weight (D, C, P, P):
                                                transpose(3, 2, 0, 1)
    embedding/bias (D,)                      -> patch_embed.proj.bias
    cls (1, 1, D)                            -> cls_token
    Transformer/posembed_input/pos_embedding -> pos_embed (1, N+1, D)
    Transformer/encoderblock_{i}/
        LayerNorm_0/scale, bias              -> blocks.{i}.norm1.weight, bias
        MultiHeadDotProductAttention_1/
            {query,key,value}/kernel (D, h, d) -> attn.qkv.weight (3D, D): each reshaped to
                                                  (D, D), transposed, stacked q | k | v
            {query,key,value}/bias (h, d)    -> attn.qkv.bias (3D,)
            out/kernel (h, d, D)             -> attn.proj.weight (D, D) = kernel.reshape(D, D).T
            out/bias (D,)                    -> attn.proj.bias
        LayerNorm_2/scale, bias              -> blocks.{i}.norm2.weight, bias
        MlpBlock_3/Dense_0/kernel (D, H)     -> mlp.fc1.weight (H, D) = kernel.T  (+ bias)
        MlpBlock_3/Dense_1/kernel (H, D)     -> mlp.fc2.weight (D, H) = kernel.T  (+ bias)
    Transformer/encoder_norm/scale, bias     -> norm.weight, bias
    head/kernel (D, K), head/bias (K,)       -> head.weight (K, D) = kernel.T, head.bias

Checkpoints saved from a training state have every name under ``opt/target/``.  ImageNet-21k
pre-training checkpoints also have a ``pre_logits`` (representation) layer, D -> D + tanh, that
minivit's ViT (like timm's default) does not have: it is dropped together with the head when
``new_head=True`` (fine-tuning, as in "How to train your ViT?"), and refused otherwise.

Not in the file, so not inferred: pool (default "token") and the GELU.  Note that Flax's
``nn.gelu`` is the tanh approximation by default, while timm runs these weights with the exact
(erf) GELU; minivit defaults to "erf" like timm - pass a config with ``gelu="tanh"`` to follow
the JAX models exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

from minivit.backend import host_xp, to_numpy
from minivit.io.files import write_arrays
from minivit.models.vit_config import MAX_SIZES

PREFIX = "opt/target/"
QKV = ("query", "key", "value")
MHA = "MultiHeadDotProductAttention_1/"
PRE_LOGITS = ("pre_logits/kernel", "pre_logits/bias")
HEAD = ("head/kernel", "head/bias")
TOP = {   # official -> timm, outside the blocks (2-D kernels are transposed)
    "embedding/bias": "patch_embed.proj.bias",
    "cls": "cls_token",
    "Transformer/posembed_input/pos_embedding": "pos_embed",
    "Transformer/encoder_norm/scale": "norm.weight",
    "Transformer/encoder_norm/bias": "norm.bias",
    "head/kernel": "head.weight",
    "head/bias": "head.bias",
}
BLOCK = {  # official (under Transformer/encoderblock_{i}/) -> timm (under blocks.{i}.)
    "LayerNorm_0/scale": "norm1.weight", "LayerNorm_0/bias": "norm1.bias",
    MHA + "out/bias": "attn.proj.bias",
    "LayerNorm_2/scale": "norm2.weight", "LayerNorm_2/bias": "norm2.bias",
    "MlpBlock_3/Dense_0/kernel": "mlp.fc1.weight", "MlpBlock_3/Dense_0/bias": "mlp.fc1.bias",
    "MlpBlock_3/Dense_1/kernel": "mlp.fc2.weight", "MlpBlock_3/Dense_1/bias": "mlp.fc2.bias",
}


def official_names(depth: int) -> list:
    """Every name of an official ViT checkpoint with ``depth`` blocks (no pre_logits)."""
    names = ["embedding/kernel", *TOP]
    for i in range(depth):
        b = f"Transformer/encoderblock_{i}/"
        names += [b + MHA + f"{n}/{w}" for n in QKV + ("out",) for w in ("kernel", "bias")]
        names += [b + k for k in BLOCK if k != MHA + "out/bias"]
    return names


def is_official(names) -> bool:
    """True when the names look like an official (Flax) ViT checkpoint."""
    return any(k.removeprefix(PREFIX) == "embedding/kernel" for k in names)


def block_count(names, pattern: str, source) -> int:
    """The number of blocks named by ``pattern`` (one group: the index); ValueError naming a
    few of them unless the indices are 0, 1, ..., depth - 1 with depth <= MAX_SIZES["depth"]
    (a key "encoderblock_999999999" must not make a billion names)."""
    ids = sorted({int(m.group(1)) for k in names if (m := re.match(pattern, k))})
    if ids != list(range(len(ids))) or len(ids) > MAX_SIZES["depth"]:
        odd = [i for j, i in enumerate(ids) if i != j][:3] or ids[MAX_SIZES["depth"]:][:3]
        raise ValueError(f"{source}: block indices must run 0..depth-1 (depth at most "
                         f"{MAX_SIZES['depth']}); the file has {len(ids)} blocks, among them "
                         f"index {odd}: the file is damaged or not a ViT checkpoint")
    return len(ids)


def official_to_timm(arrays: dict, *, source="official checkpoint", new_head=False):
    """{official name: array} -> ({timm name: array}, num_heads) on the host.

    Refuses unknown names and lists every missing one.  With ``new_head`` the head (and a
    ``pre_logits`` layer, which is refused otherwise) may be absent and is left out.
    """
    np = host_xp()
    w = {k.removeprefix(PREFIX): to_numpy(v) for k, v in arrays.items()}
    depth = block_count(w, r"Transformer/encoderblock_(\d+)/", source)
    has_pre_logits = any(k in w for k in PRE_LOGITS)
    if has_pre_logits and not new_head:
        raise ValueError(f"{source}: has a pre_logits (representation) layer, which minivit's ViT "
                         "does not have; pass new_head=True (and num_classes=) to drop it with the "
                         "head and start from a zero head, as for fine-tuning")
    expected = official_names(depth)
    optional = set(HEAD) if new_head else set()
    missing = [k for k in expected if k not in w and k not in optional]
    unknown = [k for k in w if k not in expected and k not in PRE_LOGITS]
    if missing or unknown or depth == 0:
        raise ValueError(f"{source}: not an official ViT checkpoint minivit can read: "
                         f"missing keys {missing}; unknown keys {unknown}")
    if has_pre_logits:                    # new_head: both go, a zero head comes later
        w = {k: v for k, v in w.items() if k not in PRE_LOGITS + HEAD}

    c = np.ascontiguousarray

    def t(a):                             # Dense kernel (in, out) -> Linear weight (out, in)
        return c(a.T) if a.ndim == 2 else a

    out = {"patch_embed.proj.weight": c(w["embedding/kernel"].transpose(3, 2, 0, 1))}
    out.update({timm: t(w[k]) for k, timm in TOP.items() if k in w})
    for i in range(depth):
        b, o = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        q, k, v = (w[b + MHA + f"{n}/kernel"] for n in QKV)                 # (D, h, d) each
        if q.ndim != 3:
            raise ValueError(f"{source}: {b + MHA}query/kernel has shape {q.shape}, "
                             "expected (D, heads, d)")
        out[o + "attn.qkv.weight"] = np.concatenate([x.reshape(len(x), -1).T for x in (q, k, v)])
        out[o + "attn.qkv.bias"] = np.concatenate([w[b + MHA + f"{n}/bias"].ravel() for n in QKV])
        proj = w[b + MHA + "out/kernel"]                                    # (h, d, D)
        out[o + "attn.proj.weight"] = c(proj.reshape(-1, proj.shape[-1]).T)
        out.update({o + timm: t(w[b + k]) for k, timm in BLOCK.items()})
    return out, int(q.shape[1])


def timm_to_official(params: dict, num_heads: int) -> dict:
    """{timm name: array} -> {official name: host array}; the inverse of ``official_to_timm``.

    A model without qkv biases gets zero biases (the official layout always has them)."""
    if any(k.startswith("patch_embed.backbone.") for k in params):
        raise ValueError("a model with a convolutional stem (conv_stem) has no official .npz "
                         "layout (the official hybrids use a ResNet); save it with minivit.save "
                         "(.safetensors or .npz with timm names) instead")
    np = host_xp()
    c = np.ascontiguousarray
    p = {k: to_numpy(v) for k, v in params.items()}
    D = p["norm.weight"].shape[0]
    h, d = num_heads, D // num_heads

    def t(name, a):                       # Linear weight (out, in) -> Dense kernel (in, out)
        return c(a.T) if name.endswith("kernel") else a

    w = {"embedding/kernel": c(p["patch_embed.proj.weight"].transpose(2, 3, 1, 0))}
    w.update({k: t(k, p[timm]) for k, timm in TOP.items()})
    for i in range(sum(k.endswith(".norm1.weight") for k in p)):
        b, o = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        qkv_w = p[o + "attn.qkv.weight"]                                    # (3D, D)
        qkv_b = p.get(o + "attn.qkv.bias", np.zeros(3 * D, dtype=qkv_w.dtype))
        for j, n in enumerate(QKV):
            w[b + MHA + f"{n}/kernel"] = c(qkv_w[j * D:(j + 1) * D].T).reshape(D, h, d)
            w[b + MHA + f"{n}/bias"] = qkv_b[j * D:(j + 1) * D].reshape(h, d)
        w[b + MHA + "out/kernel"] = c(p[o + "attn.proj.weight"].T).reshape(h, d, D)
        w.update({b + k: t(k, p[o + timm]) for k, timm in BLOCK.items()})
    return w


def export_official_npz(model, path) -> None:
    """Write ``model`` as an official-layout ``.npz`` (Flax names only; atomic write).

    The layout has no place for pool or GELU kind: pass the config again when loading a model
    that is not pool="token", gelu="erf".
    """
    if Path(path).suffix.lower() != ".npz":
        raise ValueError(f"{path}: the official layout is a .npz file")
    write_arrays(path, timm_to_official(model.params, model.config.num_heads), {})


__all__ = ["export_official_npz", "official_to_timm", "timm_to_official",
           "is_official", "official_names"]
