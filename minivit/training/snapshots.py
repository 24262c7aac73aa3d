"""Weight snapshots of a training run: ``minivit train --snapshots N`` keeps the model after N
epochs spread evenly over the run, in RUN_DIR/snapshots/epoch-XXXX.safetensors (the model file
format of model.safetensors), so that ``minivit explain`` can replay how the model learned.

    snapshot_epochs(n, epochs)     the epochs after which a snapshot is kept
    snapshot_path(run_dir, epoch)  its file (the folder is made when asked)
    list_snapshots(run_dir)        [(epoch, path)], in epoch order
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from minivit.io.files import refuse_symlink

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"^epoch-(\d+)\.safetensors$")


def snapshot_epochs(n: int, epochs: int) -> set:
    """The epochs (1-based) whose end keeps a snapshot: n of the ``epochs``, evenly spread and
    the last one among them (every epoch when n >= epochs; none when n is 0)."""
    if n <= 0 or epochs <= 0:
        return set()
    return {math.ceil(k * epochs / n) for k in range(1, min(n, epochs) + 1)} if n < epochs \
        else set(range(1, epochs + 1))


def snapshot_path(run_dir, epoch: int, create: bool = False) -> Path:
    folder = Path(run_dir) / SNAPSHOT_DIR
    if create:
        refuse_symlink(folder)                  # never written through a link elsewhere
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f"epoch-{epoch:04d}.safetensors"


def list_snapshots(run_dir) -> list:
    """[(epoch, path)] of the snapshots in ``run_dir`` (none: [])."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


__all__ = ["SNAPSHOT_DIR", "list_snapshots", "snapshot_epochs", "snapshot_path"]
