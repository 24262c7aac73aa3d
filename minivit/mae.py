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

Loss (MAE section 3, "Reconstruction target"): mean squared error per patch against the
patch's pixels t = patchify(images), averaged over the *removed* patches only,

    L = sum_n m_n mean_q (pred_nq - t_nq)^2 / sum_n m_n,          m_n = 1 if patch n is hidden

and with ``norm_pix_loss`` the target is each patch normalised by its own statistics,
t = (t - mean(t)) / sqrt(var(t) + 1e-6), var the unbiased (N-1) variance as the reference's
``torch.var``.  The target depends on the images too, so d images has two paths: through
the encoder and through the target.

The decoder's position embedding is by default the fixed 2-D sine-cosine embedding of the
MAE code (``get_2d_sincos_pos_embed``) with a zero row for the class token: a constant, not a
parameter.  ``decoder_pos_embed="learned"`` makes it a parameter instead.  The encoder's
``pos_embed`` is learned and initialised as timm's ViT, so ``encoder_params()`` is a ViT
parameter dict and a pre-trained encoder fine-tunes with ``minivit train --init-from``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from minivit.backend import (array_module, host_rng, host_xp, is_array, resolve_dtype,
                             rng as make_rng, to_device)
from minivit.config import CONFIGS, STOCHASTIC_FIELDS, ViTConfig, get_config
from minivit.init import init_params, param_shapes, trunc_normal
from minivit.layers.block import BLOCK_PARAM_NAMES, block_backward, block_forward
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.masking import (gather_tokens_backward, gather_tokens_forward,
                                    masking_noise, num_kept, random_masking, unshuffle_backward,
                                    unshuffle_forward)
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward
from minivit.layers.patches import patchify, patchify_backward

DECODER_POS_EMBEDS = ("sincos", "learned")
NORM_PIX_EPS = 1e-6
MAE_FORMAT = "minivit-mae"
MAE_CONFIG_KEY = "minivit_mae_config"


# ----------------------------------------------------------------------------- config

