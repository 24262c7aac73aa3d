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

A distilled ViT (DeiT, ``config.distilled``) has a second prefix token, ``dist_token``, after
the class token (z_0 = [x_class; x_dist; patches] + E_pos, T = N + 2) and a second head,
``head_dist``, on it.  ``forward(images, train=True)`` returns both heads' logits stacked,
(2, B, K): [0] the class head (learns from the labels), [1] the distillation head (learns
from the teacher), and ``backward`` takes a (2, B, K) gradient; with train=False it returns
their mean (B, K), as timm's ``VisionTransformerDistilled`` in eval mode, and ``backward``
takes (B, K).  Like timm, a distilled model applies no dropout before its heads.
"""

from __future__ import annotations

from typing import NamedTuple

from minivit.backend import array_module, get_backend, host_rng, resolve_dtype
from minivit.layers.conv_stem import conv_stem_backward, conv_stem_forward
from minivit.layers.dropout import dropout_backward, dropout_forward
from minivit.layers.encoder import (
    block_params,
    drop_path_rates,
    encoder_backward,
    encoder_forward,
    stack_grads,
    stack_params,
)
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.patch_dropout import patch_dropout_backward, patch_dropout_forward
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward
from minivit.layers.tokens import embed_prefix_backward, embed_prefix_forward
from minivit.models.base import ModelBase, check_param_shapes
from minivit.models.init import init_params, param_shapes
from minivit.models.vit_config import ViTConfig, count_params, get_config


class ViTCache(NamedTuple):
    patch_embed: object   # patch_embed or conv_stem cache
    pos_drop: object      # dropout after the position embeddings
    patch_drop: object    # patch dropout (None: every token kept)
    encoder: object       # EncoderCache
    norm: object          # final LayerNorm
    z_shape: tuple        # (B, T, D) after the final norm
    head_drop: object     # dropout before the head
    head: object          # linear cache of the head
    dist_head: object = None        # distilled: linear cache of head_dist
    heads_averaged: bool = False    # distilled: the forward returned the mean of the heads


class VisionTransformer(ModelBase):
    """A ViT whose parameters are a flat dict named and shaped like timm's state dict.

    model.params : dict[str, array]   model.grads : same keys, filled by ``backward``
    model.config : ViTConfig          model.rng   : generator for dropout / drop-path
    """

    param_shapes = staticmethod(param_shapes)

    @classmethod
    def check_params(cls, config, params):
        check_params(config, params)

    # ------------------------------------------------------------------ helpers
    def block_params(self, i):
        return block_params(self.params, "blocks", i)

    def drop_path_rates(self):
        """Stochastic depth rate of each block, rising linearly from 0 (timm's rule)."""
        return drop_path_rates(self.config.depth, self.config.drop_path_rate)

    # ------------------------------------------------------------------ forward
    def stem_convs(self):
        """[(weight, bias), ...] of the convolutional stem; [] for a plain patchify ViT."""
        p = self.params
        return [(p[f"patch_embed.backbone.{i}.conv.weight"],
                 p[f"patch_embed.backbone.{i}.conv.bias"])
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

    def prefix_tokens(self):
        """(1, P, D): the class token, then (distilled) the distillation token."""
        p = self.params
        if not self.config.distilled:
            return p["cls_token"]
        return array_module(p["cls_token"]).concatenate([p["cls_token"], p["dist_token"]], axis=1)

    def forward(self, images, train=False, return_attention=False, keep_cache=True,
                patch_dropout=True, split_heads=False, trace=None):
        """images (B, C, H, W) -> logits (B, num_classes) [, list of (B, h, T, T) per block].
        A distilled model in training returns (2, B, num_classes): class head, distillation head;
        in evaluation the mean of the two, or both (2, B, num_classes) with split_heads=True.

        keep_cache=False: no backward will follow (evaluation), so the activations are not kept.
        patch_dropout=False: skip patch dropout in training (no draw), as if patch_drop_rate
        were 0.
        trace: a dict to fill with the token states (``minivit explain``): "embedded" z_0,
        "blocks" [z_1, ..., z_L], "normed" LN(z_L), all (B, T, D).
        """
        self.check_images(images)
        cfg, p = self.config, self.params
        if split_heads and not cfg.distilled:
            raise ValueError("split_heads=True needs a distilled model (two heads); this one "
                             "has one head")
        rng = self.rng if train else None
        # (1) patches -> tokens, class token, position embeddings
        x, pe_cache = self.embed_patches(images)                              # (B, N, D)
        z, _ = embed_prefix_forward(x, self.prefix_tokens(), p["pos_embed"])  # (B, P+N, D)
        z, pos_drop = dropout_forward(z, cfg.drop_rate, rng, train)
        patch_drop_rate = cfg.patch_drop_rate if patch_dropout else 0.0
        z, patch_drop = patch_dropout_forward(z, patch_drop_rate, rng, train,
                                              cfg.num_prefix_tokens)          # (B, P+K, D)
        states = None if trace is None else trace.setdefault("blocks", [])
        if trace is not None:
            trace["embedded"] = z
        # (2), (3) the encoder blocks
        z, enc = encoder_forward(z, stack_params(p, "blocks", cfg.depth), cfg.num_heads,
                                 cfg.gelu, cfg.drop_rate, cfg.attn_drop_rate,
                                 self.drop_path_rates(), rng, train, keep=keep_cache,
                                 keep_probs=return_attention, states=states)
        # (4) final LayerNorm, pool (class token or mean of patch tokens), head
        z, norm_cache = layernorm_forward(z, p["norm.weight"], p["norm.bias"])   # (B, T, D)
        if trace is not None:
            trace["normed"] = z
        if cfg.distilled:
            logits, (head, dist_head, averaged) = self._distilled_heads(z, train or split_heads)
            self._cache = ViTCache(pe_cache, pos_drop, patch_drop, enc, norm_cache, z.shape,
                                   head_drop=None, head=head, dist_head=dist_head,
                                   heads_averaged=averaged) if keep_cache else None
            return (logits, enc.probs) if return_attention else logits
        pooled = z[:, 0] if cfg.pool == "token" else z[:, 1:].mean(axis=1)     # (B, D)
        pooled, head_drop = dropout_forward(pooled, cfg.drop_rate, rng, train)
        logits, head_cache = linear_forward(pooled, p["head.weight"], p["head.bias"])
        self._cache = ViTCache(pe_cache, pos_drop, patch_drop, enc, norm_cache, z.shape,
                               head_drop, head_cache) if keep_cache else None
        return (logits, enc.probs) if return_attention else logits

    __call__ = forward

    def _distilled_heads(self, z, separate):
        """z (B, T, D) after the final norm -> (logits: (2, B, K) if separate, else the mean of
        the heads (B, K); (the heads' linear caches, whether the logits are their mean))."""
        p = self.params
        cls, head = linear_forward(z[:, 0], p["head.weight"], p["head.bias"])
        dist, dist_head = linear_forward(z[:, 1], p["head_dist.weight"], p["head_dist.bias"])
        if separate:
            return array_module(z).stack([cls, dist]), (head, dist_head, False)
        return (cls + dist) / 2, (head, dist_head, True)

    def _distilled_heads_backward(self, dlogits, c, g):
        """dlogits (2, B, K), or (B, K) for averaged heads -> dz (B, T, D)."""
        xp = array_module(dlogits)
        dcls, ddist = (dlogits / 2, dlogits / 2) if c.heads_averaged else (dlogits[0], dlogits[1])
        dz = xp.zeros(c.z_shape, dtype=dlogits.dtype)
        dz[:, 0], g["head.weight"], g["head.bias"] = linear_backward(dcls, c.head)
        dz[:, 1], g["head_dist.weight"], g["head_dist.bias"] = linear_backward(ddist, c.dist_head)
        return dz

    # ------------------------------------------------------------------ backward
    def backward(self, dlogits, trace=None):
        """dlogits (B, num_classes) -> dimages (B, C, H, W); fills ``self.grads``.
        A distilled model takes what its forward returned: (2, B, K) in training.
        trace: a dict to fill with the gradients w.r.t. the token states (``minivit explain``):
        "d_normed" (B, T, D), "d_blocks" [d z_L, ..., d z_0], "d_patch_tokens" (B, N, D)."""
        c = self.pop_cache()
        xp = array_module(dlogits)
        g = {}
        if self.config.distilled:
            dz = self._distilled_heads_backward(dlogits, c, g)
        else:
            dpooled, g["head.weight"], g["head.bias"] = linear_backward(dlogits, c.head)
            dpooled = dropout_backward(dpooled, c.head_drop)
            B, T, D = c.z_shape
            dz = xp.zeros(c.z_shape, dtype=dpooled.dtype)
            if self.config.pool == "token":
                dz[:, 0] = dpooled
            else:
                dz[:, 1:] = (dpooled / (T - 1))[:, None, :]
        states = None if trace is None else trace.setdefault("d_blocks", [])
        if trace is not None:
            trace["d_normed"] = dz
        dz, g["norm.weight"], g["norm.bias"] = layernorm_backward(dz, c.norm)
        if states is not None:
            states.append(dz)
        dz, block_grads = encoder_backward(dz, c.encoder, states)
        g.update(stack_grads(block_grads, "blocks"))
        P = self.config.num_prefix_tokens
        dz = patch_dropout_backward(dz, c.patch_drop, P)                     # (B, P+N, D)
        dz = dropout_backward(dz, c.pos_drop)
        dx, dprefix, g["pos_embed"] = embed_prefix_backward(dz, P)
        g["cls_token"] = dprefix[:, :1]
        if self.config.distilled:
            g["dist_token"] = dprefix[:, 1:]
        if trace is not None:
            trace["d_patch_tokens"] = dx
        dimages = self.embed_patches_backward(dx, c.patch_embed, g)
        self.store_grads(g)
        return dimages

    def __repr__(self):
        c = self.config
        return (f"VisionTransformer({c.name}: {c.image_size}px, patch {c.patch_size}, "
                f"D={c.embed_dim}, depth={c.depth}, heads={c.num_heads}, mlp={c.mlp_dim}, "
                f"pool={c.pool}, "
                f"{'conv stem ' + str(list(c.conv_stem)) + ', ' if c.conv_stem else ''}"
                f"{'distilled, ' if c.distilled else ''}"
                f"{self.num_params():,} params, {self.dtype}, {get_backend()})")


def check_params(config: ViTConfig, params: dict) -> None:
    """Raise ValueError listing every missing, unexpected or mis-shaped parameter."""
    check_param_shapes(param_shapes(config), params, f"parameters of config {config.name!r}")


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


def vit_from_encoder(encoder: ViTConfig, params: dict, num_classes=None) -> VisionTransformer:
    """Encoder parameters (timm names, no head) -> a VisionTransformer whose new head
    (num_classes, default the config's) starts at zero.  The arrays are copied into the ViT's
    parameter buffer."""
    first = params["cls_token"]
    xp = array_module(first)
    K = encoder.num_classes if num_classes is None else num_classes
    cfg = encoder.replace(num_classes=K, head_init="zeros")
    params = {**params, "head.weight": xp.zeros((K, encoder.embed_dim), dtype=first.dtype),
              "head.bias": xp.zeros((K,), dtype=first.dtype)}
    return VisionTransformer(cfg, {k: params[k] for k in param_shapes(cfg)})


class PretrainingModel(ModelBase):
    """A model with a ViT encoder (config.encoder) and no classification head."""

    @property
    def vit_config(self) -> ViTConfig:
        return self.config.encoder

    def encoder_params(self) -> dict:
        """The encoder as a ViT parameter dict (timm names, no head)."""
        return {k: self.params[k] for k in param_shapes(self.config.encoder) if k in self.params}

    def to_vit(self, num_classes=None):
        """A VisionTransformer with this encoder and a new zero head (fine-tuning, probing)."""
        return vit_from_encoder(self.config.encoder, self.encoder_params(), num_classes)

    def describe(self) -> str:
        """What the model adds to its encoder, for its repr."""
        return ""

    def __repr__(self):
        e = self.config.encoder
        return (f"{type(self).__name__}(encoder {e.name}: D={e.embed_dim}, depth={e.depth}; "
                f"{self.describe()}, {self.num_params():,} params, {self.dtype})")


__all__ = ["PretrainingModel", "VisionTransformer", "check_params", "count_params",
           "create_model", "vit_from_encoder"]
