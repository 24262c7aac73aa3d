# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · From pixels to prediction, one step at a time
#
# We follow **one real CIFAR-10 test image** through a Vision Transformer (Dosovitskiy et al.,
# *An Image is Worth 16x16 Words*, ICLR 2021), calling minivit's hand-written layers one by
# one, printing and checking every shape, and drawing what the numbers look like. At the end
# we check that the step-by-step computation gives exactly what `model.forward` gives, then
# compute the loss, one backward pass and a few AdamW steps.
#
# The whole model is four equations of the paper:
#
# $$z_0 = [x_\text{class};\ x_p^1 E;\ \dots;\ x_p^N E] + E_\text{pos} \qquad (1)$$
# $$z'_\ell = \text{MSA}(\text{LN}(z_{\ell-1})) + z_{\ell-1} \qquad (2)$$
# $$z_\ell = \text{MLP}(\text{LN}(z'_\ell)) + z'_\ell \qquad (3)$$
# $$y = \text{LN}(z_L^0) \qquad (4)$$
#
# Equation (4) reads the class token's final state. The model we follow, minivit's default,
# reads the mean of the patch tokens' final states instead (section 16):
# $y = \frac{1}{N} \sum_{i=1}^{N} \text{LN}(z_L)^i$.
#
# Run it with `python walkthroughs/01_pixels_to_prediction.py` (`MINIVIT_FAST=1` for a quick
# run; the figures go to a new temporary folder, printed below, or to `$MINIVIT_OUT` when it
# is set), or open it as a notebook with jupytext.

# %%

from _setup import TRAINED_MODEL, shown, walkthrough   # this checkout's minivit, FAST, OUT, save()
FAST, OUT, ASSETS, save = walkthrough("01_pixels_to_prediction")

import matplotlib.pyplot as plt
import numpy as np

import minivit
from minivit.backend import to_device, to_numpy


def diverging(a):
    """imshow arguments: a red-blue colour map with white at 0."""
    m = float(abs(to_numpy(a)).max()) or 1.0
    return dict(cmap="RdBu_r", vmin=-m, vmax=m)


print("fast mode" if FAST else "full mode", "| figures in", shown(OUT))

# %% [markdown]
# ## 1. One image and its label
#
# `assets/cifar10_sample.npz` holds the first 64 images of the CIFAR-10 test set, read with
# minivit's own reader (`minivit.data.read_batch`; `assets/make_cifar10_sample.py` wrote it),
# as uint8 arrays `(N, C, H, W) = (64, 3, 32, 32)`, with their labels and the per-channel
# mean and standard deviation of the training set.

# %%
sample = np.load(ASSETS / "cifar10_sample.npz")
images_u8, labels = sample["x"], sample["y"]
label_names = [str(n) for n in sample["label_names"]]
mean, std = sample["mean"], sample["std"]
print("images", images_u8.shape, images_u8.dtype, "| labels", labels.shape, labels.dtype)
assert images_u8.shape == (64, 3, 32, 32) and images_u8.dtype == np.uint8

i = 0                                                 # the first test image
image_u8, label = images_u8[i], int(labels[i])
print(f"image {i}: {label_names[label]!r} (class {label}), pixel values {image_u8.min()}..{image_u8.max()}")

fig, ax = plt.subplots(figsize=(2.4, 2.6), layout="constrained")
ax.imshow(image_u8.transpose(1, 2, 0), interpolation="nearest")
ax.set_title(f"label: {label_names[label]}")
ax.set_axis_off()
save(fig, "01_image")

# %% [markdown]
# The network takes floating-point inputs, each channel standardised with the training set's
# statistics: $x = (\text{pixel}/255 - \mu_c) / \sigma_c$ (`minivit.data.normalize`).

# %%
from minivit.data import normalize

x = normalize(to_device(image_u8[None]), mean, std, "float32")    # a batch of one: (1, 3, 32, 32)
print("x", x.shape, x.dtype)
print("per-channel mean of this image after normalising:", to_numpy(x.mean(axis=(0, 2, 3))).round(3))
assert x.shape == (1, 3, 32, 32)

