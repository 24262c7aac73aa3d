"""The Vision Transformer: pixels -> patches -> tokens -> encoder blocks -> class logits.

Open this file after the layers.  ``VisionTransformer.forward`` is ViT equations (1)-(4) in
order, and ``backward`` walks the same steps in reverse.  The forward pass keeps, in
``self._cache``, exactly what the backward pass needs; each forward replaces it, and backward
releases it.

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos        (1)  patch_embed, embed_tokens
                                                                (training: patch_dropout)
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}                      (2)  block
    z_l = MLP(LN(z'_l)) + z'_l                             (3)  block
    y = LN(z_L^0)                                          (4)  norm, then head
"""

from __future__ import annotations

from minivit.backend import array_module, get_backend, is_array, resolve_dtype, rng as make_rng
from minivit.backend import host_rng
from minivit.config import ViTConfig, count_params, get_config
from minivit.init import init_params, param_shapes
from minivit.layers.block import BLOCK_PARAM_NAMES, block_backward, block_forward
from minivit.layers.dropout import dropout_backward, dropout_forward
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.conv_stem import conv_stem_backward, conv_stem_forward
from minivit.layers.patch_dropout import patch_dropout_backward, patch_dropout_forward
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward
from minivit.layers.tokens import embed_tokens_backward, embed_tokens_forward


