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
# # 04 · Training a ViT on CIFAR-10
#
# The ViT paper trains on 300 million images and then fine-tunes; with 50,000 small images
# and no pre-training a ViT needs a recipe that makes up for what it lacks (a convolution's
# built-in locality and translation equivariance). This walkthrough explains the recipe of
# `minivit train`, runs it briefly, reads the curves, and shows how to resume, evaluate and
# predict.
#
# In full mode it trains for a few hundred steps on a subset of the real CIFAR-10 when the data
# set is found (`$MINIVIT_DATA`, `--data-dir`, or `~/.cache/minivit`), on synthetic
# CIFAR-like data otherwise; in fast mode (`MINIVIT_FAST=1`) a tiny model on synthetic data.

# %%
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _setup import shown, walkthrough   # this checkout's minivit, FAST, OUT, save()
FAST, OUT, ASSETS, save = walkthrough("04_training_on_cifar10")

import matplotlib.pyplot as plt
import numpy as np

from minivit.backend import rng as device_rng
from minivit.backend import to_device, to_numpy


WORK = Path(tempfile.mkdtemp(prefix="minivit-walkthrough-04-"))   # data subset and run dir
print("fast mode" if FAST else "full mode", "| figures in", shown(OUT),
      "| working in a temporary folder, removed at the end")
START_DIR = Path.cwd()
os.chdir(WORK)                                        # short relative paths in the commands below

# %% [markdown]
# ## 1. The recipe, and why
#
# `minivit train` with no options trains **cifar-nano** (D = 128, 6 blocks, 4 heads, 0.8 M
# parameters) with:
#
# | choice | value | why |
# |---|---|---|
# | patch size | 4 (on 32 x 32 images) | 8 x 8 = 64 tokens. The paper's 16 x 16 patches would leave a 2 x 2 grid: four tokens, each a quarter of the image, too coarse to learn from. Attention costs grow as $N^2$, and 64 tokens are cheap. |
# | pooling | the mean of the 64 patch tokens after the final LayerNorm (`pool="mean"`) | the paper's class token has to learn to gather the image through attention; the average of all tokens gives the head every token's gradient from the first step (Beyer et al. 2022, *Better plain ViT baselines*). |
# | patch dropout | each training image keeps a random half of its patch tokens (`patch_drop_rate=0.5`) | every block then works on 33 tokens instead of 65, so a step costs less than half as much and twice the epochs fit in the same time; the missing tokens also regularise, like cutting holes in the image. Evaluation sees all 64 (Liu et al. 2022, *PatchDropout*). |
# | unmasked tuning | the last epoch sees every token (`unmasked_epochs=1`) | evaluation shows the model all 64 tokens, training only 32: a final epoch on all of them, at the lowest learning rate of the schedule, lets the average and the softmaxes adjust to the full set (Li et al. 2023, *FLIP*). It costs a full-price epoch. |
# | optimizer | AdamW, lr 1e-3, weight decay 0.05, batch 128 | Adam copes with the very different gradient scales of embeddings, attention and MLP weights; decoupled weight decay (not applied through the gradient) is what ViT and DeiT use. |
# | warmup | linear from 0 over the first epoch | at the start, Adam's second-moment estimates rest on few gradients and the attention logits can jump; a full learning rate then can send a Transformer into a bad region (or to NaN) it never leaves. |
# | schedule | cosine from 1e-3 to 1e-5 | large steps while far from a minimum, small ones at the end. |
# | augmentation | random 32 x 32 crop of the image padded by 4, horizontal flip | a ViT has no built-in translation invariance: it must see shifted and mirrored images to learn it; on 45,000 images it otherwise overfits within a few epochs. (Longer GPU runs add Mixup/CutMix and stochastic depth.) |
# | label smoothing | 0.1 | the target is 0.91 on the true class and 0.01 on the others: the model is not pushed to infinite logits, which regularises and keeps its probabilities calibrated. |
# | gradient clipping | global norm 1.0 | one bad batch cannot undo the run. |
# | length | as many whole epochs as fit in one hour (`--time-budget 60`, at most 100): 57 epochs (20,007 steps) on two cores on 2026-12-06 | a ViT keeps improving for hundreds of epochs, so on a CPU the budget, not the model, sets the length, and the host's speed drifts up to 3x between days. The run times a few steps (then undoes them), an evaluation and a save, picks the epochs that fit in 96% of the hour, and fits the length once more from the first epoch's wall time (`minivit/training/time_budget.py`); `config.json` records the choice, and `--steps N` repeats the run exactly. It validates every 5 epochs, not after each: that saves about 4 minutes of the hour for training. `--epochs N` alone trains exactly N epochs, validating after each. |
# | threads | one per CPU core (`--threads`) | each batch is split between the cores: every thread runs the forward and backward pass of its share of the images on a replica of the model that shares the parameters, and the gradients are added (`minivit/parallel/threads.py`). NumPy releases the GIL inside its array operations, so two cores train almost twice as fast. |
#
# Below, the learning-rate schedule (`minivit.warmup_cosine`), what the augmentation does to
# a few real test images (`minivit.data.random_crop_flip`, on the device, seeded), and which
# patches patch dropout leaves the model of one augmented batch (the grey ones are not there:
# the blocks never see them; `minivit/layers/patch_dropout.py` draws them the same way).

