"""Masked patch prediction: the ViT paper's self-supervised objective (Dosovitskiy et al. 2021,
section 4.6 and appendix B.1.2), BERT's masked language modelling for patches.

"We corrupt 50% of patch embeddings by either replacing their embeddings with a learnable
[mask] embedding (80%), a random other patch embedding (10%) or just keeping them as is (10%)
... Finally we predict the 3-bit, mean color (i.e., 512 colors in total) of every corrupted
patch using their respective patch representations."

Shapes: B images, N patches, M = round(N * corrupt_ratio) corrupted per image, D width,
K = 2^(bits * C) colour classes (512 for 3 bits and RGB).

    x    = patches(images) E                               (B, N, D)   patch embeddings
    x'   = corrupt(x): mask_token / x_src / x              (B, N, D)   layers/masking.py
    z    = [x_class; x'] + E_pos -> blocks -> LN            (B, N+1, D)  the ViT encoder
    h    = z[1:][corrupted]                                (B, M, D)
    s    = h W_mpp^T + b                                   (B, M, K)   ``mpp_head``
    L    = cross_entropy(s, colour class of each corrupted patch)   mean over the B*M patches

Which patches: exactly M per image, the lowest-noise ones of uniform noise (the masking of
``layers/masking.py``); what happens to each: a uniform draw u, mask token if u < 0.8, a random
other patch if 0.8 <= u < 0.9, unchanged otherwise.  The "random other patch" is drawn
uniformly from the other B*N - 1 patch embeddings of the batch (any image, any position).

Colour classes and the loss: ``layers/color_prediction.py``.  Targets are constants: the
gradient reaches the images only through the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from minivit.backend import array_module, host_rng, host_xp, resolve_dtype, to_device
from minivit.layers.color_prediction import mean_color_targets, patch_ce_backward, patch_ce_forward
from minivit.layers.encoder import encoder_backward, encoder_forward, stack_grads, stack_params
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.masking import (
    corrupt_tokens_backward,
    corrupt_tokens_forward,
    gather_tokens_backward,
    gather_tokens_forward,
    num_kept,
    random_masking,
)
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward
from minivit.layers.tokens import embed_tokens_backward, embed_tokens_forward
from minivit.models.base import PretrainingConfig
from minivit.models.init import init_params, param_shapes, trunc_normal
from minivit.models.vit import PretrainingModel
from minivit.models.vit_config import get_config

MPP_FORMAT = "minivit-mpp"
MPP_CONFIG_KEY = "minivit_mpp_config"


@dataclass(frozen=True)
class MPPConfig(PretrainingConfig):
    corrupt_ratio: float = 0.5        # share of patches corrupted (exactly round(N * ratio))
    mask_token_prob: float = 0.8      # of those: replaced by the mask token
    random_patch_prob: float = 0.1    # ... by a random other patch; the rest stay as they are
    color_bits: int = 3               # per channel: 2^(3*3) = 512 classes

    TASK = "masked patch prediction"
    WHAT = "MPP "

    def check_fields(self):
        if isinstance(self.corrupt_ratio, bool) or not 0 < float(self.corrupt_ratio) < 1:
            raise ValueError(f"corrupt_ratio must be in (0, 1), got {self.corrupt_ratio!r}")
        num_kept(self.encoder.num_patches, self.corrupt_ratio)      # corrupts >= 1, keeps >= 1
        p, q = self.mask_token_prob, self.random_patch_prob
        if not (0 <= p <= 1 and 0 <= q <= 1 and p + q <= 1):
            raise ValueError(f"mask_token_prob {p} and random_patch_prob {q} must be >= 0 "
                             "with a sum <= 1")
        if not isinstance(self.color_bits, int) or not 1 <= self.color_bits <= 4:
            raise ValueError(f"color_bits must be an integer in [1, 4], got {self.color_bits!r}")

    @property
    def num_colors(self) -> int:
        return 2 ** (self.color_bits * self.encoder.in_chans)


def draw_corruption(rng, batch, num_patches, dtype="float64"):
    """The random numbers of one corruption: noise, choice (B, N) uniform; src (B, N) a
    uniform other patch of the batch (flat index into B*N, never the patch itself)."""
    n = batch * num_patches
    if n < 2:
        raise ValueError("masked patch prediction needs at least 2 patches in a batch")
    noise = rng.random((batch, num_patches), dtype=dtype)
    xp = array_module(noise)
    choice = rng.random((batch, num_patches), dtype=dtype)
    j = rng.integers(0, n - 1, size=(batch, num_patches))
    own = xp.arange(n).reshape(batch, num_patches)
    return {"noise": noise, "choice": choice, "src": j + (j >= own)}


def corruption(draws, cfg: MPPConfig):
    """-> (ids_corrupt (B, M) in rising-noise order, corrupted (B, N), replace_token (B, N),
    replace_random (B, N)); 0/1 masks in the noise's dtype."""
    noise, u = draws["noise"], draws["choice"]
    _, corrupted, _ = random_masking(noise, cfg.corrupt_ratio)        # 1 = corrupted
    K = num_kept(noise.shape[1], cfg.corrupt_ratio)
    ids_corrupt = array_module(noise).argsort(noise, axis=1)[:, K:]
    p, q = cfg.mask_token_prob, cfg.random_patch_prob
    replace_token = corrupted * (u < p)
    replace_random = corrupted * ((u >= p) & (u < p + q))
    return ids_corrupt, corrupted, replace_token, replace_random


def mpp_param_shapes(cfg: MPPConfig) -> dict:
    shapes = {k: s for k, s in param_shapes(cfg.encoder).items() if not k.startswith("head.")}
    D, K = cfg.encoder.embed_dim, cfg.num_colors
    shapes.update({"mask_token": (1, 1, D), "mpp_head.weight": (K, D), "mpp_head.bias": (K,)})
    return shapes


