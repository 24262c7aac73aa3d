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
# # 07 · Distillation: a second token that learns from a teacher
#
# A ViT has no convolution's bias towards local, translation-equivariant features, so on a
# medium-sized data set it falls behind a ResNet of the same cost. DeiT (Touvron et al. 2021,
# *Training data-efficient image transformers & distillation through attention*) lets a
# convnet *teacher* pass its answers to the ViT *student* through a second learned token:
#
# 1. the **distillation token** sits beside the class token (T = N + 2) and has its own head;
# 2. in training, the class head learns from the **labels**, the distillation head from the
#    **teacher's** answer on the very same augmented image;
# 3. at test time the two heads' logits are averaged.
#
# Here we take apart the models `minivit train` made on CIFAR-10 (section 8 gives the
# commands): an airbench teacher (airbench94's convnet, written with minivit's layers), a
# cifar-nano student distilled from it with DeiT's *hard* distillation, a second one with
# *soft* distillation, and the same student trained without a teacher, all committed with
# their runs in `results/`; section 9 repeats the comparison on 5,000 training images. The
# code is `minivit/models/vit.py` (the two tokens and heads),
# `minivit/training/objectives/distillation.py` (the objective) and `minivit/layers/distill.py`
# (the soft variant's KL loss).

# %%
import json

from _setup import TRAINED_RUN, shown, walkthrough  # this checkout's minivit, FAST, OUT, save()

FAST, OUT, ASSETS, save = walkthrough("07_distillation")

import matplotlib.pyplot as plt
import numpy as np

import minivit
from minivit.analysis import attention as A
from minivit.backend import rng as make_rng
from minivit.backend import to_device, to_numpy
from minivit.data import normalize, random_crop_flip
from minivit.layers.distill import soft_distillation_backward, soft_distillation_forward
from minivit.layers.loss import cross_entropy_device
from minivit.models.airbench import create_airbench

RESULTS = TRAINED_RUN.parent
TEACHER_RUN = RESULTS / "deit-teacher"
STUDENT_RUN = RESULTS / "deit-student"             # hard distillation
SOFT_RUN = RESULTS / "deit-student-soft"           # soft distillation, tau 1, lambda 0.5
TWIN_RUN = RESULTS / "deit-no-teacher"             # the same student without a teacher
print("fast mode" if FAST else "full mode", "| figures in", shown(OUT))


def load_or_stand_in(run, make):
    """The committed model of ``run``; in fast mode an untrained stand-in if it is missing."""
    path = run / "model.safetensors"
    if path.is_file():
        return minivit.load(path), "trained"
    if not FAST:
        raise FileNotFoundError(f"{path} not found: run the commands of section 8, or run with "
                                "MINIVIT_FAST=1")
    print(f"{path.name} of {run.name} not found; fast mode: an untrained stand-in")
    return make(), "untrained stand-in"


teacher, t_kind = load_or_stand_in(TEACHER_RUN, lambda: create_airbench(widths=(8, 16, 16)))
student, s_kind = load_or_stand_in(STUDENT_RUN, lambda: minivit.create_model(
    "cifar-nano", seed=1, depth=2, embed_dim=32, mlp_dim=64, distilled=True))
print("teacher:", t_kind, teacher)
print("student:", s_kind, student)

sample = np.load(ASSETS / "cifar10_sample.npz")
names = [str(n) for n in sample["label_names"]]
mean, std = sample["mean"], sample["std"]


def prepare(u8, dtype="float32"):
    return normalize(to_device(u8), mean, std, dtype)


# %% [markdown]
# ## 1. Two tokens, two heads
#
# The patch tokens $x_p^i E$ are the same as in walkthrough 01. In front of them go two
# learned vectors: the class token (index 0) and the distillation token (index 1), and the
# position embedding covers both (timm's `VisionTransformerDistilled` names: `cls_token`,
# `dist_token`, `pos_embed`, `head`, `head_dist`):
#
# $$z_0 = [\,x_\text{class};\ x_\text{dist};\ x_p^1 E; \dots; x_p^N E\,] + E_\text{pos},
#   \qquad E_\text{pos} \in \mathbb{R}^{(N+2) \times D}.$$
#
# Both tokens go through every block and attend to the patches and to each other. After the
# final LayerNorm, the head reads token 0 and `head_dist` reads token 1. In training the model
# returns both heads' logits, (2, B, K); in evaluation their mean, (B, K), as timm does;
# `split_heads=True` returns both in evaluation too.

