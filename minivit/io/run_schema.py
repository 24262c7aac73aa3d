"""What the files of a run directory must hold, field by field (minivit.io.json_files specs).

    RUN_INFO        config.json: "train" (the TrainConfig), "data" (mean, std, class names),
                    the schedule's step counts, "time_budget" (what a budget chose)
    METRICS_RECORD  one line of metrics.jsonl
    STEP_RECORD     one line of steps.jsonl
    EVAL_REPORT     eval-val.json / eval-test.json (what ``minivit plot`` draws)
    CHECKPOINT_STATE  the "state" JSON in checkpoint.safetensors (minivit.training.checkpoint)

Only the fields minivit reads are checked, each for its type and range; a file from an older
version without a field passes (the readers fill in defaults).  Ranges that depend on other
fields (a confusion matrix as wide as the class names) are checked by ``check_eval_report``.
"""

from __future__ import annotations

from minivit.io.json_files import Bool, List, Num, Obj, OneOf, Str

COUNT = Num(lo=0, integer=True)
OPTIONAL_COUNT = Num(lo=0, integer=True, optional=True)
MAX_CLASSES = 100_000                          # class names a run file may list

TRAIN_SECTION = Obj({
    "model": Str(), "model_overrides": Obj({}, optional=True), "dtype": Str(),
    "objective": Str(choices=("classify", "mae", "mpp")), "objective_options": Obj({}),
    "epochs": Num(integer=True), "steps": Num(integer=True, optional=True),
    "time_budget": Num(optional=True), "batch_size": Num(integer=True), "lr": Num(),
    "min_lr": Num(), "warmup_epochs": Num(), "warmup_steps": Num(integer=True, optional=True),
    "weight_decay": Num(), "label_smoothing": Num(), "clip_grad": Num(),
    "unmasked_epochs": Num(), "ema": Num(), "layer_decay": Num(), "augment": Bool(),
    "mixup": Num(), "cutmix": Num(),
    "randaugment": OneOf(List(Num(), max_len=2), Str(), optional=True),     # [N, M]
    "data_dir": Str(optional=True), "download": Bool(), "val_size": COUNT,
    "train_size": OPTIONAL_COUNT,
    "eval_every": Num(integer=True, optional=True), "eval_test": Bool(),
    "eval_batch_size": Num(integer=True), "seed": Num(integer=True),
    "threads": Num(integer=True), "run_dir": Str(optional=True),
    "checkpoint_every": Num(integer=True), "max_steps": Num(integer=True, optional=True),
    "time_limit": Num(optional=True), "progress": Bool(), "init_from": Str(optional=True),
    "teacher": Str(optional=True), "distill": Str(optional=True), "distill_tau": Num(),
    "distill_lambda": Num(), "snapshots": Num(integer=True, optional=True),
    "optimizer": Str(optional=True), "tta": Num(integer=True, optional=True),
})

CHANNEL_MEANS = List(Num(lo=0, hi=1), min_len=1, max_len=4)
CHANNEL_STDS = List(Num(lo=1e-3, hi=1), min_len=1, max_len=4)
LABEL_NAMES = List(Str(max_len=200), min_len=1, max_len=MAX_CLASSES)

DATA_SECTION = Obj({
    "path": Str(optional=True), "mean": CHANNEL_MEANS, "std": CHANNEL_STDS,
    "label_names": LABEL_NAMES, "n_train": COUNT, "n_val": COUNT, "n_test": COUNT,
})

TIME_BUDGET_SECTION = Obj({
    "minutes": Num(lo=0), "steps": Num(lo=1, integer=True), "epochs": Num(lo=1, integer=True),
    "capped": Bool(), "step_seconds": Num(lo=0), "unmasked_step_seconds": Num(lo=0),
    "eval_batch_seconds": Num(lo=0), "save_seconds": Num(lo=0), "spent_seconds": Num(lo=0),
    "estimate_seconds": Num(lo=0), "elapsed_seconds": Num(lo=0, optional=True),
    "refit_step": OPTIONAL_COUNT, "first_steps": OPTIONAL_COUNT,
    "first_step_seconds": Num(lo=0, optional=True),
    "first_estimate_seconds": Num(lo=0, optional=True),
}, required=("minutes", "steps", "epochs", "capped", "step_seconds", "unmasked_step_seconds",
             "eval_batch_seconds", "save_seconds", "spent_seconds", "estimate_seconds"),
    optional=True)

RUN_INFO = Obj({
    "train": TRAIN_SECTION, "model": Obj({}), "data": DATA_SECTION,
    "steps_per_epoch": OPTIONAL_COUNT, "total_steps": OPTIONAL_COUNT,
    "warmup_steps": OPTIONAL_COUNT, "unmasked_steps": OPTIONAL_COUNT,
    "time_budget": TIME_BUDGET_SECTION, "backend": Str(), "num_params": COUNT,
})

LOSS = Num(optional=True)
ACCURACY = Num(lo=0, hi=1, optional=True)
METRICS_RECORD = Obj({
    "epoch": COUNT, "step": COUNT, "train_loss": LOSS, "train_acc": ACCURACY,
    "val_loss": LOSS, "val_acc": ACCURACY, "test_loss": LOSS, "test_acc": ACCURACY,
    "lr": Num(lo=0, optional=True), "images_per_sec": Num(lo=0, optional=True),
    "elapsed": Num(lo=0, optional=True),
}, required=("epoch",))

STEP_RECORD = Obj({"step": COUNT, "loss": Num(), "lr": Num(lo=0)},
                  required=("step", "loss", "lr"))

EVAL_REPORT = Obj({
    "accuracy": Num(lo=0, hi=1), "label_names": LABEL_NAMES,
    "confusion": List(List(COUNT, max_len=MAX_CLASSES), min_len=1, max_len=MAX_CLASSES),
}, required=("accuracy", "label_names", "confusion"))


CHECKPOINT_STATE = Obj({
    "step": COUNT, "epochs_logged": COUNT, "elapsed": Num(lo=0),
    "last": Obj({}, optional=True),
    "epoch_loss": Num(), "epoch_steps": COUNT, "epoch_correct": Num(lo=0),
    "epoch_time": Num(lo=0), "data_rng": Obj({"epoch": COUNT}, optional=True),
    "saved_step": OPTIONAL_COUNT, "optimizer_step": COUNT, "rng": Obj({}),
}, required=("optimizer_step", "rng"))


def check_eval_report(report: dict) -> None:
    """ValueError unless the confusion matrix is K x K for the K class names (after
    EVAL_REPORT has checked the types)."""
    k = len(report["label_names"])
    rows = report["confusion"]
    if len(rows) != k or any(len(row) != k for row in rows):
        raise ValueError(f"field confusion: expected {k} rows of {k} counts (one per class "
                         "name)")


__all__ = ["CHECKPOINT_STATE", "DATA_SECTION", "EVAL_REPORT", "METRICS_RECORD", "RUN_INFO",
           "STEP_RECORD", "TIME_BUDGET_SECTION", "TRAIN_SECTION", "check_eval_report"]
