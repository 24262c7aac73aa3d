"""A reference Vision Transformer in PyTorch, to check minivit against autograd.

PyTorch is *not* a dependency of minivit: this module is imported only by the tests and by
``minivit gradcheck`` (lazily, inside a function), and fails with one clear message where torch
is missing.  Install the CPU build with ``pip install torch==2.13.0``.

The model mirrors timm's ``VisionTransformer`` module by module, so its ``state_dict`` has
exactly the names and shapes of minivit's parameter dict and loads it with ``strict=True``:

    cls_token (1, 1, D)  pos_embed (1, N+1, D)  patch_embed.proj = Conv2d(C, D, P, stride=P)
        (with a convolutional stem: patch_embed.backbone.{i}.conv = Conv2d(3x3, stride 2) + ReLU,
         patch_embed.proj = Conv2d(C_last, D, 1), as timm's HybridEmbed)
    blocks[i]: norm1, attn.qkv (D -> 3D), attn.proj, norm2, mlp.fc1, mlp.fc2
    norm, head

LayerNorm eps is 1e-6; GELU is exact ("erf") or ``approximate="tanh"`` as the config says; the
pooled feature is the class token (``pool="token"``) or the mean of the patch tokens after the
final norm (``pool="mean"``, class token excluded).  Dropout and stochastic depth are left out:
the reference is used in evaluation mode, where both are the identity.  PatchDropout is there,
with the kept indices passed in (``keep_indices``), so that both sides keep the same tokens.

A distilled config (DeiT) adds ``dist_token`` (after the class token, pos_embed (1, N+2, D))
and ``head_dist``, registered last as in timm's ``VisionTransformerDistilled``; ``forward``
returns the mean of the two heads, or both stacked (2, B, K) with ``both_heads=True``.

    tm = build_torch_vit(model.config, model.params)          # float64 if the params are
    logits, loss, grads, dimages = reference_gradients(model.config, model.params, images, labels)
"""

from __future__ import annotations

from collections import OrderedDict

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(
        "minivit.reference.torch_twin needs PyTorch, which is only a test/reference dependency of "
        "minivit: pip install torch==2.13.0 (CPU build)") from e

from minivit.backend import to_numpy
from minivit.models.vit_config import ViTConfig, get_config

LN_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Cut into P x P patches and project each to D: a stride-P convolution, as in timm."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        P = cfg.patch_size
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, kernel_size=P, stride=P)

    def forward(self, x):                              # (B, C, H, W) -> (B, N, D)
        return self.proj(x).flatten(2).transpose(1, 2)


class HybridEmbed(nn.Module):
    """A convolutional stem, then a 1 x 1 projection (timm's ``HybridEmbed`` names):
    backbone[i] = Conv2d(3x3, stride 2, padding 1) + ReLU, proj = Conv2d(C_last, D, 1)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        layers, c_in = [], cfg.in_chans
        for c_out in cfg.conv_stem:
            layers.append(nn.Sequential(OrderedDict(
                conv=nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), act=nn.ReLU())))
            c_in = c_out
        self.backbone = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, cfg.embed_dim, kernel_size=1)

    def forward(self, x):                              # (B, C, H, W) -> (B, N, D)
        return self.proj(self.backbone(x)).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with timm's fused qkv layout: rows q | k | v, then heads.

    fused=False writes softmax(q k^T / sqrt(d)) v out; fused=True calls
    ``F.scaled_dot_product_attention``.  Both must agree with minivit.
    """

    def __init__(self, cfg: ViTConfig, fused: bool = False):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.scale = self.head_dim ** -0.5
        self.fused = fused
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x):                              # (B, T, D) -> (B, T, D)
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                        # (B, h, T, d) each
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_dim)
        self.act = nn.GELU(approximate="none" if cfg.gelu == "erf" else "tanh")
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.embed_dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN encoder block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ViTConfig, fused_attn: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.attn = Attention(cfg, fused=fused_attn)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.mlp = Mlp(cfg)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchViT(nn.Module):
    """timm-compatible ViT for a minivit ``ViTConfig`` (evaluation mode: no dropout)."""

    def __init__(self, cfg: ViTConfig, fused_attn: bool = False):
        super().__init__()
        self.config = cfg
        D = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + cfg.num_prefix_tokens, D))
        self.patch_embed = HybridEmbed(cfg) if cfg.conv_stem else PatchEmbed(cfg)
        self.blocks = nn.ModuleList([Block(cfg, fused_attn) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(D, eps=LN_EPS)
        self.head = nn.Linear(D, cfg.num_classes)
        if cfg.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
            self.head_dist = nn.Linear(D, cfg.num_classes)

    def forward(self, images, keep_indices=None, both_heads=False):   # -> (B, num_classes)
        x = self.patch_embed(images)                   # (B, N, D)
        prefix = [self.cls_token] + ([self.dist_token] if self.config.distilled else [])
        P = len(prefix)
        x = torch.cat([t.expand(x.shape[0], -1, -1) for t in prefix] + [x], dim=1) + self.pos_embed
        if keep_indices is not None:                   # timm's PatchDropout, indices given
            kept = x[:, P:].gather(1, keep_indices.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :P], kept], dim=1)     # (B, P+K, D)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.config.distilled:
            cls, dist = self.head(x[:, 0]), self.head_dist(x[:, 1])
            return torch.stack([cls, dist]) if both_heads else (cls + dist) / 2
        pooled = x[:, 0] if self.config.pool == "token" else x[:, 1:].mean(dim=1)
        return self.head(pooled)