# %%
from minivit import warmup_cosine
from minivit.data import random_crop_flip

total, warm = 20007, 351                              # 57 epochs of 351 steps, 1 warmup epoch
lrs = [warmup_cosine(s, 1e-3, total, warm, 1e-5) for s in range(total)]
print(f"lr at step 0: {lrs[0]:.2e}, end of warmup: {lrs[warm - 1]:.2e}, last step: {lrs[-1]:.2e}")
assert lrs[0] < lrs[warm - 1] == max(lrs) and lrs[-1] < 1e-4

sample = np.load(ASSETS / "cifar10_sample.npz")
names = [str(n) for n in sample["label_names"]]
x8 = to_device(sample["x"][:6])
augmented = [to_numpy(random_crop_flip(x8, device_rng(seed))) for seed in range(3)]
assert augmented[0].shape == x8.shape and augmented[0].dtype == np.uint8

# patch dropout on the last augmented batch: 32 of the 64 4x4 patches of each image dropped
from minivit.layers.masking import masking_noise, random_masking

_, dropped, _ = random_masking(masking_noise(device_rng(0), 6, 64), 0.5)   # (6, 64), 1 = dropped
dropped = to_numpy(dropped).reshape(6, 8, 8).repeat(4, axis=1).repeat(4, axis=2)  # (6, 32, 32)
seen = augmented[-1].copy()
seen[np.broadcast_to(dropped[:, None] == 1, seen.shape)] = 128
assert (to_numpy(dropped).reshape(6, -1).mean(1) == 0.5).all()

fig = plt.figure(figsize=(10, 4), layout="constrained")
left, right = fig.subfigures(1, 2, width_ratios=[1, 1.5])
ax = left.subplots()
ax.plot(lrs)
ax.axvline(warm, ls="--", color="grey", lw=1)
ax.set_xlabel("step")
ax.set_ylabel("learning rate")
ax.set_title("warmup, then cosine")
axes = right.subplots(5, 6)
for r, row in enumerate([to_numpy(x8)] + augmented + [seen]):
    for c in range(6):
        axes[r, c].imshow(row[c].transpose(1, 2, 0), interpolation="nearest")
        axes[r, c].set_axis_off()
right.suptitle("top: originals; then three random crops + flips;\n"
               "bottom: the last ones after patch dropout (grey: dropped)", fontsize=10)
save(fig, "01_recipe")

# %% [markdown]
# ## 2. Data for a short run
#
# A full run reads the official CIFAR-10 folder. Here we write a smaller folder in exactly the
# same format (the pickles of `cifar-10-batches-py`, written with minivit's
# `save_py2_pickle`): in full mode 800 real images from each training batch and 2,000 test
# images; without the real data, or in fast mode, synthetic CIFAR-like images
# (`write_cifar10_like`: each class a colour cast and a stripe direction under heavy noise).

