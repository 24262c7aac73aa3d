"""Draw results/recipe-hour-vs-38ep.png: validation accuracy against wall time for the one-hour
recipe (results/cifar-nano-hour-s0, -s1: ``minivit train``, a 60-minute time budget that
validates every 5 epochs; -avx512-s0: the same with NumPy's AVX-512 BLAS kernels and the faster
layers of that afternoon), its first version (results/cifar-nano-tb60-s0, -s1: validation
after every epoch) and the recipe they replaced (results/cifar-nano-pd50-38ep-um1 and its
seed 1: 38 epochs).

    python results/compare_recipes.py
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
RUNS = [("cifar-nano-hour-avx512-s0", "one-hour budget, AVX-512 BLAS, seed 0 (2026-12-06)", "C3",
         "-"),
        ("cifar-nano-hour-s0", "one-hour budget, seed 0 (2026-12-06)", "C0", "-"),
        ("cifar-nano-hour-s1", "one-hour budget, seed 1 (2026-12-06)", "C0", "--"),
        ("cifar-nano-tb60-s0", "the same, validating every epoch, seed 0 (2026-12-06)", "C2", "-"),
        ("cifar-nano-tb60-s1", "the same, validating every epoch, seed 1 (2026-12-06)", "C2", "--"),
        ("cifar-nano-pd50-38ep-um1", "38 epochs, seed 0 (2026-11-23)", "C1", "-"),
        ("cifar-nano-pd50-38ep-um1-seed1", "38 epochs, seed 1 (2026-11-23)", "C1", "--")]


def val_acc(run):
    rows = [json.loads(line) for line in (HERE / run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["val_acc"] is not None]     # epochs that validated
    return [r["elapsed"] / 60 for r in rows], [100 * r["val_acc"] for r in rows]


fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
for run, label, color, style in RUNS:                    # a missing run fails here
    x, y = val_acc(run)
    ax.plot(x, y, style, color=color, lw=1.2, marker=".", ms=3, label=label)
ax.axvline(60, color="0.6", lw=0.8)
ax.set_xlabel("wall time (minutes, each run on its day's host)")
ax.set_ylabel("validation accuracy (%)")
ax.set_ylim(30, 85)
ax.grid(alpha=0.3)
ax.legend(loc="lower right", fontsize=8)
ax.set_title("cifar-nano on CIFAR-10, 2 CPU cores: the one-hour recipe and the 38-epoch one",
             fontsize=9)
fig.savefig(HERE / "recipe-hour-vs-38ep.png", dpi=110)
print("wrote", HERE / "recipe-hour-vs-38ep.png")
