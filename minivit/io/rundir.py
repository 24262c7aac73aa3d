"""The layout of a training run directory (``minivit train`` / ``minivit pretrain``).

Files in RUN_DIR:
    config.json              the TrainConfig, the model config, data set mean/std/class names
    checkpoint.safetensors   params, optimizer state, step, RNG states (one file, atomic)
    model.safetensors        the model alone (minivit.io.serialization), for eval / predict
    metrics.jsonl            one JSON line per epoch
    steps.jsonl              one JSON line per optimizer step: step, loss, lr (StepsLog)
    eval-val.json            val accuracy, per-class accuracy, confusion matrix (last epoch)
    .minivit.lock            flock-ed while a trainer runs here (run_lock); holds its PID

Every file is read back through minivit.io.json_files (size, depth and a schema per file:
minivit.io.run_schema) and written without following a symbolic link (minivit.io.files).
``train`` starts a new run only in a missing or empty folder (``check_new_run_dir``).

``find_model`` turns what a user names (a run directory, its model or checkpoint file, or any
model file) into the model file to read and the run directory it belongs to, if any.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from minivit.backend import get_backend
from minivit.errors import UserError
from minivit.io.files import (
    TEMP_TAG,
    WriteError,
    atomic_write_bytes,
    naming_write_errors,
    open_for_append,
    refuse_symlink,
    write_json,
)
from minivit.io.json_files import read_json_file, read_jsonl
from minivit.io.run_lock import LOCK_FILE, RunDirInUse, run_lock
from minivit.io.run_schema import (
    EVAL_REPORT,
    METRICS_RECORD,
    RUN_INFO,
    STEP_RECORD,
    check_eval_report,
)

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
EVAL_VAL_FILE = "eval-val.json"
STEPS_FILE = "steps.jsonl"


def default_run_dir(name: str) -> str:
    """runs/<name>-<timestamp>"""
    return str(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def find_model(path) -> tuple[Path, Path | None]:
    """A run directory, its model/checkpoint file, or any model file -> (the model file,
    the run directory or None when the file is not in one)."""
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a training run directory ({MODEL_FILE} "
                                    "not found)")
        return path / MODEL_FILE, path
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (expected a run directory or a "
                                "model file)")
    run_dir = path.parent if (path.parent / CONFIG_FILE).is_file() else None
    return (path.parent / MODEL_FILE if path.name == CHECKPOINT_FILE else path), run_dir


def read_run_info(run_dir) -> dict:
    """RUN_DIR/config.json, or {} for run_dir None (a model file outside a run)."""
    if run_dir is None:
        return {}
    return read_json_file(Path(run_dir) / CONFIG_FILE, RUN_INFO, what="run's config.json")


def read_eval_report(path) -> dict:
    """An eval-<split>.json report (what ``minivit plot`` draws), checked."""
    report = read_json_file(path, EVAL_REPORT, what="evaluation report")
    try:
        check_eval_report(report)
    except ValueError as e:
        raise ValueError(f"{path}: {e}; fix or delete that file") from None
    return report


def read_metrics(run_dir) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl, one dict per epoch.

    A torn last line (the disk filled up or the process died in the middle of an append) is
    dropped with a warning; a bad line before it is a ValueError naming file and line."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (is {run_dir} a training run directory?)")
    return _parse_metrics(path)


def _parse_metrics(path: Path) -> list[dict]:
    return read_jsonl(path, METRICS_RECORD, kind="metrics record")


def append_metrics(run_dir, record: dict) -> None:
    """One line more in RUN_DIR/metrics.jsonl (never through a symbolic link)."""
    path = Path(run_dir) / METRICS_FILE
    with naming_write_errors(path), open_for_append(path) as f:
        f.write(json.dumps(record) + "\n")


def trim_metrics(run_dir, epochs_logged: int) -> None:
    """Drop metrics lines written after the checkpoint we resume from (a crash between
    writing the line and the checkpoint would otherwise repeat an epoch), and a torn last
    line (with a warning)."""
    path = Path(run_dir) / METRICS_FILE
    if path.is_file():
        lines = [json.dumps(r) for r in _parse_metrics(path) if r["epoch"] <= epochs_logged]
        with naming_write_errors(path):
            atomic_write_bytes(path, "".join(ln + "\n" for ln in lines).encode())


# io.files.atomic_write_bytes' temporary files: .NAME.minivit-tmp.XXXXXXXX.tmp
TEMP_PATTERN = re.compile(r"^\..+\." + re.escape(TEMP_TAG) + r"\.[a-z0-9_]{8}\.tmp$")


def check_run_files(run_dir) -> None:
    """WriteError when a file a run writes in RUN_DIR is a symbolic link or not a plain file:
    found when the run starts, not at its first save an epoch later."""
    for name in (CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE, STEPS_FILE,
                 EVAL_VAL_FILE):
        path = Path(run_dir) / name
        refuse_symlink(path)
        if path.exists() and not path.is_file():
            raise WriteError(f"refusing to write {path}: it is not a plain file (a folder, FIFO "
                             "or device); remove it")


def remove_temp_files(run_dir) -> list[str]:
    """Delete what interrupted atomic writes left in RUN_DIR (``.NAME.minivit-tmp.XXXXXXXX.tmp``;
    only that pattern, only plain files).  Call it holding ``run_lock``.  Returns their
    names."""
    gone = []
    for p in Path(run_dir).iterdir():
        if TEMP_PATTERN.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return sorted(gone)


def check_run_dir_path(run_dir) -> None:
    """ValueError when ``run_dir``, or the nearest of its parents that exists, is not a
    directory (a run directory cannot be made there)."""
    path = Path(run_dir)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "it is a file" if p == path else f"{p} is a file"
                raise ValueError(f"run directory {path} cannot be made: {where}; choose "
                                 "another --run-dir")
            return


def check_new_run_dir(run_dir) -> None:
    """UserError unless ``run_dir`` is missing, empty (but for the temporary files of
    minivit's writes) or a minivit folder (it has LOCK_FILE: a run started there; under the
    lock, ``train`` reports a run still going or one to --resume): a new run would replace
    files of the same names."""
    path = Path(run_dir)
    if not path.is_dir():
        return
    names = sorted(p.name for p in path.iterdir() if not TEMP_PATTERN.match(p.name))
    if LOCK_FILE in names:
        return
    if CHECKPOINT_FILE in names or METRICS_FILE in names:
        raise UserError(f"{path} already holds a run; continue it with --resume {path} or "
                        "choose another --run-dir")
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UserError(f"{path} is not empty and holds no minivit run to continue (it holds "
                        f"{shown}); a new run would overwrite files there: choose a new or "
                        "empty --run-dir")


class StepsLog:
    """RUN_DIR/steps.jsonl: one line {"step", "loss", "lr"} per optimizer step, appended
    through a buffered file (flushed with each checkpoint, closed at the end), so a step costs
    one formatted line and no extra device sync: the loss is the host number the loop already
    has.  ``StepsLog.trim`` drops the lines after the checkpoint a resume starts from."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / STEPS_FILE
        self.file = None

    def append(self, step: int, loss: float, lr: float) -> None:
        if self.file is None:
            with naming_write_errors(self.path):
                self.file = open_for_append(self.path)
        self.file.write(f'{{"step": {step}, "loss": {float(loss)!r}, "lr": {float(lr)!r}}}\n')

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    @staticmethod
    def read(run_dir) -> list[dict]:
        """The records of RUN_DIR/steps.jsonl ([] when there is none); a torn last line, as a
        crash can leave, is skipped; any other bad line is a ValueError naming it."""
        path = Path(run_dir) / STEPS_FILE
        if not os.path.lexists(path):
            return []
        return read_jsonl(path, STEP_RECORD, kind="step record", torn="skip")

    @staticmethod
    def trim(run_dir, step: int) -> None:
        """Keep the lines of steps 1..step (those the checkpoint we resume from has done)."""
        path = Path(run_dir) / STEPS_FILE
        if path.is_file():
            kept = [r for r in StepsLog.read(run_dir) if r["step"] <= step]
            atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def run_info(cfg, run_dir, model, data, steps_per_epoch, total, warmup, unmasked) -> dict:
    """What config.json holds: the TrainConfig, the model config, and what ``minivit
    predict`` needs of the data (mean, std, class names)."""
    return {"train": {**cfg.to_dict(), "run_dir": str(run_dir)},
            "model": model.config.to_dict(),
            "data": {"path": str(data.path), "mean": [float(v) for v in data.mean],
                     "std": [float(v) for v in data.std], "label_names": list(data.label_names),
                     "n_train": len(data.train_y), "n_val": len(data.val_y),
                     "n_test": len(data.test_y)},
            "steps_per_epoch": steps_per_epoch, "total_steps": total, "warmup_steps": warmup,
            "unmasked_steps": unmasked,
            "backend": get_backend(), "num_params": model.num_params()}


