"""The end of an epoch: the epoch's training numbers and its evaluation, one record of
metrics.jsonl.

    rec = epoch_record(progress, cfg, has_accuracy, lr)        # the training half
    rec.update(evaluate_epoch(objective, data, cfg, ...))       # val / test, while the bar
                                                                # says "validating"
"""

from __future__ import annotations

from minivit.analysis.evaluation import eval_report
from minivit.io.files import write_json
from minivit.io.rundir import EVAL_VAL_FILE


def epoch_record(p, cfg, has_accuracy: bool, lr: float) -> dict:
    """The epoch's line of metrics.jsonl before its evaluation: p is the run's Progress."""
    n_seen = p.epoch_steps * cfg.batch_size
    rec = {"epoch": p.epochs_logged + 1, "step": p.step,
           "train_loss": p.epoch_loss / max(p.epoch_steps, 1),
           "train_acc": p.epoch_correct / max(n_seen, 1) if has_accuracy else None,
           "val_loss": None, "val_acc": None, "test_loss": None, "test_acc": None,
           "lr": lr, "images_per_sec": n_seen / max(p.epoch_time, 1e-9)}
    if cfg.ema:
        rec["raw_val_loss"] = rec["raw_val_acc"] = None
    return rec


def evaluate_epoch(objective, data, cfg, validate: bool, last: bool, weights, report_to,
                   bar=None) -> dict:
    """The epoch's val (``validate``) and test (cfg.eval_test) numbers with the evaluation
    ``weights`` (a context: the EMA's average, or the raw ones); --ema: the last epoch is also
    validated with the raw weights.  report_to(result): writes eval_val.json (or nothing).
    The progress bar says "validating" meanwhile, and its rate leaves the time out."""
    rec = {}
    if not (validate or cfg.eval_test):
        return rec
    if bar is not None:
        bar.set_description_str("validating", refresh=True)

    def run(x, y):
        return objective.evaluate(x, y, data.mean, data.std, cfg.eval_batch_size)

    with weights():
        if validate:
            r = run(data.val_x, data.val_y)
            rec["val_loss"], rec["val_acc"] = r["loss"], r["acc"]
            rec.update({f"val_{k}": v / max(r["n"], 1) for k, v in r.get("counts", {}).items()})
            if "confusion" in r:
                report_to(r)
        if cfg.eval_test:
            r = run(data.test_x, data.test_y)
            rec["test_loss"], rec["test_acc"] = r["loss"], r["acc"]
    if cfg.ema and validate and last:                    # the last epoch: the raw weights too
        r = run(data.val_x, data.val_y)
        rec["raw_val_loss"], rec["raw_val_acc"] = r["loss"], r["acc"]
    if bar is not None:
        bar.set_description_str("", refresh=False)
        bar.unpause()                                     # the step rate leaves it out
    return rec


def val_report_writer(root: bool, run_dir, step: int, label_names):
    """report_to for evaluate_epoch: rank 0 writes RUN_DIR/eval_val.json."""
    def write(r):
        if root:
            write_json(run_dir / EVAL_VAL_FILE, {"step": step,
                                                 **eval_report(r, label_names, "val")})
    return write


__all__ = ["epoch_record", "evaluate_epoch", "val_report_writer"]
