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
# # 03 · Inside a trained ViT
#
# Section 4.5 of the ViT paper ("Inspecting Vision Transformer") looks inside a trained model
# in four ways, and we do the same for a small ViT trained on CIFAR-10, next to an untrained
# model of the same shape so that we can tell what training did:
#
# * **Fig. 7 left**: the principal components of the patch-embedding filters;
# * **Fig. 7 center**: how similar the position embeddings of different patches are;
# * **Fig. 7 right**: how far, in pixels, each attention head looks ("attention distance");
# * **Fig. 6**: which pixels end up in the image's representation, by *attention rollout*
#   (Abnar & Zuidema, *Quantifying Attention Flow in Transformers*, 2020). The paper's model
#   classifies from its class token; ours from the mean of its patch tokens, so we roll the
#   attention out to that mean (section 6).
#
# The computations are in `minivit/analysis/attention.py` and the figures in `minivit/analysis/inspect_figures.py`;
# `minivit inspect CHECKPOINT --image IMG...` makes the paper's versions of them from the
# command line (section 8).
#
# The trained model is one that `minivit train` made with its recipe (walkthrough 04) for 38
# epochs, the default length until 2026-12-06, committed with its run in
# `results/cifar-nano-pd50-38ep-um1/`: cifar-nano (811,146
# parameters) trained from scratch on CIFAR-10 on a 2-core CPU on 2026-11-23, 38 epochs in
# 60 minutes, with mean pooling (the head reads the mean of the 64 patch tokens, not a class
# token) and patch dropout 0.5 (each training image kept a random half of its patch tokens;
# evaluation sees all of them). It reached 80.12% validation and 80.24% test accuracy.

# %%
import shutil
import sys
import tempfile
from pathlib import Path

from _setup import DPI, TRAINED_MODEL, TRAINED_RUN, shown, walkthrough   # this checkout's minivit
FAST, OUT, ASSETS, save = walkthrough("03_inside_a_trained_vit")

import numpy as np

import minivit
from minivit.analysis import attention as A
from minivit.analysis import embeddings as E
from minivit.analysis import inspect_figures as PI
from minivit.backend import to_device, to_numpy
from minivit.data import normalize