@dataclass(frozen=True)
class MAEConfig:
    """The encoder is a ViTConfig (or a name from CONFIGS); the decoder is narrow and shallow.

    Defaults are scaled for CIFAR (64 patches of 4x4): a 128-wide, 2-block decoder with 4
    heads, against MAE's 512-wide, 8-block decoder for ImageNet's 196 patches.
    """
    encoder: ViTConfig = field(default_factory=lambda: CONFIGS["cifar-tiny"])
    decoder_embed_dim: int = 128      # Dd
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    decoder_mlp_dim: int = 256
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    decoder_pos_embed: str = "sincos"   # "sincos" (fixed) or "learned"

    def __post_init__(self):
        enc = self.encoder
        if isinstance(enc, dict):
            enc = ViTConfig.from_dict(enc)
        object.__setattr__(self, "encoder", get_config(enc))
        for k in ("decoder_embed_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_dim"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
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
        if self.encoder.conv_stem:
            raise ValueError("MAE pre-training needs a patchify encoder (conv_stem=()): a convolutional "
                             "stem's 3x3 windows overlap the neighbouring patches, so a visible "
                             "token would see pixels of the hidden ones")
        bad = [k for k in STOCHASTIC_FIELDS if getattr(self.encoder, k)]
        if bad:
            raise ValueError(f"MAE pre-training uses no dropout, stochastic depth or patch "
                             f"dropout (it masks patches itself); set {', '.join(bad)} of the "
                             "encoder to 0")

    def decoder_config(self) -> ViTConfig:
        """The decoder's blocks as a ViTConfig (qkv bias on, the encoder's GELU)."""
        e = self.encoder
        return ViTConfig(image_size=e.image_size, patch_size=e.patch_size, in_chans=e.in_chans,
                         num_classes=1, embed_dim=self.decoder_embed_dim,
                         depth=self.decoder_depth, num_heads=self.decoder_num_heads,
                         mlp_dim=self.decoder_mlp_dim, qkv_bias=True, gelu=e.gelu,
                         name="mae-decoder")

    def replace(self, **changes) -> "MAEConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "encoder": self.encoder.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "MAEConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown MAE config keys {unknown}; known keys: {sorted(names)}")
        return cls(**d)


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


# ----------------------------------------------------------------------------- the loss

def patch_targets_forward(images, patch_size, norm_pix=False):
    """images (B, C, H, W) -> (target (B, N, Q), cache): patchify, optionally normalised per
    patch, t = (x - mean) / sqrt(var + 1e-6) with the unbiased variance over the Q values."""
    x = patchify(images, patch_size)
    C = images.shape[1]
    grid = (images.shape[2] // patch_size, images.shape[3] // patch_size)
    if not norm_pix:
        return x, (patch_size, C, grid, None)
    Q = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    s = ((xc * xc).sum(axis=-1, keepdims=True) / (Q - 1) + NORM_PIX_EPS) ** 0.5
    return xc / s, (patch_size, C, grid, (xc, s))


def patch_targets_backward(dtarget, cache):
    """dtarget (B, N, Q) -> dimages.  With normalisation (s = sqrt(var + eps), xc = x - mean):

        dx = (dt - mean(dt)) / s - xc * sum(dt * xc) / ((Q - 1) s^3)
    """
    P, C, grid, norm = cache
    if norm is not None:
        xc, s = norm
        Q = xc.shape[-1]
        dtarget = ((dtarget - dtarget.mean(axis=-1, keepdims=True)) / s
                   - xc * (dtarget * xc).sum(axis=-1, keepdims=True) / ((Q - 1) * s ** 3))
    return patchify_backward(dtarget, P, C, grid)


def masked_mse_forward(pred, target, mask):
    """pred, target (B, N, Q), mask (B, N) 1 = removed -> (loss float, cache).

    loss = sum_bn m_bn mean_q (pred - target)^2 / sum_bn m_bn."""
    diff = pred - target
    per_patch = (diff * diff).mean(axis=-1)                          # (B, N)
    count = mask.sum()
    loss = float((per_patch * mask).sum() / count)
    return loss, (diff, mask, count)


def masked_mse_backward(cache, dloss=1.0):
    """-> (dpred, dtarget), each (B, N, Q): 2 (pred - t) m / (Q sum m); exactly 0 where m = 0."""
    diff, mask, count = cache
    dpred = diff * (2.0 * dloss / (diff.shape[-1] * count)) * mask[..., None]
    return dpred, -dpred


# ----------------------------------------------------------------------------- the model

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
    """Encoder and decoder blocks as timm initialises a ViT (``minivit.init``); decoder_embed,
    decoder_pred and a learned decoder_pos_embed truncated normal 0.02, biases zero;
    mask_token normal 0.02 as in the MAE code."""
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


def _check_params(cfg, params):
    expected = mae_param_shapes(cfg)
    problems = [f"missing {k}" for k in expected if k not in params]
    problems += [f"unexpected {k}" for k in params if k not in expected]
    problems += [f"{k}: got {tuple(params[k].shape)}, expected {s}" for k, s in expected.items()
                 if k in params and tuple(params[k].shape) != s]
    if problems:
        raise ValueError("MAE parameters do not match the config: " + "; ".join(problems))


class MaskedAutoencoder:
    """params / grads: flat dicts with the MAE reference code's names; config: MAEConfig;
    rng: the generator that draws masks when ``forward`` is given neither noise nor mask_rng."""

    def __init__(self, config: MAEConfig, params: dict, seed: int = 0):
        _check_params(config, params)
        self.config, self.params, self.grads = config, params, {}
        first = next(iter(params.values()))
        self.dtype = first.dtype
        self.rng = make_rng(seed, array_module(first))
        self._cache = None
        grid = config.encoder.grid_size
        self.fixed_decoder_pos_embed = None if config.decoder_pos_embed == "learned" else \
            to_device(sincos_2d_pos_embed(config.decoder_embed_dim, grid), self.dtype)

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def _block(self, prefix, i):
        return {k: self.params[f"{prefix}.{i}.{k}"] for k in BLOCK_PARAM_NAMES
                if f"{prefix}.{i}.{k}" in self.params}

    def _decoder_pos(self):
        return self.params.get("decoder_pos_embed", self.fixed_decoder_pos_embed)

    def replica(self) -> "MaskedAutoencoder":
        """A model that shares this one's ``params`` dict but keeps its own activations and
        gradients (one per thread in ``minivit.parallel.DataParallel``)."""
        return MaskedAutoencoder(self.config, self.params)

    def clear_cache(self) -> None:
        """Drop the activations kept by the last forward (no backward will follow)."""
        self._cache = None

    def forward(self, images, noise=None, mask_rng=None, keep_cache=True):
        """images (B, C, H, W) -> (loss float, pred (B, N, Q), mask (B, N), 1 = removed).

        The mask comes from ``noise`` (B, N) if given, else from uniform noise drawn from
        ``mask_rng``, else from ``self.rng``.  keep_cache=False: no backward will follow."""
        cfg, p = self.config, self.params
        enc, dec = cfg.encoder, cfg.decoder_config()
        _check_images(images, enc, self.dtype)
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
        enc_caches = []
        for i in range(enc.depth):
            z, _, c = block_forward(z, self._block("blocks", i), enc.num_heads, enc.gelu)
            enc_caches.append(c)
        z, norm = layernorm_forward(z, p["norm.weight"], p["norm.bias"])
        # decoder: to width Dd, append mask tokens, unshuffle, re-attach cls, add positions
        y, embed = linear_forward(z, p["decoder_embed.weight"], p["decoder_embed.bias"])
        tokens = xp.broadcast_to(p["mask_token"], (B, N - K, dec.embed_dim))
        y_, unshuf = unshuffle_forward(xp.concatenate([y[:, 1:], tokens], axis=1), ids_restore)
        u = xp.concatenate([y[:, :1], y_], axis=1) + self._decoder_pos()    # (B, N+1, Dd)
        dec_caches = []
        for i in range(dec.depth):
            u, _, c = block_forward(u, self._block("decoder_blocks", i), dec.num_heads, dec.gelu)
            dec_caches.append(c)
        u, dnorm = layernorm_forward(u, p["decoder_norm.weight"], p["decoder_norm.bias"])
        out, pred_cache = linear_forward(u, p["decoder_pred.weight"], p["decoder_pred.bias"])
        pred = out[:, 1:]                                                    # (B, N, Q)
        # loss on the removed patches
        target, tcache = patch_targets_forward(images, enc.patch_size, cfg.norm_pix_loss)
        loss, lcache = masked_mse_forward(pred, target, mask)
        self._cache = (pe, keep, enc_caches, norm, embed, K, unshuf, dec_caches, dnorm,
                       pred_cache, tcache, lcache) if keep_cache else None
        return loss, pred, mask

    __call__ = forward

    # ------------------------------------------------------------------ backward
    def backward(self, dloss=1.0):
        """Fill ``self.grads`` (every parameter) and return dimages (B, C, H, W)."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first (each forward allows one backward)")
        (pe, keep, enc_caches, norm, embed, K, unshuf, dec_caches, dnorm, pred_cache, tcache,
         lcache) = self._cache
        self._cache = None
        g = {}
        dpred, dtarget = masked_mse_backward(lcache, dloss)
        dimages_target = patch_targets_backward(dtarget, tcache)
        xp = array_module(dpred)
        B, N, Q = dpred.shape
        dout = xp.concatenate([xp.zeros((B, 1, Q), dtype=dpred.dtype), dpred], axis=1)
        du, g["decoder_pred.weight"], g["decoder_pred.bias"] = linear_backward(dout, pred_cache)
        du, g["decoder_norm.weight"], g["decoder_norm.bias"] = layernorm_backward(du, dnorm)
        for i in reversed(range(len(dec_caches))):
            du, bg = block_backward(du, dec_caches[i])
            g.update({f"decoder_blocks.{i}.{k}": v for k, v in bg.items() if v is not None})
        if "decoder_pos_embed" in self.params:
            g["decoder_pos_embed"] = du.sum(axis=0, keepdims=True)
        dy_ = unshuffle_backward(du[:, 1:], unshuf)                          # (B, N, Dd)
        g["mask_token"] = dy_[:, K:].sum(axis=(0, 1)).reshape(1, 1, -1)
        dy = xp.concatenate([du[:, :1], dy_[:, :K]], axis=1)                # (B, K+1, Dd)
        dz, g["decoder_embed.weight"], g["decoder_embed.bias"] = linear_backward(dy, embed)
        dz, g["norm.weight"], g["norm.bias"] = layernorm_backward(dz, norm)
        for i in reversed(range(len(enc_caches))):
            dz, bg = block_backward(dz, enc_caches[i])
            g.update({f"blocks.{i}.{k}": v for k, v in bg.items() if v is not None})
        dcls = dz[:, :1].sum(axis=0, keepdims=True)                         # (1, 1, D)
        dx = gather_tokens_backward(dz[:, 1:], keep)                         # (B, N, D)
        g["cls_token"] = dcls
        g["pos_embed"] = xp.concatenate([dcls, dx.sum(axis=0, keepdims=True)], axis=1)
        dimages, g["patch_embed.proj.weight"], g["patch_embed.proj.bias"] = \
            patch_embed_backward(dx, pe)
        self.grads = {k: g[k] for k in self.params}
        return dimages + dimages_target

    # ------------------------------------------------------------------ the encoder alone
    def encoder_params(self) -> dict:
        """The encoder as a ViT parameter dict (timm names, no head)."""
        return {k: self.params[k] for k in param_shapes(self.config.encoder) if k in self.params}

    def to_vit(self, num_classes=None):
        """A VisionTransformer with this encoder and a new zero head (fine-tuning, probing)."""
        return vit_from_encoder(self.config.encoder, self.encoder_params(), num_classes)

    def __repr__(self):
        c, e = self.config, self.config.encoder
        return (f"MaskedAutoencoder(encoder {e.name}: D={e.embed_dim}, depth={e.depth}; decoder "
                f"Dd={c.decoder_embed_dim}, depth={c.decoder_depth}; mask {c.mask_ratio}, "
                f"norm_pix_loss={c.norm_pix_loss}, {self.num_params():,} params, {self.dtype})")


def vit_from_encoder(encoder: ViTConfig, params: dict, num_classes=None):
    """Encoder parameters (timm names, no head) -> a VisionTransformer whose new head
    (num_classes, default the config's) starts at zero.  The arrays are shared, not copied."""
    from minivit.model import VisionTransformer
    first = params["cls_token"]
    xp = array_module(first)
    K = encoder.num_classes if num_classes is None else num_classes
    cfg = encoder.replace(num_classes=K, head_init="zeros")
    params = {**params, "head.weight": xp.zeros((K, encoder.embed_dim), dtype=first.dtype),
              "head.bias": xp.zeros((K,), dtype=first.dtype)}
    return VisionTransformer(cfg, {k: params[k] for k in param_shapes(cfg)})


def _check_images(images, enc: ViTConfig, dtype):
    if not is_array(images) or images.ndim != 4:
        raise ValueError(f"images must be an array of shape (B, {enc.in_chans}, {enc.image_size}, "
                         f"{enc.image_size}), got {getattr(images, 'shape', type(images).__name__)}")
    want = (enc.in_chans, enc.image_size, enc.image_size)
    if tuple(images.shape[1:]) != want:
        raise ValueError(f"images have shape {tuple(images.shape)}, expected (B, {want[0]}, "
                         f"{want[1]}, {want[2]})")
    if images.dtype != dtype:
        raise ValueError(f"images have dtype {images.dtype}, expected the model's {dtype}")


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

def save_mae(model: MaskedAutoencoder, path) -> None:
    """Parameters (reference names) and config to .safetensors / .npz, atomically."""
    from minivit.serialization import write_params
    write_params(path, model.params, MAE_FORMAT, MAE_CONFIG_KEY, model.config.to_dict())


def load_mae(path, dtype=None) -> MaskedAutoencoder:
    """Read what ``save_mae`` wrote; ValueError naming the file if it is not an MAE."""
    from minivit.serialization import read_params
    config, arrays, dt = read_params(path, MAE_FORMAT, MAE_CONFIG_KEY, "MAE", dtype)
    cfg = MAEConfig.from_dict(config)
    try:
        _check_params(cfg, arrays)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return MaskedAutoencoder(cfg, {k: to_device(arrays[k], dt) for k in mae_param_shapes(cfg)})


__all__ = ["MAEConfig", "MaskedAutoencoder", "create_mae", "init_mae_params", "load_mae",
           "mae_param_shapes", "masked_mse_backward", "masked_mse_forward",
           "patch_targets_backward", "patch_targets_forward", "save_mae",
           "sincos_2d_pos_embed", "vit_from_encoder"]
