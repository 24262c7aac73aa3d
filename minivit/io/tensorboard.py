"""A training run's JSONL logs as TensorBoard event files (tensorboardX: NumPy and protobuf).

    write_events(run_dir, out_dir) -> number of scalars     out_dir/events.out.tfevents.*
    read_scalars(event_file) -> {tag: [(step, value), ...]}

What goes in, against the optimizer step (so that epoch and step curves share an axis):

    metrics.jsonl (one record per epoch)   {train,val,test}_loss -> loss/{train,val,test}
                                           {train,val,test}_acc  -> accuracy/{...}
                                           lr -> lr/epoch, images_per_sec -> speed/images_per_sec
                                           epoch -> epoch; any other number k -> metrics/k
    steps.jsonl (one record per step)      loss -> loss/train_step, lr -> lr/step

Each value carries the run's elapsed seconds as its wall time, so TensorBoard's "relative" axis
is the training time.  The folder is rewritten as a whole: earlier event files in it are
replaced, so converting a run again does not draw its curves twice.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

from minivit.errors import UserError
from minivit.install import install_hint
from minivit.io.files import refuse_symlink
from minivit.io.rundir import StepsLog, read_metrics

EPOCH_TAGS = {f"{split}_{kind}": f"{group}/{split}" for split in ("train", "val", "test")
              for kind, group in (("loss", "loss"), ("acc", "accuracy"))}
EPOCH_TAGS.update({"lr": "lr/epoch", "images_per_sec": "speed/images_per_sec",
                   "epoch": "epoch"})
SKIPPED = ("step", "elapsed")          # the axis and the wall time, not curves
STEP_TAGS = {"loss": "loss/train_step", "lr": "lr/step"}
EVENT_PREFIX = "events.out.tfevents."


def _tensorboardx():
    try:
        return importlib.import_module("tensorboardX")
    except ImportError as e:
        raise UserError(f"TensorBoard event files need tensorboardX ({e}): "
                        f"{install_hint('tensorboard')}") from None


def _number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def scalars(run_dir) -> list[tuple[str, float, int, float | None]]:
    """[(tag, value, step, wall time or None), ...] of a run's metrics.jsonl and steps.jsonl."""
    out = []
    for rec in read_metrics(run_dir):
        step, wall = rec.get("step", rec["epoch"]), rec.get("elapsed")
        for key, value in rec.items():
            if key not in SKIPPED and _number(value):
                tag = EPOCH_TAGS.get(key, f"metrics/{key}")
                out.append((tag, float(value), int(step), wall if _number(wall) else None))
    for rec in StepsLog.read(run_dir):
        for key, tag in STEP_TAGS.items():
            if _number(rec.get(key)):
                out.append((tag, float(rec[key]), int(rec["step"]), None))
    return out


def write_events(run_dir, out_dir) -> int:
    """Write the run's scalars as one event file in ``out_dir`` (made if missing; its earlier
    event files are replaced).  Returns the number of scalars written."""
    values = scalars(run_dir)
    out_dir = Path(out_dir)
    refuse_symlink(out_dir)                     # never written through a link elsewhere
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".events-"))
    try:
        writer = _tensorboardx().SummaryWriter(logdir=str(tmp), flush_secs=3600)
        for tag, value, step, wall in values:
            writer.add_scalar(tag, value, global_step=step, walltime=wall)
        writer.close()
        for old in out_dir.glob(EVENT_PREFIX + "*"):
            old.unlink()
        for new in tmp.iterdir():
            os.replace(new, out_dir / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(values)


def read_scalars(path) -> dict:
    """{tag: [(step, value), ...]} of an event file (TFRecord framing: length, its CRC, the
    Event protobuf, its CRC; the CRCs are not checked)."""
    event_pb2 = importlib.import_module("tensorboardX.proto.event_pb2")
    data, pos, out = Path(path).read_bytes(), 0, {}
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


__all__ = ["EPOCH_TAGS", "EVENT_PREFIX", "STEP_TAGS", "read_scalars", "scalars",
           "write_events"]
