"""A trained classifier on a split: accuracy, loss, confusion matrix, and its JSON report;
and the trained classifier of a run directory or model file.

    model, run_dir, info = load_trained("runs/nano")       # or .../model.safetensors
    result = evaluate(model, x, y, mean, std)              # host uint8 images, labels
    report = eval_report(result, label_names, "test")      # what eval-<split>.json holds
"""

from __future__ import annotations

from minivit.backend import host_xp, to_device, to_numpy
from minivit.data.batches import iterate_batches, normalize
from minivit.io.rundir import find_model, read_run_info
from minivit.layers.loss import cross_entropy
from minivit.parallel import DataParallel
from minivit.serialization import load as load_model


def evaluate(model, x, y, mean, std, batch_size: int = 500, parallel=None,
             patch_dropout: bool = True) -> dict:
    """Accuracy, mean loss and confusion matrix of ``model`` on host uint8 images / labels.
    ``parallel``: a minivit.parallel.DataParallel of ``model`` (None: one thread);
    ``patch_dropout``: that of the training steps around it (DataParallel.forward).

    Returns {"loss": float, "acc": float, "n": int, "confusion": host int64 (K, K)} where
    confusion[true, predicted] counts images."""
    np = host_xp()
    parallel = parallel or DataParallel(model, 1)
    K = model.config.num_classes
    confusion = np.zeros((K, K), dtype=np.int64)
    loss_sum = 0.0
    for xb, yb in iterate_batches(x, y, batch_size):
        images = normalize(to_device(xb), mean, std, model.dtype)
        logits = parallel.forward(images, patch_dropout)    # no backward follows
        loss, _ = cross_entropy(logits, to_device(yb))
        loss_sum += loss * len(yb)
        np.add.at(confusion, (yb, to_numpy(logits.argmax(axis=1))), 1)
    n = len(y)
    return {"loss": loss_sum / max(n, 1), "acc": float(np.trace(confusion)) / max(n, 1),
            "n": n, "confusion": confusion}


def eval_report(result: dict, label_names, split: str) -> dict:
    """``evaluate``'s result as JSON: accuracy, per-class accuracy, confusion matrix."""
    conf = result["confusion"]
    per_class = {}
    for k, name in enumerate(label_names):
        total = int(conf[k].sum())
        per_class[name] = {"n": total, "correct": int(conf[k, k]),
                           "acc": float(conf[k, k]) / total if total else None}
    return {"split": split, "n": result["n"], "accuracy": result["acc"], "loss": result["loss"],
            "label_names": list(label_names), "per_class": per_class,
            "confusion": conf.tolist()}


def load_trained(path):
    """A trained model for eval / predict: ``path`` is a run directory, its model.safetensors
    or checkpoint.safetensors, or any model file ``minivit.serialization.load`` reads.

    Returns (model, run_dir or None, the run's config.json as a dict or {})."""
    model_path, run_dir = find_model(path)
    info = read_run_info(run_dir)
    objective = info.get("train", {}).get("objective", "classify")
    if objective != "classify":
        raise ValueError(f"{path} is a {objective!r} pre-training run, not a classifier; "
                         f"fine-tune it first: minivit train --init-from {path}")
    return load_model(model_path), run_dir, info


__all__ = ["eval_report", "evaluate", "load_trained"]