# %% [markdown]
# ## 2. The model
#
# `cifar-nano`: 32 x 32 images in 4 x 4 patches, width $D = 128$, 6 blocks of 4 heads, MLP
# width 256. We use the model that `minivit train` makes with its default recipe, committed
# with its run in `results/cifar-nano-pd50-38ep-um1/`: trained from scratch on CIFAR-10 for
# 38 epochs on a 2-core CPU (2026-11-23), mean pooling, patch dropout 0.5 in training, 80.24%
# test accuracy (walkthrough 04 explains the recipe). When the file is missing, a freshly
# initialised model of the same config stands in: the shapes are the same, the pictures less
# telling. Its parameters are a flat dict with timm's names and shapes.

# %%
CKPT = TRAINED_MODEL
if CKPT.is_file():
    model = minivit.load(CKPT)
    print("loaded", "/".join(CKPT.parts[-3:]))
else:
    model = minivit.create_model("cifar-nano", seed=0, pool="mean", patch_drop_rate=0.5)
    print(f"{CKPT.name} not found: an untrained model")
print(model)
cfg, p = model.config, model.params
P, D, H, L = cfg.patch_size, cfg.embed_dim, cfg.num_heads, cfg.depth
N, d = cfg.num_patches, cfg.head_dim
print(f"P={P}  N={N} patches  D={D}  heads={H}  head width d={d}  blocks={L}")
for name in ["patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.attn.qkv.weight",
             "blocks.0.attn.proj.weight", "blocks.0.mlp.fc1.weight", "head.weight"]:
    print(f"  {name:<28} {tuple(p[name].shape)}")

# %% [markdown]
# ## 3. Cut the image into patches
#
# "We reshape the image $x \in \mathbb{R}^{H\times W\times C}$ into a sequence of flattened 2D
# patches $x_p \in \mathbb{R}^{N \times (P^2 C)}$" (section 3.1). With $P = 4$ a 32 x 32
# image gives $N = 32\cdot 32/4^2 = 64$ patches, numbered row by row (left to right, then
# top to bottom), each $P^2 C = 48$ numbers. `patchify` is a pure reshape/transpose, and
# `unpatchify` puts the image back together exactly.

# %%
from matplotlib import patheffects

from minivit.layers.patches import patchify, unpatchify

patches = patchify(x, P)
print("patches", patches.shape, "= (batch, N, P*P*C)")
assert patches.shape == (1, N, P * P * 3)
assert (unpatchify(patches, P, 3) == x).all()

g = cfg.grid_size
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), layout="constrained")
axes[0].imshow(image_u8.transpose(1, 2, 0), interpolation="nearest")
for t in range(1, g):
    axes[0].axhline(t * P - 0.5, color="white", lw=0.8)
    axes[0].axvline(t * P - 0.5, color="white", lw=0.8)
outlined = [patheffects.withStroke(linewidth=2, foreground="black")]   # readable on any colour
for n in range(N):
    r, c = divmod(n, g)
    axes[0].text(c * P + 1.5, r * P + 1.5, str(n), color="white", fontsize=9, fontweight="bold",
                 ha="center", va="center", path_effects=outlined)
axes[0].set_title(f"{g} x {g} grid of {P} x {P} patches")
# the same patches, pulled apart
tiles = patchify(to_device(image_u8[None]), P)[0].reshape(g, g, P, P, 3)
canvas = np.full((g * (P + 1), g * (P + 1), 3), 255, dtype=np.uint8)
for r in range(g):
    for c in range(g):
        canvas[r * (P + 1):r * (P + 1) + P, c * (P + 1):c * (P + 1) + P] = to_numpy(tiles[r, c])
axes[1].imshow(canvas, interpolation="nearest")
axes[1].set_title("the 64 patches, in order")
for ax in axes:
    ax.set_axis_off()
save(fig, "02_patches")

# %% [markdown]
# ## 4. Flatten each patch
#
# Each patch becomes one row of 48 numbers, in (row, column, channel) order: the first three
# are the red, green and blue values of the patch's top-left pixel. The image is now a
# 64 x 48 matrix, one row per patch.

# %%
first = to_numpy(patches[0, 0, :6])
print("patch 0, first 6 values:", first.round(3))
print("pixel (0,0) RGB, pixel (0,1) RGB:", to_numpy(x[0, :, 0, 0]).round(3), to_numpy(x[0, :, 0, 1]).round(3))
assert np.allclose(first[:3], to_numpy(x[0, :, 0, 0])) and np.allclose(first[3:6], to_numpy(x[0, :, 0, 1]))

fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
im = ax.imshow(to_numpy(patches[0]), aspect="auto", interpolation="nearest", cmap="RdBu_r",
               vmin=-2.5, vmax=2.5)
ax.set_xlabel("position inside the patch: (row, column, channel), 48 values")
ax.set_ylabel("patch number (64)")
ax.set_title("the image as a 64 x 48 matrix of flattened patches")
fig.colorbar(im, ax=ax, label="normalised value")
save(fig, "03_flattened")

# %% [markdown]
# ## 5. Patch embedding: $x_p E$
#
# One linear map $E$ (plus a bias), shared by all patches, takes each 48-vector to $D = 128$
# dimensions. minivit stores $E$ as timm does, as the kernel of a stride-$P$ convolution,
# `patch_embed.proj.weight` of shape $(D, C, P, P)$; `patch_embed_forward` is `patchify`
# followed by `linear_forward`. We check that against the linear layer ourselves.

# %%
from minivit.layers.linear import linear_forward
from minivit.layers.patch_embed import patch_embed_forward

W, b = p["patch_embed.proj.weight"], p["patch_embed.proj.bias"]
tokens, _ = patch_embed_forward(x, W, b)
print("kernel", W.shape, "-> patch tokens", tokens.shape, "= (batch, N, D)")
assert tokens.shape == (1, N, D)

E = W.transpose(0, 2, 3, 1).reshape(D, -1)           # (D, P*P*C), columns in patch order
by_hand, _ = linear_forward(patches, E, b)            # patches @ E.T + b
assert np.allclose(to_numpy(by_hand), to_numpy(tokens), atol=1e-5)
print("patchify + linear == patch_embed_forward: OK")

fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
im = ax.imshow(to_numpy(tokens[0]), aspect="auto", interpolation="nearest", **diverging(tokens[0]))
ax.set_xlabel("embedding dimension (D = 128)")
ax.set_ylabel("patch (N = 64)")
ax.set_title("patch embeddings x_p E + b")
fig.colorbar(im, ax=ax)
save(fig, "04_patch_embedding")

# %% [markdown]
# ## 6. The class token and the position embeddings
#
# A learned vector $x_\text{class}$ (`cls_token`, shape (1, 1, D)) is put in front of the 64
# patch tokens. In the paper its final state is the image's representation; our model pools
# the patch tokens instead, so for it the class token is one more token that the patches can
# attend to, whose own final state nobody reads. Attention by itself does
# not know where a token came from, so a learned position embedding (`pos_embed`, one row per
# token: $(N+1) \times D$) is added. This is all of equation (1): `embed_tokens_forward`.

# %%
from minivit.layers.tokens import embed_tokens_forward

z0, _ = embed_tokens_forward(tokens, p["cls_token"], p["pos_embed"])
print("cls_token", p["cls_token"].shape, "| pos_embed", p["pos_embed"].shape, "| z0", z0.shape)
assert z0.shape == (1, N + 1, D)
assert np.allclose(to_numpy(z0[0, 0]), to_numpy(p["cls_token"][0, 0] + p["pos_embed"][0, 0]))
assert np.allclose(to_numpy(z0[0, 1:]), to_numpy(tokens[0] + p["pos_embed"][0, 1:]))

fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
for ax, arr, title in [(axes[0], p["pos_embed"][0], "position embeddings E_pos, (N+1) x D"),
                       (axes[1], z0[0], "z_0 = [x_class; x_p E] + E_pos")]:
    im = ax.imshow(to_numpy(arr), aspect="auto", interpolation="nearest", **diverging(arr))
    ax.set_xlabel("dimension")
    ax.set_ylabel("token (0 = class token)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax)
save(fig, "05_tokens")

# %% [markdown]
# ## 7. Block 1: LayerNorm
#
# Each block first normalises every token over its $D$ features, then scales and shifts:
# $\text{LN}(z) = \frac{z - \mu}{\sqrt{\sigma^2 + \epsilon}}\,\gamma + \beta$ (equation (2)
# starts with it).

# %%
from minivit.layers.layernorm import layernorm_forward

bp = model.block_params(0)                            # block 0's parameters, short names
a, (xhat, rstd, _) = layernorm_forward(z0, bp["norm1.weight"], bp["norm1.bias"])
print("LN(z0)", a.shape)
print("token means before:", to_numpy(z0[0, :4].mean(axis=-1)).round(3), "after normalising:",
      to_numpy(xhat[0, :4].mean(axis=-1)).round(6))
print("token std after normalising: min", float(xhat.std(axis=-1).min()), "max", float(xhat.std(axis=-1).max()))
assert np.allclose(to_numpy(xhat.mean(axis=-1)), 0, atol=1e-5)
assert np.allclose(to_numpy(xhat.std(axis=-1)), 1, atol=3e-3)   # a bit under 1 where var ~ eps

# %% [markdown]
# ## 8. Queries, keys and values
#
# One fused linear map `attn.qkv` ($D \to 3D$) gives, for every token, a query, a key and a
# value; each is split into $h = 4$ heads of width $d = D/h = 32$:
# $[q, k, v] = \text{LN}(z)\,U_{qkv}$. Rows $0..D-1$ of the weight make $q$, the next $D$ make
# $k$, the last $D$ make $v$; inside each, head $j$ owns rows $jd .. (j+1)d - 1$.

# %%
from minivit.layers.attention import split_heads_qkv

qkv, _ = linear_forward(a, bp["attn.qkv.weight"], bp["attn.qkv.bias"])
q, k, v = split_heads_qkv(qkv, H)
print("qkv", qkv.shape, "-> q, k, v", q.shape, "= (batch, heads, tokens, d)")
assert qkv.shape == (1, N + 1, 3 * D) and q.shape == k.shape == v.shape == (1, H, N + 1, d)
# head 0's keys, by hand: rows D .. D+d-1 of the weight
k0, _ = linear_forward(a[0], bp["attn.qkv.weight"][D:D + d], bp["attn.qkv.bias"][D:D + d])
assert np.allclose(to_numpy(k0), to_numpy(k[0, 0]), atol=1e-5)

fig, axes = plt.subplots(1, 3, figsize=(8, 3.4), layout="constrained", sharey=True)
for ax, arr, nm in zip(axes, (q, k, v), "qkv"):
    ax.imshow(to_numpy(arr[0, 0]), aspect="auto", interpolation="nearest",
              **diverging(arr[0, 0]))
    ax.set_title(f"{nm}, head 1: (N+1) x d")
    ax.set_xlabel("dimension (d = 32)")
axes[0].set_ylabel("token")
save(fig, "06_qkv")

# %% [markdown]
# ## 9. Attention scores and the softmax
#
# Every query is compared with every key: $S = q k^\top / \sqrt{d}$, a $(N+1) \times (N+1)$
# matrix per head (row $i$: how well token $i$'s query matches each key). Dividing by
# $\sqrt{d}$ keeps the scores' spread independent of $d$. A softmax over each row turns the
# scores into weights that are positive and sum to one: $A = \text{softmax}(S)$.

# %%
from minivit.layers.softmax import softmax_forward

scores = (q @ k.transpose(0, 1, 3, 2)) / d ** 0.5
A, _ = softmax_forward(scores)
print("scores", scores.shape, "| attention A", A.shape)
row_sums = to_numpy(A.sum(axis=-1))
print("row sums: min", row_sums.min(), "max", row_sums.max())
assert np.allclose(row_sums, 1.0, atol=1e-6)

fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
for ax, arr, title in [(axes[0], scores, "scores q k^T / sqrt(d), head 1"),
                       (axes[1], A, "A = softmax(scores), rows sum to 1")]:
    im = ax.imshow(to_numpy(arr[0, 0]), cmap="viridis", interpolation="nearest")
    ax.set_xlabel("key token")
    ax.set_ylabel("query token")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax)
save(fig, "07_scores_softmax")

# %% [markdown]
# ## 10. The weighted sum of the values
#
# Token $i$'s output in a head is the average of all values, weighted by its row of $A$:
# $\text{SA}(z)_i = \sum_j A_{ij} v_j$. First for one token, the patch in row 3, column 3 near
# the middle of the image (patch 27, token 28: the class token is token 0), then for all
# tokens at once ($A v$), and then the same through `attention_core_forward`.

# %%
from minivit.layers.attention import attention_core_forward