def show(path):
    """A figure minivit.analysis.inspect_figures wrote: in Jupyter, display it."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(str(path)))


print("fast mode" if FAST else "full mode", "| figures in", shown(OUT))

# %% [markdown]
# ## 1. The two models and the images
#
# The untrained model is initialised exactly as `minivit train` initialises it (timm's scheme,
# seed 0). Images: the 64 CIFAR-10 test images of `assets/cifar10_sample.npz`; in full mode, if
# the whole data set is found (`$MINIVIT_DATA`, see `minivit train --help`), the 10,000 test
# images too.

# %%
CKPT = TRAINED_MODEL
if CKPT.is_file():
    trained = minivit.load(CKPT)
    TRAINED = "trained"
elif FAST:
    print(f"{CKPT.name} not found; fast mode: a tiny untrained model stands in for it")
    trained = minivit.create_model("cifar-nano", seed=1, depth=2, embed_dim=32, mlp_dim=64,
                                   pool="mean", patch_drop_rate=0.5)
    TRAINED = "stand-in (untrained)"
else:
    raise FileNotFoundError(f"{CKPT} not found: train a model (walkthrough 04) and copy its "
                            "model.safetensors there, or run with MINIVIT_FAST=1")
cfg = trained.config
untrained = minivit.create_model(cfg, seed=0, dtype=trained.dtype)
models = {TRAINED: trained, "untrained": untrained}
print(trained)

sample = np.load(ASSETS / "cifar10_sample.npz")
x_u8, y = sample["x"], sample["y"]
names = [str(n) for n in sample["label_names"]]
mean, std = sample["mean"], sample["std"]
if FAST:
    x_u8, y = x_u8[:16], y[:16]


def prepare(u8):
    return normalize(to_device(u8), mean, std, trained.dtype)


test = None
if not FAST:
    from minivit.data.cifar_format import TEST_FILE, read_batch
    from minivit.data.download import find_cifar10
    try:
        test = read_batch(find_cifar10() / TEST_FILE)
        print("CIFAR-10 test set found:", test[0].shape)
    except FileNotFoundError:
        print("CIFAR-10 not found: using the 64 sample images only")

for label, m in models.items():
    logits, _ = A.capture_attention(m, prepare(x_u8))
    acc = float((to_numpy(logits).argmax(1) == y).mean())
    print(f"{label:>10}: accuracy {100 * acc:5.1f}% on the {len(y)} sample images")

# %% [markdown]
# ## 2. Patch-embedding filters (Fig. 7 left)
#
# The first layer maps each 4 x 4 x 3 patch (48 numbers) to $D$ = 128 dimensions with a
# matrix $E$; each row of $E$ is a *filter*, a little 4 x 4 RGB image. The paper shows the
# principal components of the filters, which "resemble plausible basis functions for a
# low-dimensional representation of the fine structure within each patch". PCA: centre the
# $D$ filters, take the SVD $X = U S V^\top$; the rows of $V^\top$ are the components, ordered
# by the variance they explain ($S_i^2$).

# %%
pcas = {label: E.patch_embedding_pca(m.params["patch_embed.proj.weight"], k=28)
        for label, m in models.items()}
for label, (comps, ratio) in pcas.items():
    r = to_numpy(ratio)
    print(f"{label:>10}: components {comps.shape}, first 5 explain "
          f"{', '.join(f'{100 * v:.1f}%' for v in r[:5])}; 28 explain {100 * r.sum():.0f}%")
    V = to_numpy(comps).reshape(28, -1)
    assert np.allclose(V @ V.T, np.eye(28), atol=1e-10)    # orthonormal
show(PI.plot_filter_pca(list(pcas.items()), OUT / "01_filters_pca.png", dpi=DPI))

# %% [markdown]
# The untrained filters are random, so their variance is spread almost evenly over the
# components (4.2-4.9% each for the first five). In the paper (ViT-L/32, pre-trained on 300
# million images) the components are smooth basis functions, colour blobs and low-frequency
# gradients first, like the first layer of a CNN. Our model, trained for 38 epochs on
# CIFAR-10, gets part of the way: its first components explain twice as much (9.5% and 7.3%
# for the first two), and the first row of the figure has structure, a split between red top
# rows and blue bottom rows, dark and light bands, patches of one colour; from the second row
# on the components look as noisy as the untrained ones. (Much of what the model learned is
# elsewhere: in the position embeddings below and in the attention.)
#
# ## 3. Position embeddings (Fig. 7 center)
#
# Each of the 64 patch positions has a learned vector added to its token. Tile $(i, j)$ shows the
# cosine similarity of the embedding of the patch in row $i$, column $j$ with the embeddings of
# all 64 positions. "Closer patches tend to have more similar position embeddings. Further,
# the row-column structure appears; patches in the same row/column have similar embeddings."

# %%
sims = {label: E.position_embedding_similarity(m.params["pos_embed"]) for label, m in models.items()}
for label, s in sims.items():
    s = to_numpy(s)
    g = s.shape[0]
    assert np.allclose(s.reshape(g * g, g * g).diagonal(), 1.0)
    # mean similarity of neighbours vs of patches >= 4 apart
    d = A.patch_distances(g, 1).reshape(g, g, g, g)
    print(f"{label:>10}: mean similarity to a neighbour {s[d == 1].mean():.2f}, "
          f"to patches 4 or more apart {s[d >= 4].mean():.2f}")
show(PI.plot_position_similarity(list(sims.items()), OUT / "02_position_similarity.png", dpi=DPI))

# %% [markdown]
# The untrained embeddings are random vectors: each tile is noise with a single bright pixel,
# the patch itself. The trained ones have learned the geometry of the grid from the images
# alone: neighbours have a cosine similarity of 0.80 on average, patches 4 or more apart
# -0.22. Each tile is a smooth blob around its own patch, wider along the row than along the
# column, and patches near the border resemble the whole border ring while the centre
# patches resemble the centre: rows are told apart better than columns. The tiles are also
# nearly mirror images left to right (tile (4, 2) is bright at column 2 and at column 7): with
# horizontal flips in the augmentation, a patch's column and its mirrored column hold the
# same kind of content, so the model has little reason to tell them apart.

# %% [markdown]
# ## 4. Attention distance (Fig. 7 right)
#
# For each head: the distance in pixels between a query patch and the patches it attends to,
# weighted by the attention, averaged over the query patches and over images — the analogue of
# a CNN's receptive field. We use the patch-to-patch part of the attention (class token
# removed, each row renormalised over the patches; see `mean_attention_distance`), which
# means the same whether the model pools a class token or the patch tokens. Attention
# spread evenly over all patches would give the mean distance between two patches (dashed).
# The paper finds that "some heads attend to most of the image already in the lowest layers",
# others are local, and that the distance grows with depth.

# %%
dist_images = test[0][:128] if test is not None else x_u8
dists, on_cls = {}, {}
for label, m in models.items():
    _, attn = A.capture_attention(m, prepare(dist_images))
    assert len(attn) == cfg.depth and attn[0].shape == (len(dist_images), cfg.num_heads,
                                                         cfg.num_patches + 1, cfg.num_patches + 1)
    dists[label] = to_numpy(A.mean_attention_distance(attn, cfg.grid_size, cfg.patch_size))
    assert dists[label].shape == (cfg.depth, cfg.num_heads)
    # the weight the patch queries put on token 0, the class token, per layer
    on_cls[label] = [float(to_numpy(a[:, :, 1:, 0]).mean()) for a in attn]
uniform = float(A.patch_distances(cfg.grid_size, cfg.patch_size).mean())
print(f"over {len(dist_images)} images; uniform attention: {uniform:.1f} px")
for label, d in dists.items():
    print(f"{label:>10}: heads from {d.min():.1f} to {d.max():.1f} px; first layer "
          f"{d[0].min():.1f}-{d[0].max():.1f}, last layer {d[-1].min():.1f}-{d[-1].max():.1f}")
for label, d in dists.items():
    print(f"{label:>10}: per layer, min / max over heads (pixels), patch attention on the class token:")
    for layer, row in enumerate(d):
        print(f"    layer {layer + 1}: {row.min():5.1f} / {row.max():5.1f}   "
              f"{100 * on_cls[label][layer]:4.1f}%")
show(PI.plot_attention_distance(list(dists.items()), OUT / "03_attention_distance.png",
                                image_size=cfg.image_size, reference=uniform, dpi=DPI))

# %% [markdown]
# Untrained attention is almost uniform (queries and keys are small random projections), so
# every head sits on the dashed line. Training moves the heads off it. How far, and in which
# direction, depends on the model and its data: the paper's local heads in the lowest layers
# come from large models pre-trained on 300 million images. Ours shows a mild form of the
# same picture: no head is local (the closest, 12.9 px, still spreads over about three
# patches in every direction), but in layers 2 and 3 all heads look closer than uniform
# attention would (12.9-15.4 px against 16.5), the distance grows from layer 4 on, two heads
# of layers 4 and 5 look further than uniform (17.4 px: they prefer distant patches), and
# the last layer sits at the uniform value (16.2-16.4 px).
#
# The last column is the weight the patch queries give token 0, the class token. Our model's
# head never reads the class token's output, but the token is still in the sequence, a
# learned vector the patches may attend to. They mostly do not: 2.5% in layer 1 and 0.2-1.4%
# after it, against 1.5% (1 of 65 tokens) for uniform attention.
#
# ## 5. What each head looks at
#
# The paper's model classifies from its class token, so its attention maps are the class
# token's row of the attention matrix. Ours classifies from the mean of the 64 patch tokens,
# and the class token's row tells nothing about that: its final state is never read. What a
# mean-pooled model takes from one attention head is the mean of the patch queries' outputs,
# $\frac{1}{N}\sum_q \sum_k A_{qk} v_k = \sum_k \big(\frac{1}{N}\sum_q A_{qk}\big)\, v_k$:
# each patch's value enters with the average weight the 64 patch queries give it. That average
# row (`minivit.analysis.attention.pooled_attention_map`: patch queries, patch keys, the class token's column left
# out) is drawn for each head of the first and the last block, each map scaled to its own
# maximum: bright patches are read by many queries, dark ones by few.

# %%
def pooled_attention_map(attn, head=None):
    """One layer's attention (B, heads, T, T) or a rollout (B, T, T) -> (B, g, g)."""
    return A.pooled_attention_map(attn, cfg.grid_size, "mean", head=head)