# %%
cfg = student.config
x = prepare(sample["x"][:4])
both = to_numpy(student.forward(x, split_heads=True, keep_cache=False))       # (2, B, K)
avg = to_numpy(student.forward(x, keep_cache=False))                          # (B, K)
print("pos_embed", tuple(student.params["pos_embed"].shape), "= (1, N + 2, D) with N =",
      cfg.grid_size ** 2)
print("cls_token", tuple(student.params["cls_token"].shape), "| dist_token",
      tuple(student.params["dist_token"].shape))
print("head.weight", tuple(student.params["head.weight"].shape), "| head_dist.weight",
      tuple(student.params["head_dist.weight"].shape))
print("split heads", both.shape, "| evaluation", avg.shape)
assert student.params["pos_embed"].shape[1] == cfg.grid_size ** 2 + 2
assert both.shape == (2, 4, cfg.num_classes) and np.allclose(avg, both.mean(axis=0), atol=1e-6)
extra = sum(student.params[k].size for k in ("dist_token", "head_dist.weight", "head_dist.bias"))
print(f"the distillation token costs {extra + cfg.embed_dim:,} parameters "
      f"(token, its position embedding, head) of {student.num_params():,}")

# %% [markdown]
# ## 2. What each head learns
#
# For a batch of augmented images $x$ with labels $y$, the teacher (in evaluation mode, a
# constant: no gradient reaches it) answers $y_t = \arg\max_k \text{teacher}(x)_k$. DeiT's
# *hard* distillation, its best variant, trains
#
# $$L = \tfrac12\, \text{CE}(\text{cls}(x), y) + \tfrac12\, \text{CE}(\text{dist}(x), y_t).$$
#
# *Soft* distillation (Hinton et al. 2015) instead pulls the distillation head's softened
# distribution towards the teacher's, with temperature $\tau$ and weight $\lambda$:
#
# $$L = (1-\lambda)\,\text{CE}(\text{cls}, y) + \lambda \tau^2\,
#   \text{KL}\big(\text{softmax}(t/\tau)\ \|\ \text{softmax}(\text{dist}/\tau)\big),
#   \qquad \frac{\partial L_\text{KL}}{\partial\,\text{dist}} = \frac{\lambda\tau}{B}(q - p).$$
#
# The gradient with respect to the logits has two slices, one per head: the class head's comes
# only from the labels, the distillation head's only from the teacher. They meet in the
# encoder, which both tokens share; that is where the teacher's knowledge enters the
# features the class token reads too.

# %%
gen = make_rng(0)
x_aug = random_crop_flip(to_device(sample["x"][:16]), gen)          # the crop the student sees
xb, yb = prepare(x_aug), to_device(sample["y"][:16])
teacher_logits = teacher.forward(xb, train=False, keep_cache=False)              # (B, K)
y_t = teacher_logits.argmax(axis=1)
logits = student.forward(xb, train=True, patch_dropout=False)                     # (2, B, K)
ce_cls, d_cls = cross_entropy_device(logits[0], yb, 0.1)       # the labels, smoothed as in the run
ce_dist, d_dist = cross_entropy_device(logits[1], y_t)          # the teacher's argmax
hard = (ce_cls + ce_dist) / 2
dlogits = np.stack([to_numpy(d_cls) / 2, to_numpy(d_dist) / 2])                   # (2, B, K)
student.backward(to_device(dlogits))
print(f"hard: CE(cls, y) {float(ce_cls):.3f}, CE(dist, teacher) {float(ce_dist):.3f}, "
      f"loss {float(hard):.3f}")
print("teacher's answer differs from the label on", int((to_numpy(y_t) != sample["y"][:16]).sum()),
      "of 16 augmented images")
kl, kl_cache = soft_distillation_forward(logits[1], teacher_logits, tau=3.0)
d_soft = to_numpy(soft_distillation_backward(0.1, kl_cache))
print(f"soft (tau 3, lambda 0.1): KL {float(kl):.4f}; its gradient on dist rows sums to "
      f"{abs(d_soft.sum(axis=1)).max():.1e} (q - p sums to zero)")