QUERY = 27                                            # the patch we follow; its token is QUERY + 1
out_q = to_numpy(A[0, 0, QUERY + 1]) @ to_numpy(v[0, 0])   # (N+1,) weights @ (N+1, d) values
print(f"patch {QUERY}, head 1:", out_q.shape, out_q[:5].round(3))
out = A @ v                                           # all tokens, all heads
print("A @ v", out.shape)
core, core_cache = attention_core_forward(q, k, v)
probs = core_cache.probs
assert np.allclose(to_numpy(core[0, 0, QUERY + 1]), out_q, atol=1e-5)
assert np.allclose(to_numpy(core), to_numpy(out), atol=1e-5) and np.allclose(to_numpy(probs), to_numpy(A))
print("by hand == attention_core_forward: OK")

fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.4), layout="constrained",
                         gridspec_kw={"width_ratios": [1.3, 1, 1]})
axes[0].bar(range(N + 1), to_numpy(A[0, 0, QUERY + 1]), color="tab:blue")
axes[0].set_title(f"A[{QUERY + 1}]: patch {QUERY}'s weights, head 1", fontsize=10)
axes[0].set_xlabel("key token j")
axes[1].imshow(to_numpy(v[0, 0]), aspect="auto", interpolation="nearest", **diverging(v[0, 0]))
axes[1].set_title("values v, head 1: (N+1) x d", fontsize=10)
axes[1].set_ylabel("token j")
axes[2].imshow(to_numpy(out[0, :, QUERY + 1]), aspect="auto", interpolation="nearest",
               **diverging(out[0, :, QUERY + 1]))
axes[2].set_title(f"A v for patch {QUERY}, each head", fontsize=10)
axes[2].set_yticks(range(H), [f"head {h + 1}" for h in range(H)])
axes[2].set_xlabel("dimension (d = 32)")
save(fig, "07b_weighted_values")

# %% [markdown]
# ## 11. Several heads side by side
#
# Each head has its own $q, k, v$, so each looks for something else. Top row: the four
# attention matrices; bottom row: patch 27's row of each (which patches it reads; the outlined
# square is patch 27 itself), laid out on the 8 x 8 grid over the image, each map scaled to its
# own maximum. A class-token model would be read through row 0, the class token's; ours pools
# the patch tokens, so every patch's row counts, and we look at one of them.

# %%
from matplotlib.patches import Rectangle

from minivit.analysis.inspect_figures import overlay


def patch_row_map(attn, query, head=None):
    """One layer's attention (B, heads, T, T) -> (B, g, g): the row of patch ``query`` (token
    query + 1) over the patch keys, for one head or the mean over heads; the weight on the
    class token (column 0) is left out."""
    a = attn.mean(axis=1) if head is None else attn[:, head]
    return a[:, query + 1, 1:].reshape(len(a), g, g)


def mark(ax, patch):
    r, c = divmod(patch, g)
    ax.add_patch(Rectangle((c * P - 0.5, r * P - 0.5), P, P, fill=False, ec="white", lw=1.2))


fig, axes = plt.subplots(2, H, figsize=(2.2 * H, 4.6), layout="constrained")
for h in range(H):
    axes[0, h].imshow(to_numpy(A[0, h]), cmap="viridis", interpolation="nearest")
    axes[0, h].set_title(f"head {h + 1}", fontsize=9)
    axes[0, h].set_xticks([])
    axes[0, h].set_yticks([])
    overlay(axes[1, h], image_u8, patch_row_map(A, QUERY, head=h)[0])
    mark(axes[1, h], QUERY)
axes[0, 0].set_ylabel("query")
fig.suptitle(f"block 1: attention of each head; below, patch {QUERY}'s row over the image", fontsize=10)
save(fig, "08_heads")

# %% [markdown]
# Already in block 1 the four heads differ: each attention matrix has its own pattern of
# bright columns (keys that many queries read), and patch 27 reads a different handful of
# patches in each head, scattered over the image rather than next to it.

# %% [markdown]
# ## 12. Merge the heads and project
#
# The heads' outputs are concatenated back to width $D$ and mixed by one more linear map,
# `attn.proj`: $\text{MSA}(z) = [\text{SA}_1; \dots; \text{SA}_h]\,U_\text{msa}$. Together,
# steps 8 to 12 are `attention_forward`.

# %%
from minivit.layers.attention import attention_forward, merge_heads