# ------------------------------------------------------------------ moving arrays across

def torch_dtype(dtype) -> "torch.dtype":
    """"float32"/"float64" (or a NumPy dtype) -> torch.float32/torch.float64."""
    name = getattr(dtype, "name", str(dtype)).replace("torch.", "")
    return {"float32": torch.float32, "float64": torch.float64}[name]


def to_torch(x, dtype=None) -> "torch.Tensor":
    """A NumPy/CuPy array (or scalar) -> a CPU tensor that owns a copy of the data."""
    t = torch.from_numpy(to_numpy(x).copy())
    return t if dtype is None else t.to(torch_dtype(dtype))


def from_torch(t):
    """A tensor -> a NumPy array (host); use minivit.to_device to move it on."""
    return t.detach().cpu().numpy()


def load_minivit_params(module: "TorchViT", params: dict) -> "TorchViT":
    """Copy minivit's parameter dict into the torch model, names checked with strict=True."""
    module.load_state_dict({k: to_torch(v) for k, v in params.items()}, strict=True)
    return module


def build_torch_vit(config, params: dict | None = None, dtype="float64",
                    fused_attn: bool = False) -> "TorchViT":
    """A TorchViT for a ViTConfig (or config name), in ``dtype``, loaded with ``params``.

    When params are given, the model takes their dtype (so float32 params give a float32 model).
    """
    cfg = get_config(config)
    if params is not None:
        dtype = to_numpy(next(iter(params.values()))).dtype
    module = TorchViT(cfg, fused_attn=fused_attn).to(torch_dtype(dtype))
    if params is not None:
        load_minivit_params(module, params)
    return module.eval()


def torch_grads(module: "TorchViT") -> dict:
    """{parameter name: gradient as a NumPy array}, in state-dict order."""
    return {k: from_torch(p.grad) for k, p in module.named_parameters()}


def reference_gradients(config, params: dict, images, labels, label_smoothing: float = 0.0,
                        fused_attn: bool = False, keep_indices=None):
    """What PyTorch autograd says for one batch: (logits, loss, grads dict, dimages).

    images (B, C, H, W) and params in the same dtype; labels (B,) int or (B, K) soft targets;
    the loss is ``F.cross_entropy`` (mean over the batch).  keep_indices (B, K) ints: the patch
    tokens that PatchDropout keeps (timm's gather, class token always kept); None keeps all.
    Everything comes back as NumPy.
    """
    module = build_torch_vit(config, params, fused_attn=fused_attn)
    x = to_torch(images).requires_grad_(True)
    y = to_torch(labels)
    keep = None if keep_indices is None else to_torch(keep_indices).long()
    logits = module(x, keep)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    loss.backward()
    return from_torch(logits), loss.item(), torch_grads(module), from_torch(x.grad)


__all__ = ["Attention", "Block", "HybridEmbed", "LN_EPS", "Mlp", "PatchEmbed", "TorchViT",
           "build_torch_vit", "from_torch", "load_minivit_params", "reference_gradients",
           "to_torch", "torch_dtype", "torch_grads"]