show_idx = np.arange(4 if FAST else 6)
imgs = x_u8[show_idx]
logits, attn = A.capture_attention(trained, prepare(imgs))
from minivit.layers.softmax import softmax_forward
probs = to_numpy(softmax_forward(logits)[0])
titles = [f"{names[y[i]]}\n-> {names[p.argmax()]} {p.max():.2f}" for i, p in zip(show_idx, probs)]
for layer in (0, cfg.depth - 1):
    maps = np.stack([to_numpy(pooled_attention_map(attn[layer], head=h))
                     for h in range(cfg.num_heads)], axis=1)
    assert maps.shape == (len(imgs), cfg.num_heads, cfg.grid_size, cfg.grid_size)
    show(PI.plot_attention_heads(imgs, maps, OUT / f"04_heads_layer{layer + 1}.png", titles,
                                 title=f"{TRAINED}: mean patch-query attention, block {layer + 1}",
                                 dpi=DPI))

# %% [markdown]
# In block 1 the maps are spread out: most patches get some weight from the other patches,
# with a few brighter ones scattered over the image, not obviously on the object. In block 6
# the heads are selective: in each map a handful of patches are bright and most are almost
# dark, and the bright ones are mostly on the object, the cat's face and ears, the frogs'
# bodies, the ships' superstructure and hull; one head of the last block (head 3) stays more
# spread out than the others.
#
# ## 6. Attention rollout (Fig. 6)
#
# One layer's attention is not what the classifier "sees": information also flows through the
# residual connections, and layers compose. Attention rollout (Abnar & Zuidema 2020) accounts
# for both: average the heads, add the identity for the residual path and renormalise the rows,
# $\hat A_\ell = \tfrac12 A_\ell + \tfrac12 I$, then multiply through the layers,
# $\tilde A = \hat A_L \cdots \hat A_1$. Row $i$ of $\tilde A$ says how much each input token
# contributes to token $i$'s final state. The ViT paper's Fig. 6 reads row 0, the class
# token's, because its classifier reads the class token. Ours reads the mean of the patch
# tokens, so we average the 64 patch rows of $\tilde A$ (`pooled_attention_map(R)`): how much
# each input patch contributes to the pooled representation. This average includes the
# identity paths, which give every patch the same share, so the map is flatter than a class
# token's row would be: what stands out is what the attention adds on top of them.
#
# The colours are relative to the average patch (`plot_rollout`): the middle of the scale is
# what uniform attention gives, bright is twice the average or more, dark is none. So the
# untrained model, whose attention is uniform, is one flat colour.

