"""Does a little training on every token help a model trained with patch dropout?  The probe
behind TrainConfig.unmasked_epochs (results/README.md, section 2).

From the final checkpoint of the 32-epoch patch-dropout run (parameters and AdamW moments),
train STEPS more steps at a constant LR, with patch dropout at RATE, then report validation
accuracy and loss.  Run on 2026-11-22 (2 cores, one process at a time):

    python results/probe_unmasked_tuning.py RUN_DIR DATA_DIR 0.5 0 1e-5     # as it was
    python results/probe_unmasked_tuning.py RUN_DIR DATA_DIR 0.0 150 2e-5   # unmasked
    python results/probe_unmasked_tuning.py RUN_DIR DATA_DIR 0.5 150 2e-5   # control

RUN_DIR = runs/cifar-nano-pd50-32ep (its checkpoint is not committed).  Output below.
"""
import json
import sys
import time
from pathlib import Path

from minivit.analysis.evaluation import evaluate
from minivit.backend import rng
from minivit.data.cifar10 import load_cifar10
from minivit.models.vit import create_model
from minivit.parallel.threads import DataParallel
from minivit.training import TrainConfig
from minivit.training.batch import prepare_batch
from minivit.training.checkpoint import load_checkpoint
from minivit.training.loop import AUG_STREAM
from minivit.training.objectives.classification import classify
from minivit.training.optim import AdamW, clip_grad_norm
from minivit.training.schedule import epoch_order

run_dir, data_dir = Path(sys.argv[1]), sys.argv[2]
rate, steps, lr = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cfg = TrainConfig(data_dir=data_dir)                       # the recipe's batch, augmentation
data = load_cifar10(data_dir, cfg.val_size)
model = create_model("cifar-nano", seed=0, num_classes=10, pool="mean", patch_drop_rate=rate)
opt = AdamW(model.params, lr=lr, weight_decay=cfg.weight_decay)
aug = rng([7, AUG_STREAM])
load_checkpoint(run_dir / "checkpoint.safetensors", model, opt,
                {"augment": aug, "model": model.rng})
B = cfg.batch_size
with DataParallel(model, 2) as dp:
    perm, _ = epoch_order(123, 0, len(data.train_y))      # the same batches in every probe
    t = time.time()
    for s in range(steps):
        batch = prepare_batch(data, perm[s * B:(s + 1) * B], cfg, aug, model.dtype)
        classify(dp, batch.images, batch.targets, batch.smoothing)   # fills model.grads
        model.grads, _ = clip_grad_norm(model.grads, cfg.clip_grad)
        opt.step(model.params, model.grads, lr=lr)
    seconds = time.time() - t
    r = evaluate(model, data.val_x, data.val_y, data.mean, data.std, 500, dp)
print(json.dumps({"rate": rate, "steps": steps, "lr": lr, "train_s": round(seconds, 1),
                  "val_acc": r["acc"], "val_loss": r["loss"]}))

# Output (2026-11-22):
# {"rate": 0.5, "steps": 0, "lr": 1e-05, "train_s": 0.0, "val_acc": 0.7918, "val_loss": 0.6401647508144379}  # noqa: E501 (recorded output)
# {"rate": 0.0, "steps": 150, "lr": 2e-05, "train_s": 157.4, "val_acc": 0.7948, "val_loss": 0.6291989684104919}  # noqa: E501 (recorded output)
# {"rate": 0.5, "steps": 150, "lr": 2e-05, "train_s": 74.9, "val_acc": 0.7902, "val_loss": 0.638997632265091}  # noqa: E501 (recorded output)