merged = merge_heads(out)
msa, _ = linear_forward(merged, bp["attn.proj.weight"], bp["attn.proj.bias"])
print("merged", merged.shape, "-> MSA", msa.shape)
ref, _ = attention_forward(a, bp["attn.qkv.weight"], bp["attn.qkv.bias"],
                           bp["attn.proj.weight"], bp["attn.proj.bias"], H)
assert merged.shape == (1, N + 1, D) and np.allclose(to_numpy(msa), to_numpy(ref), atol=1e-5)
print("by hand == attention_forward: OK")

# %% [markdown]
# ## 13. The residual connection
#
# The attention's output is *added* to its input, equation (2): $z'_1 = \text{MSA}(\text{LN}(z_0)) + z_0$.
# Each block only adds an update to the tokens, which is what makes deep stacks trainable.

# %%
z1p = z0 + msa
print("z'_1", z1p.shape, "| mean |update| / mean |z0| =",
      round(float(abs(msa).mean() / abs(z0).mean()), 3))

fig, axes = plt.subplots(1, 4, figsize=(11, 3.4), layout="constrained", sharey=True)
for ax, arr, title in zip(axes, (merged, msa, z0, z1p),
                          ("heads merged: [SA_1; ...; SA_h]", "MSA = merged U_msa (attn.proj)",
                           "z_0, the block's input", "z'_1 = z_0 + MSA")):
    ax.imshow(to_numpy(arr[0]), aspect="auto", interpolation="nearest", **diverging(z1p[0]))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"feature (D = {D})")
axes[0].set_ylabel("token")
fig.suptitle("block 1: the projected attention output is added to the residual stream "
             "(one colour scale)", fontsize=10)
save(fig, "08b_projection_residual")

# %% [markdown]
# ## 14. LayerNorm and the GELU MLP
#
# Equation (3): $z_1 = \text{MLP}(\text{LN}(z'_1)) + z'_1$, the MLP being two linear maps
# with a GELU between ($D \to 256 \to D$), applied to every token separately:
# $\text{GELU}(u) = u\,\Phi(u) = \tfrac{u}{2}\left(1 + \text{erf}(u/\sqrt 2)\right)$.
# We check the whole block against `block_forward`.

# %%
from minivit.layers.block import block_forward
from minivit.layers.gelu import gelu_forward

m, _ = layernorm_forward(z1p, bp["norm2.weight"], bp["norm2.bias"])
hid, _ = linear_forward(m, bp["mlp.fc1.weight"], bp["mlp.fc1.bias"])
act, _ = gelu_forward(hid)
mlp_out, _ = linear_forward(act, bp["mlp.fc2.weight"], bp["mlp.fc2.bias"])
z1 = z1p + mlp_out
print("LN", m.shape, "-> fc1", hid.shape, "-> GELU", act.shape, "-> fc2", mlp_out.shape, "-> z_1", z1.shape)
ref_block, _ = block_forward(z0, bp, H, cfg.gelu)
assert hid.shape == (1, N + 1, cfg.mlp_dim) and np.allclose(to_numpy(z1), to_numpy(ref_block), atol=1e-5)
print("by hand == block_forward: OK")

u = np.linspace(-4, 4, 200)
fig, axes = plt.subplots(1, 2, figsize=(8, 3), layout="constrained")
axes[0].plot(u, to_numpy(gelu_forward(u)[0]), label="GELU(u) = u Phi(u)")
axes[0].plot(u, np.maximum(u, 0), "--", label="ReLU", alpha=0.6)
axes[0].legend()
axes[0].grid(alpha=0.3)
axes[0].set_title("the non-linearity")
axes[1].hist(to_numpy(hid).ravel(), bins=60, alpha=0.6, label="fc1 output")
axes[1].hist(to_numpy(act).ravel(), bins=60, alpha=0.6, label="after GELU")
axes[1].legend()
axes[1].set_title("block 1's MLP on this image")
save(fig, "09_mlp_gelu")

# %% [markdown]
# ## 15. The stack of blocks
#
# The same block, with its own parameters, is applied $L = 6$ times. Below: for each block,
# patch 27's attention (mean over heads) over the image.

