"""A trained classifier on a split: accuracy, loss, confusion matrix, and its JSON report;
and the trained classifier of a run directory or model file.

    model, run_dir, info = load_trained("runs/nano")       # or .../model.safetensors
    logits = predict_logits(model, images)                 # normalised images, every core
    result = evaluate(model, x, y, mean, std)              # host uint8 images, labels
    report = eval_report(result, label_names, "test")      # what eval-<split>.json holds
"""

from __future__ import annotations

from minivit.analysis.tta import tta_logits
from minivit.backend import array_module, host_xp, to_device, to_numpy
from minivit.data.batches import iterate_batches, normalize
from minivit.io.rundir import find_model, read_run_info
from minivit.io.serialization import load as load_model
from minivit.layers.loss import cross_entropy
from minivit.parallel.threads import DataParallel, resolve_threads


def predict_logits(model, images, threads: int = 0, batch_size: int = 256, parallel=None):
    """Logits (B, K) of ``model`` on normalised images (B, C, H, W), with every CPU core:
    the fastest way to run a trained ViT from Python.

        logits = minivit.predict_logits(model, images)              # one thread per core
        logits = minivit.predict_logits(model, images, threads=1)   # the calling thread only

    The images go ``batch_size`` at a time, each batch split over ``threads`` threads
    (0 = one per core on NumPy, 1 on CuPy), each thread running ``model.forward(...,
    train=False, keep_cache=False)`` on its share (minivit.parallel.threads.DataParallel.forward),
    so the elementwise passes as well as the matrix products use every core.  ``parallel``:
    an open DataParallel of ``model`` to use instead (its thread count wins).

    For speed, NumPy's BLAS should run one thread per Python thread: start Python with
    OPENBLAS_NUM_THREADS=1 (the ``minivit`` command does this itself); otherwise BLAS is
    limited to one thread per call with threadpoolctl (the ``train`` extra), which is slower."""
    if parallel is not None:
        return _predict(parallel, images, batch_size)
    with DataParallel(model, resolve_threads(threads)) as dp:
        return _predict(dp, images, batch_size)


def _predict(parallel, images, batch_size):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    B = images.shape[0]
    if B <= batch_size:
        return parallel.forward(images)
    xp = array_module(images)
    return xp.concatenate([parallel.forward(images[i:i + batch_size])
                           for i in range(0, B, batch_size)])


def evaluate(model, x, y, mean, std, batch_size: int = 500, parallel=None, tta: int = 0) -> dict:
    """Accuracy, mean loss and confusion matrix of ``model`` on host uint8 images / labels.
    ``parallel``: a minivit.parallel.threads.DataParallel of ``model`` (None: one thread);
    ``tta``: the test-time augmentation level of minivit/analysis/tta.py (0: none).

    Returns {"loss": float, "acc": float, "n": int, "confusion": host int64 (K, K)} where
    confusion[true, predicted] counts images."""
    np = host_xp()
    parallel = parallel or DataParallel(model, 1)
    K = model.config.num_classes
    confusion = np.zeros((K, K), dtype=np.int64)
    loss_sum = 0.0
    for xb, yb in iterate_batches(x, y, batch_size):
        images = normalize(to_device(xb), mean, std, model.dtype)
        logits = tta_logits(lambda v: predict_logits(model, v, batch_size=len(yb),
                                                     parallel=parallel), images, tta)
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
    or checkpoint.safetensors, or any model file ``minivit.io.serialization.load`` reads.

    Returns (model, run_dir or None, the run's config.json as a dict or {})."""
    model_path, run_dir = find_model(path)
    info = read_run_info(run_dir)
    objective = info.get("train", {}).get("objective", "classify")
    if objective != "classify":
        raise ValueError(f"{path} is a {objective!r} pre-training run, not a classifier; "
                         f"fine-tune it first: minivit train --init-from {path}")
    return load_model(model_path), run_dir, info


__all__ = ["eval_report", "evaluate", "load_trained", "predict_logits"]
