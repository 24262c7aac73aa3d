"""Masked autoencoder (He et al., *Masked Autoencoders Are Scalable Vision Learners*, 2021).

Hide 75% of the patches, encode only the visible ones with a ViT, and let a narrow, shallow
decoder reconstruct the pixels of the hidden ones.  Every step reuses a layer of
``minivit/layers``; forward and backward are written out below in the order of the MAE
reference code (``models_mae.py``), and the parameters carry its names:

    encoder   cls_token (1,1,D)  pos_embed (1,N+1,D)  patch_embed.proj.*  blocks.{i}.*  norm.*
    decoder   decoder_embed.* (Dd,D)  mask_token (1,1,Dd)  [decoder_pos_embed (1,N+1,Dd)]
              decoder_blocks.{i}.*  decoder_norm.*  decoder_pred.* (P*P*C, Dd)

Shapes: B images, N patches, K = N - round(N * mask_ratio) visible ones, Q = P*P*C values
per patch.

    x    = patches(images) E + E_pos[1:]                 (B, N, D)    no class token yet
    x    = x[ids_keep]                                   (B, K, D)    visible patches only
    z    = [x_class + E_pos[0]; x] -> blocks -> LN        (B, K+1, D)
    y    = z W_embed + b                                 (B, K+1, Dd)
    y'   = unshuffle([y[1:]; mask_token x (N-K)])        (B, N, Dd)   grid order again
    u    = [y[0]; y'] + E_dec  -> decoder blocks -> LN   (B, N+1, Dd)
    pred = (u W_pred + b)[1:]                            (B, N, Q)

Loss (MAE section 3, "Reconstruction target", ``layers/reconstruction.py``): mean squared
error per patch against the patch's pixels t = patchify(images), averaged over the *removed*
patches only,

    L = sum_n m_n mean_q (pred_nq - t_nq)^2 / sum_n m_n,          m_n = 1 if patch n is hidden

and with ``norm_pix_loss`` the target is each patch normalised by its own statistics.  The
target depends on the images too, so d images has two paths: through the encoder and
through the target.

The decoder's position embedding is by default the fixed 2-D sine-cosine embedding of the
MAE code (``get_2d_sincos_pos_embed``) with a zero row for the class token: a constant, not a
parameter.  ``decoder_pos_embed="learned"`` makes it a parameter instead.  The encoder's
``pos_embed`` is learned and initialised as timm's ViT, so ``encoder_params()`` is a ViT
parameter dict and a pre-trained encoder fine-tunes with ``minivit train --init-from``.
"""


from __future__ import annotations

from typing import NamedTuple

from minivit.backend import array_module, host_rng, resolve_dtype, to_device
from minivit.layers.encoder import encoder_backward, encoder_forward, stack_grads, stack_params
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.masking import (
    gather_tokens_backward,
    gather_tokens_forward,
    masking_noise,
    random_masking,
    unshuffle_backward,
    unshuffle_forward,
)
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward
from minivit.layers.reconstruction import (
    NORM_PIX_EPS,
    masked_mse_backward,
    masked_mse_forward,
    patch_targets_backward,
    patch_targets_forward,
)
from minivit.models.mae_config import (
    DECODER_POS_EMBEDS,
    MAEConfig,
    init_mae_params,
    mae_param_shapes,
    sincos_2d_pos_embed,
)
from minivit.models.vit import PretrainingModel, vit_from_encoder
from minivit.models.vit_config import get_config

MAE_FORMAT = "minivit-mae"
MAE_CONFIG_KEY = "minivit_mae_config"


class MAECache(NamedTuple):
    patch_embed: object   # patch_embed cache
    keep: object          # gather of the visible tokens
    encoder: object       # EncoderCache
    norm: object          # the encoder's final LayerNorm
    embed: object         # linear cache of decoder_embed
    num_kept: int         # K visible patches
    unshuffle: object     # gather back to grid order
    decoder: object       # EncoderCache of the decoder blocks
    decoder_norm: object  # the decoder's final LayerNorm
    pred: object          # linear cache of decoder_pred
    target: object        # patch_targets cache
    loss: object          # masked_mse cache