# %%
z = z1
attn_maps = [patch_row_map(A, QUERY)[0]]
block_outputs = [to_numpy(z1[0])]                     # z_1 .. z_L, (N+1, D) each
for i in range(1, L):
    z, block_cache = block_forward(z, model.block_params(i), H, cfg.gelu)
    attn_maps.append(patch_row_map(block_cache.probs, QUERY)[0])
    block_outputs.append(to_numpy(z[0]))
    print(f"after block {i + 1}: z {z.shape}, mean token norm {float((z * z).sum(-1).mean() ** 0.5):.2f}")
assert z.shape == (1, N + 1, D)

fig, axes = plt.subplots(1, L, figsize=(1.6 * L, 2), layout="constrained")
for i, ax in enumerate(axes):
    overlay(ax, image_u8, attn_maps[i], title=f"block {i + 1}")
    mark(ax, QUERY)
save(fig, "10_blocks")

# each block's output: every patch token's norm, on the image grid
fig, axes = plt.subplots(1, L, figsize=(1.6 * L, 2.1), layout="constrained")
for i, ax in enumerate(axes):
    norms = np.linalg.norm(block_outputs[i][1:], axis=-1).reshape(g, g)
    ax.imshow(norms, cmap="magma", interpolation="nearest")
    ax.set_title(f"|z_{i + 1}| {norms.min():.0f}..{norms.max():.0f}", fontsize=8)
    ax.set_axis_off()
fig.suptitle("the output of each block: the size of every patch token", fontsize=10)
save(fig, "10b_block_outputs")

# %% [markdown]
# Averaged over the heads, patch 27's attention changes from block to block: spread over many
# patches in block 1, on its own row's patches left and right of it in block 3, on a few
# single patches in the later blocks.

# %% [markdown]
# ## 16. Pooling and the classifier
#
# The final LayerNorm, then one vector for the image goes to the linear head, giving one score
# ("logit") per class. In the paper (equation (4)) that vector is the class token's state
# (row 0); in our model (`pool="mean"`) it is the mean of the 64 patch tokens' states (rows
# 1 to 64), so every patch token feeds the head directly (walkthrough 04 says why). A softmax
# turns the logits into probabilities. Our step-by-step logits must equal `model.forward(x)`.

# %%
zf, _ = layernorm_forward(z, p["norm.weight"], p["norm.bias"])
y_img = zf[:, 0] if cfg.pool == "token" else zf[:, 1:].mean(axis=1)   # (1, D)
logits, _ = linear_forward(y_img, p["head.weight"], p["head.bias"])
probs_cls, _ = softmax_forward(logits)
print(f"pool={cfg.pool!r}: image vector", y_img.shape, "-> logits", logits.shape)
model_logits = model.forward(x)
assert np.allclose(to_numpy(logits), to_numpy(model_logits), rtol=1e-4, atol=1e-5)
print("step by step == model.forward(x): OK; max difference",
      float(abs(to_numpy(logits) - to_numpy(model_logits)).max()))
pr = to_numpy(probs_cls[0])
for c in np.argsort(-pr)[:3]:
    print(f"  {label_names[c]:<10} {pr[c]:.3f}")

top = int(np.argmax(pr))
fig, axes = plt.subplots(2, 1, figsize=(8, 3.6), layout="constrained", sharex=True)
axes[0].bar(range(D), to_numpy(y_img[0]), color="tab:gray")
axes[0].set_title(f"the pooled vector y: the mean of the {N} normalised patch tokens", fontsize=10)
contrib = to_numpy(p["head.weight"][top] * y_img[0])
axes[1].bar(range(D), contrib, color=np.where(contrib > 0, "tab:red", "tab:blue"))
axes[1].set_title(f"W_{label_names[top]} * y, feature by feature: they sum to the logit "
                  f"{float(contrib.sum() + to_numpy(p['head.bias'])[top]):.2f} (with the bias)",
                  fontsize=10)
axes[1].set_xlabel(f"feature (D = {D})")
save(fig, "10c_pooled")

fig, ax = plt.subplots(figsize=(6, 2.8), layout="constrained")
colors = ["tab:green" if c == label else "tab:gray" for c in range(cfg.num_classes)]
ax.bar(label_names, pr, color=colors)
ax.set_ylabel("probability")
ax.set_title(f"prediction; true class {label_names[label]} in green")
ax.tick_params(axis="x", rotation=45)
save(fig, "11_probabilities")

