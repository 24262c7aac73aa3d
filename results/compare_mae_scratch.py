"""Draw results/mae-vs-scratch.png: validation accuracy against compute spent, for the
equal-compute comparison of results/README.md, section 3 (arm (a): results/cifar-nano-18ep; arm (b):
results/mae-15ep + results/mae-15ep-ft).  Compute is in classification epochs; the 15 MAE
epochs count as 9 (an MAE epoch ran at about 0.6 of a classification epoch's cost).

    python results/compare_mae_scratch.py
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
MAE_EPOCHS_AS_CLASSIFICATION = 9


def val_acc(run):
    rows = [json.loads(line) for line in open(HERE / run / "metrics.jsonl")]
    return [r["epoch"] for r in rows], [100 * r["val_acc"] for r in rows]


fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
x, y = val_acc("cifar-nano-18ep")
ax.plot(x, y, "o-", ms=3, label="(a) from scratch, 18 epochs")
x, y = val_acc("mae-15ep-ft")
ax.plot([MAE_EPOCHS_AS_CLASSIFICATION + e for e in x], y, "s-", ms=3,
        label="(b) after 15 MAE epochs (= 9), fine-tuning 9 epochs")
ax.axvspan(0, MAE_EPOCHS_AS_CLASSIFICATION, color="0.9", label="(b) MAE pre-training")
ax.set_xlabel("compute spent (classification epochs)")
ax.set_ylabel("validation accuracy (%)")
ax.set_xlim(0, 18.5)
ax.grid(alpha=0.3)
ax.legend(loc="lower right", fontsize=8)
ax.set_title("cifar-nano on CIFAR-10, 2 CPU cores: MAE + fine-tuning vs from scratch",
             fontsize=9)
fig.savefig(HERE / "mae-vs-scratch.png", dpi=110)
print("wrote", HERE / "mae-vs-scratch.png")
