"""The timm constructor arguments of a minivit config, so that minivit weights load strictly.

    import timm, safetensors.torch, minivit
    model = minivit.load("runs/nano/model.safetensors")
    tm = timm.create_model(**minivit.timm_kwargs(model.config))
    tm.load_state_dict(safetensors.torch.load_file("runs/nano/model.safetensors"), strict=True)

minivit's parameter names and shapes are timm's (``VisionTransformer``, and
``VisionTransformerDistilled`` for a distilled config); what the names do not say is how the
model pools and which GELU it uses:

    pool="token"   -> global_pool="token"
    pool="mean"    -> global_pool="avg", fc_norm=False   (the final norm before the mean, as
                                                         minivit does; timm's default for "avg"
                                                         is a norm after the mean)
    gelu="erf"     -> act_layer="gelu"       gelu="tanh" -> act_layer="gelu_tanh"
    drop_rate      -> pos_drop_rate and proj_drop_rate (timm's drop_rate is the head's dropout)

LayerNorm eps is 1e-6 on both sides (timm's ViT default).  A convolutional stem has no
constructor argument (timm builds ``HybridEmbed`` from a backbone module) and is refused.
"""

from __future__ import annotations

from minivit.models.vit_config import ViTConfig, get_config

GELU_TO_TIMM = {"erf": "gelu", "tanh": "gelu_tanh"}


def timm_model_name(cfg: ViTConfig) -> str:
    """A registered timm name whose model class fits ``cfg`` (the kwargs set every size)."""
    return ("deit_tiny_distilled_patch16_224" if cfg.distilled
            else "vit_tiny_patch16_224")


def mlp_ratio(cfg: ViTConfig) -> float:
    """timm's mlp_ratio: its MLP width is int(embed_dim * mlp_ratio), which must be mlp_dim
    (a ratio such as 100 / 192 can round down by one: then it is nudged by half a unit)."""
    ratio = cfg.mlp_dim / cfg.embed_dim
    if int(cfg.embed_dim * ratio) != cfg.mlp_dim:
        ratio = (cfg.mlp_dim + 0.5) / cfg.embed_dim
    return ratio


def timm_kwargs(config) -> dict:
    """``timm.create_model(**timm_kwargs(config))`` builds the timm model whose state dict is
    minivit's parameter dict for ``config`` (a name or a ViTConfig), names and shapes, with the
    same pooling, GELU, LayerNorm eps and dropout rates.  ValueError for a convolutional stem.
    """
    cfg = get_config(config)
    if cfg.conv_stem:
        raise ValueError("a model with a convolutional stem has no timm constructor arguments "
                         "(timm builds HybridEmbed from a backbone module); its weights load "
                         "into minivit.reference.torch_twin.TorchViT instead")
    return {"model_name": timm_model_name(cfg), "pretrained": False,
            "img_size": cfg.image_size, "patch_size": cfg.patch_size, "in_chans": cfg.in_chans,
            "num_classes": cfg.num_classes, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_heads": cfg.num_heads, "mlp_ratio": mlp_ratio(cfg), "qkv_bias": cfg.qkv_bias,
            "global_pool": "token" if cfg.pool == "token" else "avg", "fc_norm": False,
            "act_layer": GELU_TO_TIMM[cfg.gelu], "pos_drop_rate": cfg.drop_rate,
            "proj_drop_rate": cfg.drop_rate, "attn_drop_rate": cfg.attn_drop_rate,
            "drop_path_rate": cfg.drop_path_rate, "patch_drop_rate": cfg.patch_drop_rate}


__all__ = ["GELU_TO_TIMM", "mlp_ratio", "timm_kwargs", "timm_model_name"]