# %%
rollouts = {}
for label, m in models.items():
    _, at = A.capture_attention(m, prepare(imgs))
    R = A.attention_rollout(at)
    assert R.shape == (len(imgs), cfg.num_patches + 1, cfg.num_patches + 1)
    assert np.allclose(to_numpy(R.sum(axis=-1)), 1.0)
    rollouts[f"rollout, {label}"] = pooled_attention_map(R)
    share = to_numpy(R[:, 1:, 0].mean(axis=1))       # what the pooled state takes from token 0
    print(f"{label:>10}: the class token's share of the pooled rollout: "
          f"{100 * share.mean():.1f}% (images: {100 * share.min():.1f}-{100 * share.max():.1f}%)")
show(PI.plot_rollout(imgs, list(rollouts.items()), OUT / "05_rollout.png", titles,
                     title="attention rollout: what reaches the mean of the patch tokens\n"
                           "(colour: 0 .. 2x the average patch)", dpi=DPI))

# %% [markdown]
# The untrained model's maps are flat, as expected. The trained model's are not far from flat,
# the identity paths at work: in these six images every patch gets between half and two and a
# half times the average. The brighter patches lie on the object for the frogs (their
# bodies) and the first ship (its hull), but not always: the second ship's brightest patch is
# the sky in the top-left corner, the airplane's the bottom-right corner. The class token
# contributes 1.5% of the pooled state,
# what an untrained model gives it too. Compared with the paper's Fig. 6, where the class
# token's rollout is a sharp silhouette of the object, the mean-pooled rollout is a gentle
# tilt of a nearly uniform map: the pooled state is by construction a sum over all patches,
# and the attention only reweights it.
#
# ## 7. The images it gets most wrong
#
# The misclassified images with the lowest probability on their true class
# (`confident_mistakes`), with their rollout maps. Look at what they were taken for: a small
# model's most confident mistakes often follow colour, texture and background more than
# shape, or confuse similar classes; and some of the labels are doubtful.
#
# Among the 10,000 test images, six of the eight worst were taken for a bird or a deer, the
# animals CIFAR-10 shows on grass, earth and leaves: a black cat on grass, a truck on a road
# between green verges, a frog on a wooden wall. The white car on a white background was
# taken for an airplane. The fourth image, labelled cat, looks like a green frog, and the
# model says frog. The rollout maps of these images are brightest on the object itself, the
# cat, the truck, the deer, the frogs: the model looked at the right place and read it
# wrong.