class MaskedAutoencoder(PretrainingModel):
    """params / grads: flat dicts with the MAE reference code's names; config: MAEConfig;
    rng: the generator that draws masks when ``forward`` is given neither noise nor mask_rng."""

    WHAT = "MAE parameters"
    param_shapes = staticmethod(mae_param_shapes)

    def __init__(self, config: MAEConfig, params: dict, seed: int = 0):
        super().__init__(config, params, seed)
        grid = config.encoder.grid_size
        self.fixed_decoder_pos_embed = None if config.decoder_pos_embed == "learned" else \
            to_device(sincos_2d_pos_embed(config.decoder_embed_dim, grid), self.dtype)

    def _decoder_pos(self):
        return self.params.get("decoder_pos_embed", self.fixed_decoder_pos_embed)

    def forward(self, images, noise=None, mask_rng=None, keep_cache=True):
        """images (B, C, H, W) -> (loss (0-d array), pred (B, N, Q), mask (B, N), 1 = removed).

        The mask comes from ``noise`` (B, N) if given, else from uniform noise drawn from
        ``mask_rng``, else from ``self.rng``.  keep_cache=False: no backward will follow."""
        cfg, p = self.config, self.params
        enc, dec = cfg.encoder, cfg.decoder_config()
        self.check_images(images)
        xp = array_module(images)
        B, N = images.shape[0], enc.num_patches
        if noise is None:
            noise = masking_noise(mask_rng or self.rng, B, N, self.dtype)
        if tuple(noise.shape) != (B, N):
            raise ValueError(f"noise must have shape {(B, N)}, got {tuple(noise.shape)}")
        ids_keep, mask, ids_restore = random_masking(noise, cfg.mask_ratio)
        mask = mask.astype(self.dtype, copy=False)                     # noise may be float64
        K = ids_keep.shape[1]
        # encoder: embed every patch, add its position, keep the visible ones, prepend cls
        x, pe = patch_embed_forward(images, p["patch_embed.proj.weight"],
                                    p["patch_embed.proj.bias"])              # (B, N, D)
        x, keep = gather_tokens_forward(x + p["pos_embed"][:, 1:], ids_keep)  # (B, K, D)
        cls = xp.broadcast_to(p["cls_token"] + p["pos_embed"][:, :1], (B, 1, enc.embed_dim))
        z = xp.concatenate([cls, x], axis=1)                                # (B, K+1, D)
        z, enc_cache = encoder_forward(z, stack_params(p, "blocks", enc.depth), enc.num_heads,
                                       enc.gelu, keep=keep_cache)
        z, norm = layernorm_forward(z, p["norm.weight"], p["norm.bias"])
        # decoder: to width Dd, append mask tokens, unshuffle, re-attach cls, add positions
        y, embed = linear_forward(z, p["decoder_embed.weight"], p["decoder_embed.bias"])
        tokens = xp.broadcast_to(p["mask_token"], (B, N - K, dec.embed_dim))
        y_, unshuf = unshuffle_forward(xp.concatenate([y[:, 1:], tokens], axis=1), ids_restore)
        u = xp.concatenate([y[:, :1], y_], axis=1) + self._decoder_pos()    # (B, N+1, Dd)
        u, dec_cache = encoder_forward(u, stack_params(p, "decoder_blocks", dec.depth),
                                       dec.num_heads, dec.gelu, keep=keep_cache)
        u, dnorm = layernorm_forward(u, p["decoder_norm.weight"], p["decoder_norm.bias"])
        out, pred_cache = linear_forward(u, p["decoder_pred.weight"], p["decoder_pred.bias"])
        pred = out[:, 1:]                                                    # (B, N, Q)
        # loss on the removed patches
        target, tcache = patch_targets_forward(images, enc.patch_size, cfg.norm_pix_loss)
        loss, lcache = masked_mse_forward(pred, target, mask)
        self._cache = MAECache(pe, keep, enc_cache, norm, embed, K, unshuf, dec_cache, dnorm,
                               pred_cache, tcache, lcache) if keep_cache else None
        return loss, pred, mask

    __call__ = forward

    # ------------------------------------------------------------------ backward
    def backward(self, dloss=1.0):
        """Fill ``self.grads`` (every parameter) and return dimages (B, C, H, W)."""
        c = self.pop_cache()
        K = c.num_kept
        g = {}
        dpred, dtarget = masked_mse_backward(dloss, c.loss)
        dimages_target = patch_targets_backward(dtarget, c.target)
        xp = array_module(dpred)
        B, N, Q = dpred.shape
        dout = xp.concatenate([xp.zeros((B, 1, Q), dtype=dpred.dtype), dpred], axis=1)
        du, g["decoder_pred.weight"], g["decoder_pred.bias"] = linear_backward(dout, c.pred)
        du, g["decoder_norm.weight"], g["decoder_norm.bias"] = \
            layernorm_backward(du, c.decoder_norm)
        du, block_grads = encoder_backward(du, c.decoder)
        g.update(stack_grads(block_grads, "decoder_blocks"))
        if "decoder_pos_embed" in self.params:
            g["decoder_pos_embed"] = du.sum(axis=0, keepdims=True)
        dy_ = unshuffle_backward(du[:, 1:], c.unshuffle)                     # (B, N, Dd)
        g["mask_token"] = dy_[:, K:].sum(axis=(0, 1)).reshape(1, 1, -1)
        dy = xp.concatenate([du[:, :1], dy_[:, :K]], axis=1)                # (B, K+1, Dd)
        dz, g["decoder_embed.weight"], g["decoder_embed.bias"] = linear_backward(dy, c.embed)
        dz, g["norm.weight"], g["norm.bias"] = layernorm_backward(dz, c.norm)
        dz, block_grads = encoder_backward(dz, c.encoder)
        g.update(stack_grads(block_grads, "blocks"))
        dcls = dz[:, :1].sum(axis=0, keepdims=True)                         # (1, 1, D)
        dx = gather_tokens_backward(dz[:, 1:], c.keep)                       # (B, N, D)
        g["cls_token"] = dcls
        g["pos_embed"] = xp.concatenate([dcls, dx.sum(axis=0, keepdims=True)], axis=1)
        dimages, g["patch_embed.proj.weight"], g["patch_embed.proj.bias"] = \
            patch_embed_backward(dx, c.patch_embed)
        self.store_grads(g)
        return dimages + dimages_target

    def describe(self) -> str:
        c = self.config
        return (f"decoder Dd={c.decoder_embed_dim}, depth={c.decoder_depth}; mask "
                f"{c.mask_ratio}, norm_pix_loss={c.norm_pix_loss}")


def create_mae(config: MAEConfig | str = "cifar-tiny", seed=0, dtype="float32",
               **fields) -> MaskedAutoencoder:
    """A fresh MAE on the active backend.  config: an MAEConfig, or an encoder name from
    CONFIGS; ``fields`` change MAEConfig fields (decoder_depth=..., norm_pix_loss=True)."""
    if not isinstance(config, MAEConfig):
        config = MAEConfig(encoder=get_config(config))
    cfg = config.replace(**fields) if fields else config
    dt = resolve_dtype(dtype)
    return MaskedAutoencoder(cfg, init_mae_params(cfg, seed, dt),
                             seed=int(host_rng(seed).integers(2**31 - 1)))


# ----------------------------------------------------------------------------- files

__all__ = ["DECODER_POS_EMBEDS", "MAEConfig", "MaskedAutoencoder", "NORM_PIX_EPS", "create_mae",
           "init_mae_params", "mae_param_shapes", "masked_mse_backward",
           "masked_mse_forward", "patch_targets_backward", "patch_targets_forward",
           "sincos_2d_pos_embed", "vit_from_encoder"]