def update_run_info(run_dir, **fields) -> None:
    """Set top-level fields of RUN_DIR/config.json (what a time budget chose, and took)."""
    path = Path(run_dir) / CONFIG_FILE
    write_json(path, {**read_json_file(path, RUN_INFO, what="run's config.json"), **fields})


def format_record(rec: dict, total: int) -> str:
    """A metrics record as the line the loop prints."""
    parts = [f"epoch {rec['epoch']:>3}", f"step {rec['step']}/{total}"]
    for split in ("train", "val", "test"):
        if rec[f"{split}_loss"] is not None:
            acc = rec[f"{split}_acc"]
            parts.append(f"{split} loss {rec[f'{split}_loss']:.4f}"
                         + ("" if acc is None else f" acc {100 * acc:.2f}%"))
    if rec.get("val_dist_teacher_agree") is not None:       # a distilled student's heads
        parts.append(f"(class head {100 * rec['val_cls_acc']:.2f}%, distillation head "
                     f"{100 * rec['val_dist_acc']:.2f}%, agrees with the teacher "
                     f"{100 * rec['val_dist_teacher_agree']:.1f}%)")
    return "  ".join(parts + [f"{rec['images_per_sec']:.0f} img/s"])


__all__ = ["CHECKPOINT_FILE", "CONFIG_FILE", "EVAL_VAL_FILE", "LOCK_FILE", "METRICS_FILE",
           "MODEL_FILE", "RunDirInUse", "STEPS_FILE", "StepsLog", "TEMP_PATTERN",
           "append_metrics", "check_new_run_dir", "check_run_dir_path", "check_run_files",
           "default_run_dir", "find_model", "format_record", "read_eval_report", "read_metrics",
           "read_run_info", "remove_temp_files", "run_info", "run_lock", "trim_metrics",
           "update_run_info"]