# %%
pool_x, pool_y = (test[0], test[1]) if test is not None else (x_u8, y)
chunks = [to_numpy(A.capture_attention(trained, prepare(pool_x[i:i + 500]))[0])
          for i in range(0, len(pool_x), 500)]
logits_all = np.concatenate(chunks)
acc = float((logits_all.argmax(1) == pool_y).mean())
print(f"{TRAINED}: accuracy {100 * acc:.2f}% on {len(pool_y)} test images")
worst = A.confident_mistakes(logits_all, pool_y, k=4 if FAST else 8)
title = f"most confident mistakes among {len(pool_y)} test images"
if len(worst) == 0:                  # all right (a few sample images): the least sure ones
    probs = to_numpy(softmax_forward(logits_all.astype("float64"))[0])
    worst = probs[range(len(pool_y)), pool_y].argsort()[:4 if FAST else 8]
    title = f"no mistakes among {len(pool_y)} test images: the least sure ones"
_, at = A.capture_attention(trained, prepare(pool_x[worst]))
maps = pooled_attention_map(A.attention_rollout(at))
p_worst = to_numpy(softmax_forward(logits_all[worst].astype("float64"))[0])
caps = [f"true {names[pool_y[i]]} {p[pool_y[i]]:.2f}\nsaid {names[p.argmax()]} {p.max():.2f}"
        for i, p in zip(worst, p_worst)]
for c in caps:
    print("  " + c.replace("\n", ", "))
show(PI.plot_mistakes(pool_x[worst], maps, caps, OUT / "06_mistakes.png", title=title, dpi=DPI))

# %% [markdown]
# ## 8. From the command line
#
# `minivit inspect` draws these figures for any checkpoint (a run directory or a model file),
# for your own PNG/JPEG images, next to an untrained model of the same config, and, when it
# finds CIFAR-10, the test images the model gets most wrong. Its head and rollout figures are
# the paper's, read from the class token's row: for a class-token model they are the ones
# that matter; for a mean-pooled model like ours they show where the class token, which the
# head never reads, gathers from, not what the classifier uses (sections 5 and 6 above are
# the mean-pooled versions). Given the run directory, it normalises with the run's mean and
# standard deviation:
#
# ```bash
# minivit inspect results/cifar-nano-pd50-38ep-um1 --image cat.png ship.jpg --out inspect/
# ```

# %%
import contextlib
import io
import os
import re

from PIL import Image

from minivit.cli import main as minivit_cli

tmp = Path(tempfile.mkdtemp(prefix="minivit-inspect-"))
paths = []
for i in (0, 1):
    paths.append(f"test{i}_{names[y[i]]}.png")
    Image.fromarray(x_u8[i].transpose(1, 2, 0)).save(tmp / paths[i])
ckpt = TRAINED_RUN if CKPT.is_file() else tmp / "stand-in.safetensors"
if not CKPT.is_file():
    minivit.save(trained, ckpt)
argv = ["inspect", str(ckpt), "--image", *paths, "--out", "inspect"]
argv += ["--no-compare-untrained", "--mistakes", "0"] if FAST else ["--num-test", "1000"]
print("$ minivit " + " ".join(Path(a).name if "/" in a else a for a in argv))
start_dir, printed = Path.cwd(), io.StringIO()
os.chdir(tmp)                                        # the images and inspect/ lie here
try:
    with contextlib.redirect_stdout(printed):
        assert minivit_cli(argv) == 0
finally:
    os.chdir(start_dir)
print(re.sub(r"(?<!\S)/(?:[^/\s]+/)+([^/\s]+)", r"\1", printed.getvalue()), end="")  # folder names only
print(sorted(p.name for p in (tmp / "inspect").iterdir()))
shutil.rmtree(tmp)