print("gradient reaching dist_token",
      f"{float(np.abs(to_numpy(student.grads['dist_token'])).sum()):.3e}",
      "| cls_token", f"{float(np.abs(to_numpy(student.grads['cls_token'])).sum()):.3e}")
assert abs(d_soft.sum(axis=1)).max() < 1e-6

# %% [markdown]
# ## 3. Where the teacher and the labels disagree
#
# The distillation head's targets are not the labels. On clean training images a good teacher
# agrees with them almost always, but the student sees random crops and flips, and on a crop
# that lost the object, or on a truly ambiguous image, the teacher may answer something else.
# DeiT argues this is useful: the teacher's label follows what is *in the crop*. Here the
# teacher labels training images under the same crop and flip as in training (in fast mode,
# the 64 sample test images).

# %%
if FAST:
    train_u8, train_y = sample["x"], sample["y"]
else:
    from minivit.data import load_cifar10
    try:
        data = load_cifar10(val_size=5000)
        train_u8, train_y = data.train_x[:10000], data.train_y[:10000]
        print("CIFAR-10 found: the first 10,000 training images")
    except FileNotFoundError:
        train_u8, train_y = sample["x"], sample["y"]
        print("CIFAR-10 not found: the 64 sample images")


def predict(model, u8):
    """Logits (n, K) of uint8 images, every core (minivit.predict_logits)."""
    return to_numpy(minivit.predict_logits(model, prepare(u8)))


def both_heads(model, u8, batch=500):
    """The class and distillation heads' logits (2, n, K), a batch at a time."""
    return np.concatenate([to_numpy(model.forward(prepare(u8[i:i + batch]), split_heads=True,
                                                  keep_cache=False))
                           for i in range(0, len(u8), batch)], axis=1)


clean = predict(teacher, train_u8).argmax(1)
crops_u8 = to_numpy(random_crop_flip(to_device(train_u8), make_rng(1)))
cropped = predict(teacher, crops_u8).argmax(1)
print(f"teacher agrees with the label on {100 * (clean == train_y).mean():.1f}% of the clean "
      f"images, on {100 * (cropped == train_y).mean():.1f}% of their random crops")
wrong = np.flatnonzero(cropped != train_y)[:12]
fig, axes = plt.subplots(2, 6, figsize=(10, 4.2))
for ax, i in zip(axes.flat, wrong):
    ax.imshow(crops_u8[i].transpose(1, 2, 0))
    ax.set_title(f"label {names[train_y[i]]}\nteacher {names[cropped[i]]}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("crops the student trains on where the teacher's answer (its distillation "
             "target) is not the label", fontsize=10)
fig.tight_layout()
save(fig, "01_disagreements")
pairs = {}
for a, b in zip(train_y[wrong.tolist()], cropped[wrong.tolist()]):
    pairs[(names[a], names[b])] = pairs.get((names[a], names[b]), 0) + 1
print("label -> teacher among those shown:", dict(sorted(pairs.items(), key=lambda kv: -kv[1])))

# %% [markdown]
# The rates printed above say how often the teacher agrees with the labels on clean images
# and on the crops the student trains on. A strong teacher agrees with them on most images, so
# the distillation head's targets are mostly the labels; the crops shown are where they part.

# %% [markdown]
# ## 4. The trained student's two heads
#
# Each head alone is a classifier. DeiT reports that the distillation head does a little
# better than the class head, and their average better still, and that the two heads end up
# close but not identical. We score the class head, the distillation head and their mean on
# the test set, and how often each agrees with the teacher.

# %%
test_u8, test_y = sample["x"], sample["y"]
if not FAST:
    from minivit.data.cifar_format import TEST_FILE, read_batch
    from minivit.data.download import find_cifar10
    try:
        test_u8, test_y = read_batch(find_cifar10() / TEST_FILE)
        print("CIFAR-10 test set found:", test_u8.shape)
    except FileNotFoundError:
        print("CIFAR-10 not found: the 64 sample images")
heads = both_heads(student, test_u8)                                      # (2, n, K)
t_pred = predict(teacher, test_u8).argmax(1)
preds = {"class head": heads[0].argmax(1), "distillation head": heads[1].argmax(1),
         "mean of the heads": heads.mean(0).argmax(1)}
