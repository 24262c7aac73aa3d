"""The layout of a training run directory (``minivit train`` / ``minivit pretrain``).

Files in RUN_DIR:
    config.json              the TrainConfig, the model config, data set mean/std/class names
    checkpoint.safetensors   params, optimizer state, step, RNG states (one file, atomic)
    model.safetensors        the model alone (minivit.serialization), for eval / predict
    metrics.jsonl            one JSON line per epoch
    steps.jsonl              one JSON line per optimizer step: step, loss, lr (StepsLog)
    eval-val.json            val accuracy, per-class accuracy, confusion matrix (last epoch)

``find_model`` turns what a user names (a run directory, its model or checkpoint file, or any
model file) into the model file to read and the run directory it belongs to, if any.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from minivit.backend import get_backend
from minivit.io.files import atomic_write_bytes, read_json

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
    return read_json(Path(run_dir) / CONFIG_FILE) if run_dir is not None else {}


def read_metrics(run_dir) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl, one dict per epoch."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (is {run_dir} a training run directory?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_metrics(run_dir, record: dict) -> None:
    """One line more in RUN_DIR/metrics.jsonl."""
    with open(Path(run_dir) / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def trim_metrics(run_dir, epochs_logged: int) -> None:
    """Drop metrics lines written after the checkpoint we resume from (a crash between
    writing the line and the checkpoint would otherwise repeat an epoch)."""
    path = Path(run_dir) / METRICS_FILE
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines()
                 if ln.strip() and json.loads(ln)["epoch"] <= epochs_logged]
        atomic_write_bytes(path, "".join(ln + "\n" for ln in lines).encode())


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
            self.file = open(self.path, "a")
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
        crash can leave, is skipped."""
        path = Path(run_dir) / STEPS_FILE
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return [r for r in records if isinstance(r, dict) and "step" in r]

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


def format_record(rec: dict, total: int) -> str:
    """A metrics record as the line the loop prints."""
    parts = [f"epoch {rec['epoch']:>3}", f"step {rec['step']}/{total}"]
    for split in ("train", "val", "test"):
        if rec[f"{split}_loss"] is not None:
            acc = rec[f"{split}_acc"]
            parts.append(f"{split} loss {rec[f'{split}_loss']:.4f}"
                         + ("" if acc is None else f" acc {100 * acc:.2f}%"))
    return "  ".join(parts + [f"{rec['images_per_sec']:.0f} img/s"])


__all__ = ["CHECKPOINT_FILE", "CONFIG_FILE", "EVAL_VAL_FILE", "METRICS_FILE", "MODEL_FILE",
           "STEPS_FILE", "StepsLog", "append_metrics", "check_run_dir_path", "default_run_dir", "find_model", "format_record", "read_metrics",
           "read_run_info", "run_info", "trim_metrics"]
