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
# * **Fig. 6**: which pixels the class token ends up using, by *attention rollout*
#   (Abnar & Zuidema, *Quantifying Attention Flow in Transformers*, 2020).
#
# The computations are in `minivit/analysis.py` and the figures in `minivit/plots_inspect.py`;
# `minivit inspect CHECKPOINT --image IMG...` makes all of them from the command line.
#
# The trained model is `assets/cifar-nano-trained.safetensors`: cifar-nano (811k parameters)
# trained from scratch on a 2-core CPU by `minivit train` with the default recipe of sessions 2-5
# (class token, no patch dropout, 18 epochs; today `--set pool=token --patch-drop 0 --epochs
# 18`), in 109 minutes; it reached 75.6% validation and 75.3% test accuracy
# (`results/cifar-nano-18ep/`). Today's default recipe (walkthrough 04) reaches 79.0%.

# %%
import shutil
import sys
import tempfile
from pathlib import Path

from _setup import DPI, shown, walkthrough   # this checkout's minivit, FAST, OUT, save()
FAST, OUT, ASSETS, save = walkthrough("03_inside_a_trained_vit")

import numpy as np

import minivit
from minivit import analysis as A
from minivit import plots_inspect as PI
from minivit.backend import to_device, to_numpy
from minivit.data import normalize


def show(path):
    """A figure minivit.plots_inspect wrote: in Jupyter, display it."""
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
CKPT = ASSETS / "cifar-nano-trained.safetensors"
if CKPT.is_file():
    trained = minivit.load(CKPT)
    TRAINED = "trained"
