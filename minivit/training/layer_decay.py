"""Layer-wise learning-rate decay (BEiT, Bao et al. 2021; MAE's fine-tuning, He et al. 2021):
the layers near the input learn slower than those near the head.

    scales = layer_decay_scales(model.params, depth=12, decay=0.75)   # {name: lr factor}
    opt = AdamW(model.params, lr=1e-3, lr_scale=scales)               # lr * scale per tensor

A parameter's layer id follows MAE's ``util/lr_decay.py`` (timm's
``param_groups_layer_decay`` gives the same ids for a ViT): the class / distillation token,
the position embeddings and the patch embedding (a convolutional stem included) are layer 0,
``blocks.N.*`` is layer N + 1, everything else (the final norm, the heads) layer depth + 1.
Its learning rate is ``lr * decay ** (depth + 1 - layer id)``: the head and final norm keep
``lr``, the last block gets ``lr * decay``, the embeddings ``lr * decay ** (depth + 1)``.
Weight decay follows the scaled rate (``p *= 1 - lr * scale * wd``), as with PyTorch's
parameter groups, and skips the same parameters as without layer decay.
"""

from __future__ import annotations

EMBEDDING_NAMES = ("cls_token", "dist_token", "pos_embed")
EMBEDDING_PREFIX = "patch_embed."


def layer_id(name: str, depth: int) -> int:
    """0 (embeddings), N + 1 (``blocks.N.*``) or depth + 1 (the rest)."""
    if name in EMBEDDING_NAMES or name.startswith(EMBEDDING_PREFIX):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_decay_scales(names, depth: int, decay: float) -> dict | None:
    """{name: decay ** (depth + 1 - layer_id(name))} for the parameter names, or None for
    decay 1 (no layer decay: the optimizer keeps its plain update)."""
    if decay == 1:
        return None
    return {k: float(decay) ** (depth + 1 - layer_id(k, depth)) for k in names}


__all__ = ["EMBEDDING_NAMES", "layer_decay_scales", "layer_id"]