rows = [("teacher", t_pred)] + list(preds.items())
print(f"{'':>18}  accuracy  agrees with teacher   (n = {len(test_y):,})")
for label, p in rows:
    print(f"{label:>18}  {100 * (p == test_y).mean():7.2f}%  {100 * (p == t_pred).mean():8.2f}%")
heads_agree_rate = (preds['class head'] == preds['distillation head']).mean()
print(f"the two heads agree on {100 * heads_agree_rate:.1f}%"
      " of the images")

fig, ax = plt.subplots(figsize=(6, 3.2))
acc = [100 * (p == test_y).mean() for _, p in rows]
ax.barh([r[0] for r in rows][::-1], acc[::-1], color=["C0", "C1", "C2", "C3"][::-1])
for i, v in enumerate(acc[::-1]):
    ax.text(v + 0.3, i, f"{v:.2f}%", va="center", fontsize=9)
ax.set_xlim(min(acc) - 5, max(acc) + 4)
ax.set_xlabel(f"test accuracy (%), {len(test_y):,} images")
fig.tight_layout()
save(fig, "02_heads")

# %% [markdown]
# The table says how close each head comes to the teacher and to the labels, and how often
# the heads agree with each other: the student does not become a copy of its teacher.

# %% [markdown]
# ## 5. Where the two heads disagree
#
# The heads share every block; only their tokens and their last linear layers differ. Where
# they answer differently, the class head followed what the labels taught it and the
# distillation head what the teacher taught it. We show such test images with the four
# answers, and count, among all of them, which side each head and the teacher take.

# %%
split = np.flatnonzero(preds["class head"] != preds["distillation head"])
cls_p, dist_p = preds["class head"][split], preds["distillation head"][split]
print(f"{len(split):,} test images where the heads disagree; there")
print(f"  the class head is right on {(cls_p == test_y[split]).sum():,}, the distillation "
      f"head on {(dist_p == test_y[split]).sum():,}, the mean of the heads on "
      f"{(preds['mean of the heads'][split] == test_y[split]).sum():,}")
print(f"  the teacher sides with the distillation head on {(t_pred[split] == dist_p).sum():,}, "
      f"with the class head on {(t_pred[split] == cls_p).sum():,}")
shown_split = split[:12]
fig, axes = plt.subplots(2, 6, figsize=(10, 4.6))
for ax, i in zip(axes.flat, shown_split):
    ax.imshow(test_u8[i].transpose(1, 2, 0))
    ax.set_title(f"label {names[test_y[i]]}\nclass head {names[preds['class head'][i]]}\n"
                 f"dist. head {names[preds['distillation head'][i]]}\n"
                 f"teacher {names[t_pred[i]]}", fontsize=7)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("test images where the student's two heads disagree", fontsize=10)
fig.tight_layout()
save(fig, "03_heads_disagree")

# %% [markdown]
# The heads part on few images, and those are the hard ones: the label and the teacher often
# differ there too, and neither head is right much more often than the other. The counts
# above say how often the teacher sides with each head where they part: the one place where
# the teacher's answer, not the label, visibly decides what the student says.

# %% [markdown]
# ## 6. What the student learns, epoch by epoch
#
# A distilled run logs, at every validation, each head's accuracy and how often each agrees
# with the teacher (`metrics.jsonl`: `val_cls_acc`, `val_dist_acc`, `val_heads_agree`,
# `val_cls_teacher_agree`, `val_dist_teacher_agree`, `val_teacher_acc`, counted by
# `minivit/analysis/heads.py` on the 5,000 validation images, the teacher without test-time
# augmentation). The twin trained without a teacher is drawn beside it.

# %%
def metrics(run):
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


student_curve = [r for r in metrics(STUDENT_RUN) if r.get("val_dist_teacher_agree") is not None]
twin_curve = [r for r in metrics(TWIN_RUN) if r.get("val_acc") is not None]
soft_curve = [r for r in metrics(SOFT_RUN) if r.get("val_acc") is not None]
if not student_curve:
    print(f"{STUDENT_RUN.name} has no logged head agreement (not trained here)")
else:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ep = [r["epoch"] for r in student_curve]
    for key, label in (("val_acc", "hard student, heads' mean"), ("val_cls_acc", "class head"),
                       ("val_dist_acc", "distillation head")):
        ax1.plot(ep, [100 * r[key] for r in student_curve], label=label)
    for curve, style, label in ((twin_curve, "k--", "twin without teacher"),
                                (soft_curve, "k:", "soft-distilled student")):
        if curve:
            ax1.plot([r["epoch"] for r in curve], [100 * r["val_acc"] for r in curve], style,
                     label=label)
    ax1.axhline(100 * student_curve[-1]["val_teacher_acc"], color="grey", lw=0.8,
                label="teacher")
    ax1.set(xlabel="epoch", ylabel="validation accuracy (%)")
    ax1.legend(fontsize=7)
    for key, label in (("val_dist_teacher_agree", "distillation head = teacher"),
                       ("val_cls_teacher_agree", "class head = teacher"),
                       ("val_heads_agree", "class head = distillation head")):
        ax2.plot(ep, [100 * r[key] for r in student_curve], label=label)
    ax2.set(xlabel="epoch", ylabel="agreement on validation (%)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save(fig, "04_over_training")
    print(f"{'epoch':>5} {'mean':>7} {'class':>7} {'dist':>7} {'twin':>7} {'soft':>7} "
          f"{'dist=t':>7} {'class=t':>7} {'heads=':>7}")
    twin_at = {r["epoch"]: r["val_acc"] for r in twin_curve}
    soft_at = {r["epoch"]: r["val_acc"] for r in soft_curve}
    for r in student_curve:
        others = (twin_at.get(r["epoch"]), soft_at.get(r["epoch"]))
        print(f"{r['epoch']:>5} " + " ".join(f"{100 * r[k]:6.2f}%" for k in (
            "val_acc", "val_cls_acc", "val_dist_acc"))
              + "".join(f" {100 * a:6.2f}%" if a is not None else "       -" for a in others)
              + " ".join(f" {100 * r[k]:6.2f}%" for k in (
                  "val_dist_teacher_agree", "val_cls_teacher_agree", "val_heads_agree")))

# %% [markdown]
# Read the right panel first: the distillation head's agreement with the teacher rises with
# its accuracy and stays about one point above it, and the class head agrees with the teacher
# almost as often. A teacher that is right on 93% of the images mostly repeats the labels, so
# the two heads' targets differ on few training crops, and the heads end up agreeing on
# about 97% of the validation images. The left panel compares the student with its twin and
# with the soft-distilled student epoch by epoch: the teacher's extra knowledge would be the
# gap between the curves, and there is none to speak of; the three curves cross each other
# and end within a point.

# %% [markdown]
# ## 7. The two tokens' attention
#
# The two tokens start as different learned vectors; DeiT found their cosine similarity low at
# the input (0.06) and high after the last block (0.93): similar but not the same, since
# they aim at similar but different targets. We look at what each token's query attends to in
# the last block, and at the attention rollout (walkthrough 03) to each token over all
# blocks: rows 0 and 1 of the attention matrices, over the patch keys.

# %%
def cosine(a, b):
    a, b = to_numpy(a).ravel(), to_numpy(b).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


token_cosine = cosine(student.params['cls_token'], student.params['dist_token'])
print(f"cosine(cls_token, dist_token) = {token_cosine:.3f}"
      " (as learned, before the position embedding)")
print(f"cosine(head.weight, head_dist.weight) = "
      f"{cosine(student.params['head.weight'], student.params['head_dist.weight']):.3f}")

n_show = 4 if FAST else 6
xs = prepare(sample["x"][:n_show])
_, attn = A.capture_attention(student, xs)
g = cfg.grid_size
R = A.attention_rollout(attn)
maps = {"class token, last block": A.cls_attention_map(attn[-1], g, 2, token=0),
        "distillation token, last block": A.cls_attention_map(attn[-1], g, 2, token=1),
        "class token, rollout": A.cls_attention_map(R, g, 2, token=0),
        "distillation token, rollout": A.cls_attention_map(R, g, 2, token=1)}
fig, axes = plt.subplots(n_show, 5, figsize=(9, 1.9 * n_show))
for r in range(n_show):
    axes[r, 0].imshow(sample["x"][r].transpose(1, 2, 0))
    axes[r, 0].set_title(names[sample["y"][r]], fontsize=8)
    for c, (label, m) in enumerate(maps.items(), start=1):
        axes[r, c].imshow(to_numpy(m[r]), cmap="magma")
        if r == 0:
            axes[r, c].set_title(label.replace(", ", "\n"), fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
save(fig, "05_attention")

# how alike the two tokens' maps are, image by image, per block (mean over heads)
_, attn_all = A.capture_attention(student, prepare(test_u8[:256]))
for i, a in enumerate(attn_all):
    c = to_numpy(A.cls_attention_map(a, g, 2, token=0)).reshape(len(a), -1)
    d = to_numpy(A.cls_attention_map(a, g, 2, token=1)).reshape(len(a), -1)
    corr = np.mean([np.corrcoef(ci, di)[0, 1] for ci, di in zip(c, d)])
    w = to_numpy(a[:, :, 0, 1]).mean()
    print(f"block {i + 1}: correlation of the two tokens' patch maps {corr:+.2f}; "
          f"the class token's weight on the distillation token {w:.3f}")

# %% [markdown]
# The printed correlations say whether the two tokens look at the same patches, block by
# block; the cosines say how alike their starting vectors and their heads are, and the last
# column how much weight the class token gives the distillation token.

# %% [markdown]
# ## 8. Does it pay? The real comparison
#
# The commands (CIFAR-10 at `path/to/cifar-10-batches-py`, given with `--data-dir`), each run
# committed in `results/` with its metrics, config and curves:
#
# ```bash
# minivit train --config airbench --epochs 10 --eval-every 5 --run-dir runs/deit-teacher
# minivit train --epochs 20 --teacher runs/deit-teacher --distill hard --run-dir runs/deit-student
# minivit train --epochs 20 --teacher runs/deit-teacher --distill soft --distill-tau 1 \
#     --distill-lambda 0.5 --run-dir runs/deit-student-soft
# minivit train --epochs 20 --set pool=token --run-dir runs/deit-no-teacher   # the twin
# minivit eval runs/RUN --split test
# ```
#
# The table below reads the committed runs (`eval-test.json`, `metrics.jsonl`), with the
# earlier comparison against a ResNet-14 teacher and the default recipe given an hour; the
# results report (`results/README.md`, sections 5 and 13) says what they show.

# %%
def run_summary(name):
    """-> (test accuracy, epochs, minutes of training) of a committed run, or None."""
    run = RESULTS / name
    if not (run / "eval-test.json").is_file():
        return None
    test_acc = json.loads((run / "eval-test.json").read_text())["accuracy"]
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return test_acc, last["epoch"], last["elapsed"] / 60


for name in ("deit-teacher", "deit-student", "deit-student-soft", "deit-no-teacher",
             "cifar-nano-hour-avx512-s0", "teacher-resnet14-12ep",
             "cifar-nano-distilled-hard-15ep", "cifar-nano-token-15ep"):
    s = run_summary(name)
    print(f"{name:>32}: " + ("not in results/" if s is None else
                             f"test {100 * s[0]:.2f}%, {s[1]} epochs, {s[2]:.1f} min"))

# %% [markdown]
# On 2026-12-07 (2 CPU cores, one run after another), the airbench teacher reached 93.28% test
# in 58 minutes. At 20 epochs the student distilled from it reached 75.42% (hard, 75 minutes)
# and 75.82% (soft, tau 1, lambda 0.5, 80 minutes), its twin without a teacher 75.57% (38
# minutes): -0.15 and +0.25 points, within what one seed decides, far from the 1.5 points
# aimed at (the results report, section 13). The student of this recipe underfits at 20
# epochs (on its augmented, half-masked training crops it is right less often than on the
# validation images until the last, unmasked epoch), and a teacher that is right on 93% of
# the images mostly repeats the labels (section 3): there is little the teacher knows that
# the labels do not say, and no spare capacity to learn it with. The
# default recipe given an hour (83.72%) remains the better use of two cores. The ResNet-14
# teacher of the first comparison (78.90%) gave +0.09 points at 15 epochs.
# Section 9 gives the student fewer images.

# %% [markdown]
# ## 9. Where the teacher pays: 5,000 training images
#
# DeiT's claim is about data: a convnet teacher makes a ViT *data-efficient*. With all 45,000
# training images the 20-epoch student above has more to learn from the labels than it can
# take in. Give it a ninth of them and the same recipe for 100 epochs (3,900 steps), and the
# student alone learns its training images by heart: that is where a teacher's answers on
# every new crop could help. The same commands with `--train-size 5000 --epochs 100
# --eval-every 5` (500 images of each class, the first in file order; validation and test
# stay whole; the teacher is the one above, trained on all 45,000):
#
# ```bash
# minivit train --epochs 100 --train-size 5000 --eval-every 5 --set pool=token \
#     --run-dir runs/deit5k-no-teacher
# minivit train --epochs 100 --train-size 5000 --eval-every 5 --teacher runs/deit-teacher \
#     --distill soft --distill-tau 1 --distill-lambda 0.5 --run-dir runs/deit5k-student-soft
# minivit train --epochs 100 --train-size 5000 --eval-every 5 --teacher runs/deit-teacher \
#     --distill hard --run-dir runs/deit5k-student
# ```
#
# Solid lines are validation accuracy, dotted ones accuracy on the training crops the step
# saw (augmented and, until the last epoch, half their patches dropped); the right panel is
# how often each distilled student's distillation head gives the teacher's answer on the
# validation images.

# %%
SMALL_RUNS = {"no teacher": RESULTS / "deit5k-no-teacher",
              "hard": RESULTS / "deit5k-student",
              "soft": RESULTS / "deit5k-student-soft"}
small = {k: [r for r in metrics(run) if r.get("val_acc") is not None]
         for k, run in SMALL_RUNS.items()}
small = {k: curve for k, curve in small.items() if curve}
if not small:
    print("no deit5k-* run in results/ (not trained here)")
else:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (label, curve), color in zip(small.items(), ("k", "C0", "C1")):
        ep = [r["epoch"] for r in curve]
        ax1.plot(ep, [100 * r["val_acc"] for r in curve], color=color, label=f"{label}, val")
        ax1.plot(ep, [100 * r["train_acc"] for r in curve], ":", color=color,
                 label=f"{label}, train crops")
        if curve[-1].get("val_dist_teacher_agree") is not None:
            ax2.plot(ep, [100 * r["val_dist_teacher_agree"] for r in curve], color=color,
                     label=f"{label}: distillation head = teacher")
    ax1.set(xlabel="epoch", ylabel="accuracy (%)")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="epoch", ylabel="agreement on validation (%)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save(fig, "06_small_data")
    at = {k: {r["epoch"]: r for r in curve} for k, curve in small.items()}
    print(f"{'epoch':>5} " + " ".join(f"{k + ' val':>16} {k + ' train':>16}" for k in small))
    for epoch in sorted(at[next(iter(small))]):
        if epoch % 10 and epoch != 5:
            continue
        print(f"{epoch:>5} " + " ".join(
            f"{100 * at[k][epoch]['val_acc']:15.2f}% {100 * at[k][epoch]['train_acc']:15.2f}%"
            if epoch in at[k] else f"{'-':>16} {'-':>16}" for k in small))
    for k, run in SMALL_RUNS.items():
        s = run_summary(run.name)
        print(f"{run.name:>22}: " + ("not in results/" if s is None else
                                     f"test {100 * s[0]:.2f}%, {s[1]} epochs, {s[2]:.1f} min"))

# %% [markdown]
# On 2026-12-08 (2 CPU cores, one run after another, results report section 14) the twin ended
# at 58.95% test, the hard-distilled student at 60.72% (+1.77 points) and the soft one at
# 60.24% (+1.29). Read the left panel: the twin's validation accuracy stops near 59% from
# about epoch 65 while its training accuracy keeps climbing to 90%, it learns the 5,000
# images rather than the task. The students' training curves climb just as fast, yet their
# validation curves stay above the twin's from epoch 50 on (at 21 of the 22 validations of
# the two): on every new crop of a training image the teacher's answer is a target that the
# image's label alone does not give. That is DeiT's data efficiency, here with a teacher that
# saw all 45,000 images (one seed per run; a teacher trained on the same 5,000 was not run).
# The price is the same as in section 8: each step costs the teacher's forward pass (41.7 and
# 43.9 minutes against the twin's 23.3).
