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
# # 06 · Data parallelism: one model on several processes
#
# `mpirun -n 4 minivit train ...` trains one model on 4 processes (ranks), on one machine or
# on four. Each rank holds a full copy of the parameters, computes the gradient of its share
# of every batch, and the ranks add their gradients up (an *allreduce*) before each
# optimizer step. This walkthrough does exactly that in one process, with two model copies
# standing for two ranks, and checks the three claims it rests on:
#
# 1. the gradient of the whole batch is the sum of the shares' gradients, if each share's
#    loss is weighted by its size;
# 2. the random numbers of a share (augmentation, dropout, patch dropout) are its rows of
#    those drawn for the whole batch, so the split changes nothing;
# 3. every rank applies the same summed gradient with the same optimizer, so all ranks end
#    with the same parameters without ever sending them.
#
# The code is `minivit/parallel/ranks.py` (the shard, the agreement, evaluation) and
# `minivit/parallel/mpi.py` (the allreduce with a deadline).

# %%
from _setup import shown, walkthrough   # this checkout's minivit, FAST, OUT, save()
FAST, OUT, ASSETS, save = walkthrough("06_data_parallel")

import matplotlib.pyplot as plt
import numpy as np

import minivit
from minivit.backend import to_device
from minivit.data import normalize
from minivit.parallel.threads import DataParallel
from minivit.training.objectives.classification import classify

sample = np.load(ASSETS / "cifar10_sample.npz")
B = 8 if FAST else 16                                    # the global batch
images = normalize(to_device(sample["x"][:B]), sample["mean"], sample["std"], "float64")
labels = to_device(sample["y"][:B])
TINY = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64, pool="mean", patch_drop_rate=0.5)
print("fast mode" if FAST else "full mode", "| figures in", shown(OUT), "| global batch", B)

# %% [markdown]
# ## 1. The loss is a mean, so its gradient is a weighted sum
#
# With $B$ images split into shards $S_r$ of $b_r$ images,
#
# $$L = \frac1B \sum_i \ell_i = \sum_r \frac{b_r}{B} L_r
#   \quad\Rightarrow\quad \nabla L = \sum_r \frac{b_r}{B} \nabla L_r .$$
#
# First the reference: one process, the whole batch. `DataParallel` is the thread splitter
# of `minivit.parallel.threads`; here with one thread it runs the batch as is.

# %%
def new_model():
    return minivit.create_model("cifar-nano", seed=0, dtype="float64", **TINY)


one = new_model()
loss, _ = classify(DataParallel(one, 1), images, labels, 0.1)
whole = one.flat_grads.copy()
print(f"one process: loss {float(loss):.6f}, |grad| {np.linalg.norm(whole):.6f}, "
      f"{whole.size:,} gradient numbers")

# %% [markdown]
# ## 2. Two ranks, each on its rows
#
# Rank $r$ of $N$ takes rows $[rB/N, (r+1)B/N)$ of the global batch. `part=(start, B)`
# (`DataParallel.map_shards`) tells the model two things: weight this shard's loss by $b/B$, and cut its
# random masks from draws made for all $B$ images (`ShardGenerator`), so that image $i$ drops
# the same patches whichever rank it is on. Both ranks start from the same parameters: the
# same seed.

# %%
N, b = 2, B // 2
ranks = [new_model() for _ in range(N)]
shares, parts = [], []
for r, model in enumerate(ranks):
    dp = DataParallel(model, 1)
    rows = slice(r * b, (r + 1) * b)                      # ranks.rank_rows
    share, _ = classify(dp, images[rows], labels[rows], 0.1, part=(r * b, B))  # of a batch of B
    shares.append(float(share))
    parts.append(model.grads["blocks.0.mlp.fc1.weight"].ravel()[:24].copy())   # for the figure
    print(f"rank {r}: images {rows.start}..{rows.stop - 1}, weighted loss {float(share):.6f}, "
          f"|grad| {np.linalg.norm(model.flat_grads):.6f}")
print(f"sum of the ranks' losses {sum(shares):.6f} = the one-process loss {float(loss):.6f}")

# %% [markdown]
# ## 3. The allreduce
#
# `Ranks.sum_(model.flat_grads)` is one `MPI_Allreduce(SUM)` of the flat gradient buffer:
# afterwards every rank holds $g_0 + g_1$. The gradients live in one contiguous buffer
# (`minivit/models/flat_params.py`), so this is one message, not one per tensor. Here the sum is done by
# hand.

# %%
summed = ranks[0].flat_grads + ranks[1].flat_grads
for model in ranks:
    model.flat_grads[...] = summed                        # what the allreduce leaves behind
print(f"max |(g0 + g1) - g_whole| = {np.abs(summed - whole).max():.2e} "
      "(float64 rounding of a different summation order)")
assert np.allclose(summed, whole, rtol=0, atol=1e-12)

name, view = "blocks.0.mlp.fc1.weight", slice(0, 24)
fig, ax = plt.subplots(figsize=(8, 2.6), layout="constrained")
x = np.arange(24)
ax.bar(x - 0.3, parts[0], 0.3, label="rank 0's share")
ax.bar(x, parts[1], 0.3, label="rank 1's share")
ax.bar(x + 0.3, one.grads[name].ravel()[view], 0.3, label="one process, whole batch")
ax.plot(x, parts[0] + parts[1], "k.", label="rank 0 + rank 1")
ax.set_title(f"the first 24 gradients of {name}", fontsize=9)
ax.legend(fontsize=7, ncol=4)
save(fig, "01_shards")

# %% [markdown]
# ## 4. The same step on every rank
#
# Each rank clips and steps AdamW on the same summed gradient, so the new parameters are
# bit-identical across ranks, and equal to the one-process step up to the rounding of the
# sum. `minivit train` checks the first at every checkpoint (a hash of the parameters
# compared over the ranks).

# %%
from minivit.training.optim import AdamW, clip_flat_grads

for model in [one, *ranks]:
    clip_flat_grads(model.flat_grads, 1.0)
    AdamW(model.params, lr=1e-3).step(model.params, model.grads)
same = np.array_equal(ranks[0].flat_params, ranks[1].flat_params)
print(f"rank 0 and rank 1 hold the same parameters: {same}")
print(f"max |rank - one process| = {np.abs(ranks[0].flat_params - one.flat_params).max():.2e}")
assert same

# %% [markdown]
# ## 5. What the real thing adds
#
# * **The batch.** Every rank computes the step's global batch (the shuffled order of a
#   one-process run with the same seed) and prepares all of it (crop, flip, mixup: mixup
#   pairs image $i$ with image $B-1-i$, which may be on another rank), then keeps its rows.
#   Preparing is cheap next to the forward and backward pass.
# * **Agreement.** At the start the ranks compare hashes of the code, the config and the
#   data; a rank that differs is refused with one line.
# * **Stopping.** Ctrl-C, SIGTERM and `--time-limit` become a flag the ranks compare
#   before each step, so they all stop at the same step; rank 0 alone writes the run
#   directory. A rank that stops answering ends the job after `MINIVIT_MPI_TIMEOUT`
#   seconds instead of leaving the others waiting forever.
# * **Cost.** The allreduce moves about $2(N-1)/N$ times the gradient bytes per step over the
#   network; docs/mpi.md's table shows where adding machines stops paying.
#
# ```
# pip install -e ".[mpi]"
# mpiexec -n 2 minivit train --threads 1 --batch-size 128     # 2 ranks on this machine
# ```