elif FAST:
    print(f"{CKPT.name} not found; fast mode: a tiny untrained model stands in for it")
    trained = minivit.create_model("cifar-nano", seed=1, depth=2, embed_dim=32, mlp_dim=64)
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
pcas = {label: A.patch_embedding_pca(m.params["patch_embed.proj.weight"], k=28)
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
# components. In the paper (ViT-L/32, pre-trained on 300 million images) the components are
# smooth basis functions, colour blobs and low-frequency gradients first, like the first layer
# of a CNN. A small model trained for a few epochs on CIFAR-10 moves its patch filters much
# less: compare the printed variance of the first components with the untrained model's, and
# the two panels. (Much of what the model learned is elsewhere: in the position embeddings
# below and in the attention.)
#
# ## 3. Position embeddings (Fig. 7 center)
#
# Each of the 64 patch positions has a learned vector added to its token. Tile $(i, j)$ shows the
# cosine similarity of the embedding of the patch in row $i$, column $j$ with the embeddings of
# all 64 positions. "Closer patches tend to have more similar position embeddings. Further,
# the row-column structure appears; patches in the same row/column have similar embeddings."

# %%
sims = {label: A.position_embedding_similarity(m.params["pos_embed"]) for label, m in models.items()}
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
# ## 4. Attention distance (Fig. 7 right)
#
# For each head: the distance in pixels between a query patch and the patches it attends to,
# weighted by the attention, averaged over the query patches and over images — the analogue of
# a CNN's receptive field. We use the patch-to-patch part of the attention (class token
# removed, each row renormalised over the patches; see `mean_attention_distance`). Attention
# spread evenly over all patches would give the mean distance between two patches (dashed).
# The paper finds that "some heads attend to most of the image already in the lowest layers",
# others are local, and that the distance grows with depth.

# %%
dist_images = test[0][:128] if test is not None else x_u8
dists = {}
for label, m in models.items():
    _, attn = A.capture_attention(m, prepare(dist_images))
    assert len(attn) == cfg.depth and attn[0].shape == (len(dist_images), cfg.num_heads,
                                                         cfg.num_patches + 1, cfg.num_patches + 1)
    dists[label] = to_numpy(A.mean_attention_distance(attn, cfg.grid_size, cfg.patch_size))
    assert dists[label].shape == (cfg.depth, cfg.num_heads)
uniform = float(A.patch_distances(cfg.grid_size, cfg.patch_size).mean())
print(f"over {len(dist_images)} images; uniform attention: {uniform:.1f} px")
for label, d in dists.items():
    print(f"{label:>10}: heads from {d.min():.1f} to {d.max():.1f} px; first layer "
          f"{d[0].min():.1f}-{d[0].max():.1f}, last layer {d[-1].min():.1f}-{d[-1].max():.1f}")
for label, d in dists.items():
    print(f"{label:>10}: per layer, min / max over heads (pixels):")
    for layer, row in enumerate(d):
        print(f"    layer {layer + 1}: {row.min():5.1f} / {row.max():5.1f}")
show(PI.plot_attention_distance(list(dists.items()), OUT / "03_attention_distance.png",
                                image_size=cfg.image_size, reference=uniform, dpi=DPI))

# %% [markdown]
# Untrained attention is almost uniform (queries and keys are small random projections), so
# every head sits on the dashed line. Training moves the heads off it. How far, and in which
# direction, depends on the model and its data: the paper's local heads in the lowest layers
# come from large models pre-trained on 300 million images. Our 18-epoch model shows a mild
# form of the same trend: its lowest layers look 1-3 pixels closer than uniform attention
# would (14.0-15.4 px against 16.5), and the distance grows with depth up to the uniform value
# in the last layer. (After only 6 epochs, an earlier model of this recipe stayed within a
# pixel of uniform everywhere.) Compare the printed ranges.
#
# ## 5. What each head looks at
#
# The class token's row of the attention matrix, per head, over the 8 x 8 patch grid, for the
# first and the last block of the trained model (`cls_attention_map(attn, grid, head=h)`).

# %%
show_idx = np.arange(4 if FAST else 6)
imgs = x_u8[show_idx]
logits, attn = A.capture_attention(trained, prepare(imgs))
from minivit.layers.softmax import softmax_forward
probs = to_numpy(softmax_forward(logits)[0])
titles = [f"{names[y[i]]}\n-> {names[p.argmax()]} {p.max():.2f}" for i, p in zip(show_idx, probs)]
for layer in (0, cfg.depth - 1):
    maps = np.stack([to_numpy(A.cls_attention_map(attn[layer], cfg.grid_size, head=h))
                     for h in range(cfg.num_heads)], axis=1)
    assert maps.shape == (len(imgs), cfg.num_heads, cfg.grid_size, cfg.grid_size)
    show(PI.plot_attention_heads(imgs, maps, OUT / f"04_heads_layer{layer + 1}.png", titles,
                                 title=f"{TRAINED}: class-token attention in block {layer + 1}",
                                 dpi=DPI))

# %% [markdown]
# ## 6. Attention rollout (Fig. 6)
#
# One layer's attention is not what the classifier "sees": information also flows through the
# residual connections, and layers compose. Attention rollout (Abnar & Zuidema 2020) accounts
# for both: average the heads, add the identity for the residual path and renormalise the rows,
# $\hat A_\ell = \tfrac12 A_\ell + \tfrac12 I$, then multiply through the layers,
# $\tilde A = \hat A_L \cdots \hat A_1$. Row 0 of $\tilde A$ says how much each input patch
# contributes to the class token's final state. The ViT paper's Fig. 6 uses it.
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
    rollouts[f"rollout, {label}"] = A.cls_attention_map(R, cfg.grid_size)
show(PI.plot_rollout(imgs, list(rollouts.items()), OUT / "05_rollout.png", titles,
                     title="attention rollout: what reaches the class token\n"
                           "(colour: 0 .. 2x the average patch)", dpi=DPI))

# %% [markdown]
# ## 7. The images it gets most wrong
#
# The misclassified images with the lowest probability on their true class
# (`confident_mistakes`), with their rollout maps. Look at what they were taken for: a small
# model's most confident mistakes often follow colour and background more than shape (a
# blue or white background read as sky or sea: airplane, ship), or confuse similar classes
# (cat and dog, automobile and truck).

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
maps = A.cls_attention_map(A.attention_rollout(at), cfg.grid_size)
p_worst = to_numpy(softmax_forward(logits_all[worst].astype("float64"))[0])
caps = [f"true {names[pool_y[i]]} {p[pool_y[i]]:.2f}\nsaid {names[p.argmax()]} {p.max():.2f}"
        for i, p in zip(worst, p_worst)]
for c in caps:
    print("  " + c.replace("\n", ", "))
show(PI.plot_mistakes(pool_x[worst], maps, caps, OUT / "06_mistakes.png", title=title, dpi=DPI))

# %% [markdown]
# ## 8. The same from the command line
#
# `minivit inspect` draws all of these for any checkpoint (a run directory or a model file),
# for your own PNG/JPEG images, next to an untrained model of the same config, and, when it
# finds CIFAR-10, the test images the model gets most wrong:
#
# ```bash
# minivit inspect walkthroughs/assets/cifar-nano-trained.safetensors --image cat.png ship.jpg --out inspect/
# ```

# %%
from PIL import Image

from minivit.cli import main as minivit_cli

tmp = Path(tempfile.mkdtemp(prefix="minivit-inspect-"))
paths = []
for i in (0, 1):
    paths.append(tmp / f"test{i}_{names[y[i]]}.png")
    Image.fromarray(x_u8[i].transpose(1, 2, 0)).save(paths[i])
ckpt = CKPT if CKPT.is_file() else tmp / "stand-in.safetensors"
if not CKPT.is_file():
    minivit.save(trained, ckpt)
argv = ["inspect", str(ckpt), "--image", *map(str, paths), "--out", str(tmp / "inspect")]
argv += ["--no-compare-untrained", "--mistakes", "0"] if FAST else ["--num-test", "1000"]
print("$ minivit " + " ".join(Path(a).name if "/" in a else a for a in argv))
assert minivit_cli(argv) == 0
print(sorted(p.name for p in (tmp / "inspect").iterdir()))
shutil.rmtree(tmp)