def init_mpp_params(cfg: MPPConfig, seed=0, dtype="float32") -> dict:
    """The encoder as timm initialises a ViT; mask_token normal 0.02; mpp_head truncated
    normal 0.02 with a zero bias."""
    enc = init_params(cfg.encoder, seed=seed, dtype=dtype)
    gen = host_rng([seed, 3])
    params = {k: enc[k] for k in mpp_param_shapes(cfg) if k in enc}
    shapes = mpp_param_shapes(cfg)
    params["mask_token"] = to_device(gen.normal(0.0, 0.02, size=shapes["mask_token"]), dtype)
    params["mpp_head.weight"] = to_device(trunc_normal(gen, shapes["mpp_head.weight"]), dtype)
    params["mpp_head.bias"] = to_device(host_xp().zeros(shapes["mpp_head.bias"]), dtype)
    return params


class MPPCache(NamedTuple):
    patch_embed: object   # patch_embed cache
    corrupt: object       # CorruptCache
    encoder: object       # EncoderCache
    norm: object          # the final LayerNorm
    pick: object          # gather of the corrupted patches' tokens
    head: object          # linear cache of mpp_head
    loss: object          # patch_ce cache


class MaskedPatchPrediction(PretrainingModel):
    """params / grads: flat dicts (the ViT's timm names without ``head``, plus ``mask_token``
    and ``mpp_head``); rng draws the corruption when ``forward`` is given no ``draws``."""

    WHAT = "MPP parameters"
    param_shapes = staticmethod(mpp_param_shapes)

    def forward(self, images, targets, draws=None, rng=None, keep_cache=True):
        """images (B, C, H, W); targets (B, N) colour classes of every patch (from
        ``mean_color_targets`` of the un-normalised pixels) -> (loss, logits (B, M, K),
        labels (B, M) of the corrupted patches, corrupted (B, N) 0/1).  keep_cache=False: no
        backward will follow."""
        cfg, p, enc = self.config, self.params, self.config.encoder
        self.check_images(images)
        B, N = images.shape[0], enc.num_patches
        if tuple(targets.shape) != (B, N):
            raise ValueError(f"targets must have shape {(B, N)}, got {tuple(targets.shape)}")
        if draws is None:
            draws = draw_corruption(rng or self.rng, B, N, self.dtype)
        ids, corrupted, r_tok, r_rand = (a.astype(self.dtype, copy=False) if i else a
                                         for i, a in enumerate(corruption(draws, cfg)))
        x, pe = patch_embed_forward(images, p["patch_embed.proj.weight"],
                                    p["patch_embed.proj.bias"])              # (B, N, D)
        x, cor = corrupt_tokens_forward(x, r_tok, r_rand, draws["src"], p["mask_token"])
        z, _ = embed_tokens_forward(x, p["cls_token"], p["pos_embed"])       # (B, N+1, D)
        z, enc_cache = encoder_forward(z, stack_params(p, "blocks", enc.depth), enc.num_heads,
                                       enc.gelu, keep=keep_cache)
        z, norm = layernorm_forward(z, p["norm.weight"], p["norm.bias"])
        h, pick = gather_tokens_forward(z[:, 1:], ids)                      # (B, M, D)
        logits, head = linear_forward(h, p["mpp_head.weight"], p["mpp_head.bias"])
        labels = gather_tokens_forward(targets[..., None], ids)[0][..., 0]  # (B, M)
        loss, lcache = patch_ce_forward(logits, labels)
        self._cache = MPPCache(pe, cor, enc_cache, norm, pick, head, lcache) \
            if keep_cache else None
        return loss, logits, labels, corrupted

    __call__ = forward

    def backward(self, dloss=1.0):
        """Fill ``self.grads`` and return dimages (B, C, H, W)."""
        c = self.pop_cache()
        dlogits = patch_ce_backward(dloss, c.loss)
        xp = array_module(dlogits)
        g = {}
        dh, g["mpp_head.weight"], g["mpp_head.bias"] = linear_backward(dlogits, c.head)
        dpatch = gather_tokens_backward(dh, c.pick)                          # (B, N, D)
        B, N, D = dpatch.shape
        dz = xp.concatenate([xp.zeros((B, 1, D), dtype=dpatch.dtype), dpatch], axis=1)
        dz, g["norm.weight"], g["norm.bias"] = layernorm_backward(dz, c.norm)
        dz, block_grads = encoder_backward(dz, c.encoder)
        g.update(stack_grads(block_grads, "blocks"))
        dx, g["cls_token"], g["pos_embed"] = embed_tokens_backward(dz)
        dx, g["mask_token"] = corrupt_tokens_backward(dx, c.corrupt)
        dimages, g["patch_embed.proj.weight"], g["patch_embed.proj.bias"] = \
            patch_embed_backward(dx, c.patch_embed)
        self.store_grads(g)
        return dimages

    def describe(self) -> str:
        return f"corrupt {self.config.corrupt_ratio}, {self.config.num_colors} colours"


def create_mpp(config: MPPConfig | str = "cifar-tiny", seed=0, dtype="float32",
               **fields) -> MaskedPatchPrediction:
    if not isinstance(config, MPPConfig):
        config = MPPConfig(encoder=get_config(config))
    cfg = config.replace(**fields) if fields else config
    return MaskedPatchPrediction(cfg, init_mpp_params(cfg, seed, resolve_dtype(dtype)),
                                 seed=int(host_rng(seed).integers(2**31 - 1)))


__all__ = ["MPPConfig", "MaskedPatchPrediction", "corruption", "create_mpp", "draw_corruption",
           "init_mpp_params", "mean_color_targets", "mpp_param_shapes"]
