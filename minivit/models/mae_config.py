"""The MAE's configuration, its parameters and the decoder's fixed position embedding.

``MAEConfig`` holds the encoder (a ViTConfig) and the decoder's sizes; ``mae_param_shapes``
names every parameter (the MAE reference code's names, see ``minivit/models/mae.py``) and
``init_mae_params`` initialises them; ``sincos_2d_pos_embed`` is the MAE code's
``get_2d_sincos_pos_embed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from minivit.backend import host_rng, host_xp, to_device
from minivit.layers.masking import num_kept
from minivit.models.base import PretrainingConfig
from minivit.models.init import init_params, param_shapes, trunc_normal
from minivit.models.vit_config import ViTConfig, check_positive_ints

DECODER_POS_EMBEDS = ("sincos", "learned")


# ----------------------------------------------------------------------------- config

@dataclass(frozen=True)
class MAEConfig(PretrainingConfig):
    """The encoder is a ViTConfig (or a name from CONFIGS); the decoder is narrow and shallow.

    Defaults are scaled for CIFAR (64 patches of 4x4): a 128-wide, 2-block decoder with 4
    heads, against MAE's 512-wide, 8-block decoder for ImageNet's 196 patches.
    """
    decoder_embed_dim: int = 128      # Dd
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    decoder_mlp_dim: int = 256
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    decoder_pos_embed: str = "sincos"   # "sincos" (fixed) or "learned"

    TASK = "MAE pre-training"
    WHAT = "MAE "

    def check_fields(self):
        check_positive_ints(self, ("decoder_embed_dim", "decoder_depth", "decoder_num_heads",
                                   "decoder_mlp_dim"))
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(f"decoder_embed_dim {self.decoder_embed_dim} is not divisible by "
                             f"decoder_num_heads {self.decoder_num_heads}")
        if self.decoder_pos_embed not in DECODER_POS_EMBEDS:
            raise ValueError(f"decoder_pos_embed must be one of {DECODER_POS_EMBEDS}, got "
                             f"{self.decoder_pos_embed!r}")
        if self.decoder_pos_embed == "sincos" and self.decoder_embed_dim % 4:
            raise ValueError(f"the 2-D sine-cosine embedding needs decoder_embed_dim divisible "
                             f"by 4, got {self.decoder_embed_dim}")
        if isinstance(self.mask_ratio, bool) or not 0.0 < float(self.mask_ratio) < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        num_kept(self.encoder.num_patches, self.mask_ratio)        # hides >= 1, keeps >= 1
        if self.norm_pix_loss and self.encoder.patch_dim < 2:
            raise ValueError("norm_pix_loss needs at least 2 values per patch (P*P*C >= 2)")

    def decoder_config(self) -> ViTConfig:
        """The decoder's blocks as a ViTConfig (qkv bias on, the encoder's GELU)."""
        e = self.encoder
        return ViTConfig(image_size=e.image_size, patch_size=e.patch_size, in_chans=e.in_chans,
                         num_classes=1, embed_dim=self.decoder_embed_dim,
                         depth=self.decoder_depth, num_heads=self.decoder_num_heads,
                         mlp_dim=self.decoder_mlp_dim, qkv_bias=True, gelu=e.gelu,
                         name="mae-decoder")


# ----------------------------------------------------------------------------- positions

def sincos_1d(dim: int, pos):
    """Host positions (M,) -> (M, dim): [sin(pos w_i), cos(pos w_i)], w_i = 10000^(-2i/dim)."""
    np = host_xp()
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))   # (dim/2,)
    out = np.outer(pos.reshape(-1), omega)                                          # (M, dim/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d_pos_embed(dim: int, grid_size: int, cls_token: bool = True):
    """The MAE code's ``get_2d_sincos_pos_embed``: host (1, [1+] grid^2, dim), float64.

    Half of the channels encode one grid coordinate, half the other, each with ``sincos_1d``;
    patches are in row-major order and the class token's row is zero.  (As in the reference,
    the first half uses the column index w: np.meshgrid(grid_w, grid_h) puts w first.)
    """
    np = host_xp()
    g = np.arange(grid_size, dtype=np.float64)
    w, h = np.meshgrid(g, g)                                         # each (grid, grid)
    emb = np.concatenate([sincos_1d(dim // 2, w), sincos_1d(dim // 2, h)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return emb[None]


# ----------------------------------------------------------------------------- parameters

def mae_param_shapes(cfg: MAEConfig) -> dict:
    """Every MAE parameter name -> shape: the ViT's without its head, then the decoder's."""
    shapes = {k: s for k, s in param_shapes(cfg.encoder).items() if not k.startswith("head.")}
    D, Dd, N = cfg.encoder.embed_dim, cfg.decoder_embed_dim, cfg.encoder.num_patches
    shapes["decoder_embed.weight"], shapes["decoder_embed.bias"] = (Dd, D), (Dd,)
    shapes["mask_token"] = (1, 1, Dd)
    if cfg.decoder_pos_embed == "learned":
        shapes["decoder_pos_embed"] = (1, N + 1, Dd)
    for k, s in param_shapes(cfg.decoder_config()).items():
        if k.startswith("blocks.") or k.startswith("norm."):
            shapes["decoder_" + k] = s
    shapes["decoder_pred.weight"], shapes["decoder_pred.bias"] = (cfg.encoder.patch_dim, Dd), \
        (cfg.encoder.patch_dim,)
    return shapes


def init_mae_params(cfg: MAEConfig, seed=0, dtype="float32") -> dict:
    """Encoder and decoder blocks as timm initialises a ViT (``minivit.models.init``);
    decoder_embed, decoder_pred and a learned decoder_pos_embed truncated normal 0.02, biases
    zero; mask_token normal 0.02 as in the MAE code."""
    enc = init_params(cfg.encoder, seed=seed, dtype=dtype)
    dec = init_params(cfg.decoder_config(), seed=seed + 1, dtype=dtype)
    gen = host_rng([seed, 2])
    params = {}
    for k, s in mae_param_shapes(cfg).items():
        if k in enc:
            params[k] = enc[k]
        elif k.startswith("decoder_") and k[len("decoder_"):] in dec:
            params[k] = dec[k[len("decoder_"):]]
        elif k == "mask_token":
            params[k] = to_device(gen.normal(0.0, 0.02, size=s), dtype)
        elif k.endswith(".bias"):
            params[k] = to_device(host_xp().zeros(s), dtype)
        else:
            params[k] = to_device(trunc_normal(gen, s), dtype)
    return params