# %% [markdown]
# ## 17. Loss, one backward pass, one AdamW step
#
# The cross-entropy is minus the log-probability of the true class,
# $\ell = -\log \text{softmax}(\text{logits})_y$, and its gradient with respect to the logits
# is $\text{softmax} - \text{onehot}(y)$. `model.backward` runs every layer's hand-written
# backward pass in reverse and fills `model.grads` (same names and shapes as the parameters);
# AdamW then updates every parameter. A few steps on this single image make its loss go down
# (that is memorising one picture, not learning; walkthrough 04 trains properly).

# %%
from minivit import AdamW, cross_entropy

y = to_device(np.array([label]))
loss, dlogits = cross_entropy(model.forward(x), y)
print(f"loss {loss:.4f} = -log p(true class) = {-np.log(pr[label]):.4f}")
assert abs(loss + np.log(pr[label])) < 1e-4
dimages = model.backward(dlogits)
print("dlogits", dlogits.shape, "| d loss / d image", dimages.shape,
      "|", len(model.grads), "gradient tensors")
assert dimages.shape == x.shape and set(model.grads) == set(model.params)
for name in ["head.weight", "blocks.5.attn.qkv.weight", "pos_embed", "patch_embed.proj.weight"]:
    print(f"  |grad {name}| = {float((model.grads[name] ** 2).sum() ** 0.5):.4f}")

# the same pass once more with a trace: the gradient reaching every block's input, per token
trace = {}
model.backward(cross_entropy(model.forward(x), y)[1], trace)
token_grads = [np.linalg.norm(to_numpy(dz[0, 1:]), axis=-1).reshape(g, g)
               for dz in trace["d_blocks"]]                # dL/dz_L, ..., dL/dz_0
pixel_grad = to_numpy(dimages[0])
fig, axes = plt.subplots(1, 5, figsize=(11, 2.6), layout="constrained")
axes[0].imshow(image_u8.transpose(1, 2, 0), interpolation="nearest")
axes[0].set_title("the image", fontsize=9)
for ax, lvl in zip(axes[1:3], (L, 0)):
    ax.imshow(token_grads[L - lvl], cmap="magma", interpolation="nearest")
    ax.set_title(f"|dL/dz_{lvl}| per patch token", fontsize=9)
axes[3].imshow(np.linalg.norm(pixel_grad, axis=0), cmap="magma", interpolation="nearest")
axes[3].set_title("|dL/dx| per pixel", fontsize=9)
axes[4].imshow(pixel_grad.sum(axis=0), interpolation="nearest", **diverging(pixel_grad.sum(0)))
axes[4].set_title("dL/dx, channels summed", fontsize=9)
for ax in axes:
    ax.set_axis_off()
fig.suptitle("the gradient of the loss, from the last block's output back to the pixels",
             fontsize=10)
save(fig, "11b_gradient_map")

# %% [markdown]
# These are real gradients of this model on this image: the loss reaches every patch token
# through the mean pooling, each block reshapes where it is large, and at the pixels it is
# largest on the cat and small on the blue background.

# %%
opt = AdamW(model.params, lr=1e-4, weight_decay=0.05)
losses = [loss]
for step in range(3 if FAST else 10):
    opt.step(model.params, model.grads)
    loss, dlogits = cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    losses.append(loss)
print("loss after each step:", " ".join(f"{v:.4f}" for v in losses))
assert losses[-1] < losses[0]

fig, ax = plt.subplots(figsize=(4.5, 2.8), layout="constrained")
ax.plot(losses, "o-")
ax.set_xlabel("AdamW step (lr 1e-4)")
ax.set_ylabel("cross-entropy")
ax.set_title("the loss on this one image goes down")
ax.grid(alpha=0.3)
save(fig, "12_loss_steps")

# %% [markdown]
# That is the whole forward and backward pass. Walkthrough 02 derives each backward pass and
# checks it; walkthrough 03 looks at what a trained model has learned; walkthrough 04 trains
# one on CIFAR-10.
#
# To do all of this interactively, for any patch, head and block, and to step the backward
# pass from the loss to the pixels for any target class, open
# [`rendered/explain_cat.html`](explain_cat.html), written by
# `minivit explain results/cifar-nano-hour-s0 cat.png --out explain_cat.html` (the one-hour run,
# on the same test image; docs/explain.md describes the page). Your own image:
# `minivit explain RUN_DIR my_image.png --out my_image.html`.
