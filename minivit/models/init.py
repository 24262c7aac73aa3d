"""Parameter initialisation, as timm's ``VisionTransformer`` does it (``weight_init=''``).

* linear weights (qkv, proj, fc1, fc2, head): truncated normal, std 0.02, cut at +-2
  (timm's ``trunc_normal_(std=.02)``, whose bounds a=-2, b=2 are absolute); biases zero;
* ``pos_embed``: truncated normal, std 0.02;  ``cls_token``: normal, std 1e-6;
* ``patch_embed.proj``: PyTorch's Conv2d default, uniform(+-1/sqrt(fan_in)) for weight and bias;
* a convolutional stem's ``patch_embed.backbone.{i}.conv``: He normal, std sqrt(2 / fan_in),
  as ReLU layers need (He et al. 2015), biases zero;
* LayerNorm: weight one, bias zero;
* a distilled ViT (DeiT): ``dist_token`` and ``head_dist`` as timm's
  ``VisionTransformerDistilled``: truncated normal std 0.02 (head_dist as the head);
* the head can start at zero (``head_init="zeros"``), as for fine-tuning.

Parameters are drawn on the host with NumPy's generator and then moved to the device, so a
given seed gives the same model on NumPy and on CuPy.
"""

from minivit.backend import host_rng, host_xp, to_device
from minivit.layers.block import BLOCK_PARAM_NAMES
from minivit.layers.conv_stem import KERNEL
from minivit.limits import check_params_fit
from minivit.models.vit_config import ViTConfig


def trunc_normal(gen, shape, std=0.02, a=-2.0, b=2.0):
    """Normal(0, std) values redrawn until they lie in [a, b] (host array)."""
    out = gen.normal(0.0, std, size=shape)
    bad = (out < a) | (out > b)
    while bad.any():
        out[bad] = gen.normal(0.0, std, size=int(bad.sum()))
        bad = (out < a) | (out > b)
    return out


def param_shapes(cfg: ViTConfig) -> dict:
    """Every parameter name -> shape, in the order of timm's state dict."""
    D, N, H, K, C, P = (cfg.embed_dim, cfg.num_patches, cfg.mlp_dim, cfg.num_classes,
                        cfg.in_chans, cfg.patch_size)
    shapes = {
        "cls_token": (1, 1, D),
        "pos_embed": (1, N + cfg.num_prefix_tokens, D),
    }
    c_in = C
    for i, c_out in enumerate(cfg.conv_stem):             # the hybrid's convolutional stem
        shapes[f"patch_embed.backbone.{i}.conv.weight"] = (c_out, c_in, KERNEL, KERNEL)
        shapes[f"patch_embed.backbone.{i}.conv.bias"] = (c_out,)
        c_in = c_out
    k = 1 if cfg.conv_stem else P                          # 1x1 projection after a stem
    shapes["patch_embed.proj.weight"] = (D, c_in, k, k)
    shapes["patch_embed.proj.bias"] = (D,)
    block = {
        "norm1.weight": (D,), "norm1.bias": (D,),
        "attn.qkv.weight": (3 * D, D), "attn.qkv.bias": (3 * D,),
        "attn.proj.weight": (D, D), "attn.proj.bias": (D,),
        "norm2.weight": (D,), "norm2.bias": (D,),
        "mlp.fc1.weight": (H, D), "mlp.fc1.bias": (H,),
        "mlp.fc2.weight": (D, H), "mlp.fc2.bias": (D,),
    }
    assert tuple(block) == BLOCK_PARAM_NAMES
    for i in range(cfg.depth):
        for k, s in block.items():
            if k == "attn.qkv.bias" and not cfg.qkv_bias:
                continue
            shapes[f"blocks.{i}.{k}"] = s
    shapes.update({"norm.weight": (D,), "norm.bias": (D,), "head.weight": (K, D),
                   "head.bias": (K,)})
    if cfg.distilled:                                      # timm registers these last
        shapes.update({"dist_token": (1, 1, D), "head_dist.weight": (K, D),
                       "head_dist.bias": (K,)})
    return shapes


def init_params(cfg: ViTConfig, seed=0, dtype="float32") -> dict:
    """A fresh parameter dict {timm name: array on the active backend}."""
    np = host_xp()
    gen = host_rng(seed)
    params = {}
    shapes = param_shapes(cfg)
    check_params_fit(shapes, np.dtype(dtype).itemsize, "ViT")     # before a byte is drawn
    proj_fan_in = int(np.prod(shapes["patch_embed.proj.weight"][1:]))   # C*P*P, or C_last (stem)
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if name == "cls_token":
            w = gen.normal(0.0, 1e-6, size=shape)
        elif name in ("pos_embed", "dist_token"):
            w = trunc_normal(gen, shape)
        elif name.startswith("patch_embed.backbone."):
            fan_in = int(np.prod(shape[1:]))                 # He (Kaiming) normal before a ReLU
            w = gen.normal(0.0, (2.0 / fan_in) ** 0.5, size=shape) if leaf == "weight" \
                else np.zeros(shape)
        elif name.startswith("patch_embed.proj."):
            bound = 1.0 / proj_fan_in ** 0.5
            w = gen.uniform(-bound, bound, size=shape)
        elif name.split(".")[-2].startswith("norm"):
            w = np.ones(shape) if leaf == "weight" else np.zeros(shape)
        elif name.startswith(("head.", "head_dist.")) and cfg.head_init == "zeros":
            w = np.zeros(shape)
        elif leaf == "weight":
            w = trunc_normal(gen, shape)
        else:
            w = np.zeros(shape)
        params[name] = to_device(w, dtype)
    return params