# %%
from minivit.data import find_cifar10, read_batch, read_label_names, save_py2_pickle, write_cifar10_like

data_dir = Path("cifar-10-batches-py")
real = None
if not FAST:
    try:
        real = find_cifar10()
    except FileNotFoundError:
        print("CIFAR-10 not found: synthetic data instead")
if real is not None:
    per_batch, n_test = 800, 2000
    data_dir.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        xb, yb = read_batch(real / name)
        n = n_test if name == "test_batch" else per_batch
        save_py2_pickle({b"batch_label": f"subset of {name}".encode(), b"labels": yb[:n].tolist(),
                         b"data": xb[:n].reshape(n, -1), b"filenames": [b""] * n}, data_dir / name)
    save_py2_pickle({b"label_names": [s.encode() for s in read_label_names(real / "batches.meta")]},
                    data_dir / "batches.meta")
    print(f"real CIFAR-10 subset from {real.name}: {5 * per_batch} training, {n_test} test images")
else:
    per_batch, n_test = (40, 40) if FAST else (1000, 1000)
    write_cifar10_like(data_dir, n_train_per_batch=per_batch, n_test=n_test, seed=0)
    print(f"synthetic data: {5 * per_batch} training, {n_test} test images")
print(sorted(p.name for p in data_dir.iterdir()))

# %% [markdown]
# ## 3. Train, stop halfway, resume
#
# `minivit.training.loop.train(TrainConfig(...))` is what `minivit train` runs. To fit a few minutes of
# one CPU core the model here has 4 blocks instead of 6 (`--set depth=4`, on top of the
# recipe's `RECIPE_MODEL_OVERRIDES`: mean pooling and patch dropout), the batch is 64 and
# the run lasts 4 short epochs (3,500 training images, 500 held out for validation), the last
# of them unmasked; the rest is the recipe above.
#
# We stop it in the middle of an epoch with `max_steps` (as `--max-steps`, `--time-limit` or Ctrl-C would) and
# continue with `minivit train --resume RUN_DIR`. The checkpoint holds the parameters, AdamW's
# moments, the step and every random generator's state, and each epoch's data order is a
# function of (seed, epoch): the resumed run continues exactly where it stopped, bit for bit
# (`tests/training/test_loop.py` checks it).

# %%
from minivit.cli import main as minivit_cli
from minivit.training import RECIPE_MODEL_OVERRIDES, TrainConfig, train

if FAST:
    tc = dict(model_overrides={**RECIPE_MODEL_OVERRIDES, "embed_dim": 16, "depth": 1,
                               "num_heads": 2, "mlp_dim": 32},
              batch_size=20, epochs=2, val_size=40, warmup_epochs=0.5)
else:
    tc = dict(model_overrides={**RECIPE_MODEL_OVERRIDES, "depth": 4}, batch_size=64, epochs=4,
              val_size=500, warmup_epochs=0.5)
run_dir = Path("run")
cfg = TrainConfig(model="cifar-nano", data_dir=str(data_dir), run_dir=str(run_dir),
                  progress=False, **tc)
steps_per_epoch = (5 * per_batch - cfg.val_size) // cfg.batch_size
stop_at = steps_per_epoch * cfg.epochs // 2 + steps_per_epoch // 2       # mid-epoch
result = train(TrainConfig(**{**cfg.to_dict(), "max_steps": stop_at}))
print(result["status"], "at step", result["step"], "of", result["total_steps"])
assert result["status"] == "stopped" and result["step"] == stop_at

# %%
print(f"$ minivit train --resume {run_dir.name} --no-progress")
assert minivit_cli(["train", "--resume", str(run_dir), "--no-progress"]) == 0
print(sorted(p.name for p in run_dir.iterdir()))