class VisionTransformer:
    """A ViT whose parameters are a flat dict named and shaped like timm's state dict.

    model.params : dict[str, array]   model.grads : same keys, filled by ``backward``
    model.config : ViTConfig          model.rng   : generator for dropout / drop-path
    """

    def __init__(self, config: ViTConfig, params: dict, seed: int = 0):
        self.config = config
        self.params = params
        self.grads: dict = {}
        self.dtype = next(iter(params.values())).dtype
        self.rng = make_rng(seed, array_module(next(iter(params.values()))))
        self._cache = None
        check_params(config, params)

    # ------------------------------------------------------------------ helpers
    def replica(self) -> "VisionTransformer":
        """A model that shares this one's ``params`` dict but keeps its own activations,
        gradients and generator (one per thread in ``minivit.parallel.DataParallel``)."""
        return VisionTransformer(self.config, self.params)

    def clear_cache(self) -> None:
        """Drop the activations kept by the last forward (no backward will follow)."""
        self._cache = None

    def block_params(self, i):
        pre = f"blocks.{i}."
        return {k: self.params[pre + k] for k in BLOCK_PARAM_NAMES if pre + k in self.params}

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def drop_path_rates(self):
        """Stochastic depth rate of each block, rising linearly from 0 (timm's rule)."""
        L, r = self.config.depth, self.config.drop_path_rate
        return [r * i / (L - 1) if L > 1 else r for i in range(L)]

    def check_images(self, images):
        cfg = self.config
        if not is_array(images):
            raise ValueError(f"images must be a NumPy/CuPy array of shape (B, {cfg.in_chans}, "
                             f"{cfg.image_size}, {cfg.image_size}), got {type(images).__name__}")
        if images.ndim != 4:
            raise ValueError(f"images must have 4 dimensions (B, C, H, W), got shape "
                             f"{tuple(images.shape)}")
        B, C, H, W = images.shape
        if C != cfg.in_chans:
            raise ValueError(f"images have {C} channels, expected {cfg.in_chans} "
                             f"(shape (B, C, H, W), got {tuple(images.shape)})")
        if H % cfg.patch_size or W % cfg.patch_size:
            raise ValueError(f"image size {H}x{W} is not divisible by the patch size "
                             f"{cfg.patch_size}")
        if (H, W) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"images are {H}x{W}, expected {cfg.image_size}x{cfg.image_size} "
                             "(resample pos_embed with minivit.resample to change resolution)")
        if images.dtype.kind != "f":
            raise ValueError(f"images must be floating point ({self.dtype}), got dtype "
                             f"{images.dtype}; normalise uint8 pixels first "
                             "(e.g. minivit.data.normalize)")
        if images.dtype != self.dtype:
            raise ValueError(f"images have dtype {images.dtype}, expected the model's dtype "
                             f"{self.dtype}; cast with images.astype('{self.dtype}')")
        if array_module(images) is not array_module(self.params["cls_token"]):
            raise ValueError("images and model are on different backends; move the images "
                             "with minivit.to_device")

    # ------------------------------------------------------------------ forward
    def stem_convs(self):
        """[(weight, bias), ...] of the convolutional stem; [] for a plain patchify ViT."""
        p = self.params
        return [(p[f"patch_embed.backbone.{i}.conv.weight"], p[f"patch_embed.backbone.{i}.conv.bias"])
                for i in range(len(self.config.conv_stem))]

    def embed_patches(self, images):
        """images (B, C, H, W) -> tokens (B, N, D), cache: the x_p E of eq. (1), by P x P
        patches (patch_embed.py) or by a convolutional stem (conv_stem.py, the hybrid)."""
        w, b = self.params["patch_embed.proj.weight"], self.params["patch_embed.proj.bias"]
        if self.config.conv_stem:
            return conv_stem_forward(images, self.stem_convs(), w, b)
        return patch_embed_forward(images, w, b)

    def embed_patches_backward(self, dtokens, cache, grads: dict):
        """dtokens (B, N, D) -> dimages; puts the patch_embed.* gradients in ``grads``."""
        if self.config.conv_stem:
            dimages, dconvs, dw, db = conv_stem_backward(dtokens, cache)
            for i, (dcw, dcb) in enumerate(dconvs):
                grads[f"patch_embed.backbone.{i}.conv.weight"] = dcw
                grads[f"patch_embed.backbone.{i}.conv.bias"] = dcb
        else:
            dimages, dw, db = patch_embed_backward(dtokens, cache)
        grads["patch_embed.proj.weight"], grads["patch_embed.proj.bias"] = dw, db
        return dimages

    def forward(self, images, train=False, return_attention=False, keep_cache=True,
                patch_dropout=True):
        """images (B, C, H, W) -> logits (B, num_classes) [, list of (B, h, T, T) per block].

        keep_cache=False: no backward will follow (evaluation), so the activations are not kept.
        patch_dropout=False: training without patch dropout (unmasked tuning), whatever
        config.patch_drop_rate says.
        """
        self.check_images(images)
        cfg, p = self.config, self.params
        rng = self.rng if train else None
        # (1) patches -> tokens, class token, position embeddings
        x, pe_cache = self.embed_patches(images)                              # (B, N, D)
        z, _ = embed_tokens_forward(x, p["cls_token"], p["pos_embed"])        # (B, N+1, D)
        z, pos_drop = dropout_forward(z, cfg.drop_rate, rng, train)
        z, patch_drop = patch_dropout_forward(z, cfg.patch_drop_rate if patch_dropout else 0.0,
                                              rng, train)                    # (B, 1+K, D)
        # (2), (3) the encoder blocks
        block_caches, attentions = [], []
        for i, dp in enumerate(self.drop_path_rates()):
            z, probs, c = block_forward(z, self.block_params(i), cfg.num_heads, cfg.gelu,
                                        cfg.drop_rate, cfg.attn_drop_rate, dp, rng, train)
            if keep_cache:
                block_caches.append(c)
            if return_attention:
                attentions.append(probs)
        # (4) final LayerNorm, pool (class token or mean of patch tokens), head
        z, norm_cache = layernorm_forward(z, p["norm.weight"], p["norm.bias"])   # (B, T, D)
        pooled = z[:, 0] if cfg.pool == "token" else z[:, 1:].mean(axis=1)     # (B, D)
        pooled, head_drop = dropout_forward(pooled, cfg.drop_rate, rng, train)
        logits, head_cache = linear_forward(pooled, p["head.weight"], p["head.bias"])
        self._cache = (pe_cache, pos_drop, patch_drop, block_caches, norm_cache, z.shape,
                       head_drop, head_cache) if keep_cache else None
        return (logits, attentions) if return_attention else logits

    __call__ = forward

    # ------------------------------------------------------------------ backward
    def backward(self, dlogits):
        """dlogits (B, num_classes) -> dimages (B, C, H, W); fills ``self.grads``."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first (each forward allows one backward)")
        (pe_cache, pos_drop, patch_drop, block_caches, norm_cache, zshape, head_drop,
         head_cache) = self._cache
        self._cache = None
        xp = array_module(dlogits)
        g = {}
        dpooled, g["head.weight"], g["head.bias"] = linear_backward(dlogits, head_cache)
        dpooled = dropout_backward(dpooled, head_drop)
        B, T, D = zshape
        dz = xp.zeros(zshape, dtype=dpooled.dtype)
        if self.config.pool == "token":
            dz[:, 0] = dpooled
        else:
            dz[:, 1:] = (dpooled / (T - 1))[:, None, :]
        dz, g["norm.weight"], g["norm.bias"] = layernorm_backward(dz, norm_cache)
        for i in reversed(range(len(block_caches))):
            dz, bg = block_backward(dz, block_caches[i])
            for k, v in bg.items():
                if v is not None:
                    g[f"blocks.{i}.{k}"] = v
        dz = patch_dropout_backward(dz, patch_drop)                          # (B, N+1, D)
        dz = dropout_backward(dz, pos_drop)
        dx, g["cls_token"], g["pos_embed"] = embed_tokens_backward(dz)
        dimages = self.embed_patches_backward(dx, pe_cache, g)
        self.grads = {k: g[k] for k in self.params}       # timm order
        return dimages

    def __repr__(self):
        c = self.config
        return (f"VisionTransformer({c.name}: {c.image_size}px, patch {c.patch_size}, D={c.embed_dim}, "
                f"depth={c.depth}, heads={c.num_heads}, mlp={c.mlp_dim}, pool={c.pool}, "
                f"{'conv stem ' + str(list(c.conv_stem)) + ', ' if c.conv_stem else ''}"
                f"{self.num_params():,} params, {self.dtype}, {get_backend()})")


def check_params(config: ViTConfig, params: dict) -> None:
    """Raise ValueError listing every missing, unexpected or mis-shaped parameter."""
    expected = param_shapes(config)
    missing = [k for k in expected if k not in params]
    unexpected = [k for k in params if k not in expected]
    shapes = [f"{k}: got {tuple(params[k].shape)}, expected {s}"
              for k, s in expected.items() if k in params and tuple(params[k].shape) != s]
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes))
    if problems:
        raise ValueError(f"parameters do not match config {config.name!r}: " + " | ".join(problems))


def create_model(config="cifar-tiny", seed=0, dtype="float32", **overrides) -> VisionTransformer:
    """A freshly initialised ViT on the active backend.

    config: a name from ``minivit.CONFIGS`` or a ViTConfig; overrides change its fields
    (e.g. ``pool="mean"``, ``num_classes=100``).
    """
    cfg = get_config(config, **overrides)
    dt = resolve_dtype(dtype)
    params = init_params(cfg, seed=seed, dtype=dt)
    dropout_seed = int(host_rng(seed).integers(2**31 - 1))
    return VisionTransformer(cfg, params, seed=dropout_seed)


__all__ = ["VisionTransformer", "create_model", "check_params", "count_params"]