# %% [markdown]
# ## 4. Reading the curves
#
# `metrics.jsonl` has one line per epoch; `minivit.analysis.plots.plot_curves` (and `minivit plot RUN`)
# draws loss, accuracy and learning rate.
#
# * With label smoothing 0.1 the training loss cannot reach 0: its floor is the entropy of the
#   smoothed target, about 0.50 nats for 10 classes. Compare losses between runs with the same
#   smoothing only.
# * Training accuracy is measured on augmented images while the weights change during the
#   epoch; validation accuracy on clean images at the end of it, so early on validation can be
#   *above* training.
# * Validation loss going up while training loss keeps going down is overfitting: more
#   augmentation, more weight decay or stochastic depth, or fewer epochs.
# * The learning-rate panel shows where in the schedule each epoch ended. A loss that jumps
#   up right after warmup means the peak learning rate is too high.

# %%
from minivit.analysis.plots import plot_curves
from minivit.io.rundir import read_metrics

records = read_metrics(run_dir)
for r in records:
    print(f"epoch {r['epoch']}: step {r['step']}, train loss {r['train_loss']:.3f}, "
          f"train acc {100 * r['train_acc']:.1f}%, val loss {r['val_loss']:.3f}, "
          f"val acc {100 * r['val_acc']:.1f}%, lr {r['lr']:.1e}, {r['images_per_sec']:.0f} img/s")
assert len(records) == cfg.epochs and records[-1]["step"] == steps_per_epoch * cfg.epochs
plot_curves(records, OUT / "02_curves.png", title=f"cifar-nano, {tc['model_overrides']}")
if "ipykernel" in sys.modules:
    from IPython.display import Image, display
    display(Image(str(OUT / "02_curves.png")))

# %% [markdown]
# A few minutes are a start, not a result. With all 45,000 training images, the recipe above
# (`minivit train` with no options) chose 57 epochs of its hour on two CPU cores on
# 2026-12-06 and took 56.9 minutes, at 747 to 822 images/s (`images_per_sec` in
# `metrics.jsonl`; patch dropout halves the cost of a step), for 82.20% validation and 82.33%
# test accuracy (results/README.md, section 10). That model, with its run, is in
# `results/cifar-nano-hour-s0/`. The same recipe for a fixed 38 epochs took 60 minutes on
# 2026-11-23 for 80.24% (`results/cifar-nano-pd50-38ep-um1/`, the model walkthroughs 01 and 03
# look at), and 31 epochs took 114 minutes on 2026-11-22, a slow day, for 79.6%. On a CPU, the
# budget, not the model, sets the accuracy. On a GPU (`minivit --backend cupy train ...`) the
# same code runs far faster.
#
# ## 5. Evaluate, predict, plot
#
# The same run directory answers the other commands. `minivit eval` computes the accuracy,
# the per-class accuracy and the confusion matrix on the test split (of the folder the run was
# trained on); `minivit predict` prints the top classes of PNG/JPEG files, normalised with the
# run's mean and std; `minivit plot` writes `curves.png` and `confusion.png`.

# %%
print(f"$ minivit eval {run_dir.name}")
assert minivit_cli(["eval", str(run_dir)]) == 0

# %%
from PIL import Image as PILImage

pngs = []
for i in range(3):
    path = Path(f"test{i}_{names[sample['y'][i]]}.png")
    PILImage.fromarray(sample["x"][i].transpose(1, 2, 0)).save(path)
    pngs.append(path)
print("$ minivit predict", run_dir, " ".join(map(str, pngs)), "--top 3")
assert minivit_cli(["predict", str(run_dir), *map(str, pngs), "--top", "3"]) == 0

# %%
print(f"$ minivit plot {run_dir.name} --out plots")
assert minivit_cli(["plot", str(run_dir), "--out", "plots"]) == 0
shutil.copy(Path("plots") / "confusion.png", OUT / "03_confusion.png")
os.chdir(START_DIR)
shutil.rmtree(WORK)

# %% [markdown]
# The commands, for your own runs:
#
# ```bash
# minivit train --data-dir path/to/cifar-10-batches-py --run-dir runs/nano   # the recipe above
# minivit train --resume runs/nano                  # after Ctrl-C, --max-steps or --time-limit
# minivit eval runs/nano                            # test accuracy, per class, confusion matrix
# minivit predict runs/nano cat.png dog.jpg         # top-5 classes
# minivit plot runs/nano                            # curves.png, confusion.png
# minivit inspect runs/nano --image cat.png         # what it learned (walkthrough 03)
# ```
