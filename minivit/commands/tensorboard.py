"""``minivit tensorboard RUN... [--out DIR]``: training runs' metrics as TensorBoard files.

    minivit tensorboard runs/*                  # each run: RUN/tensorboard/events.out.tfevents.*
    tensorboard --logdir runs/                  # every run, side by side
    minivit tensorboard runs/a runs/b --out tb  # tb/a/, tb/b/: tensorboard --logdir tb

The epoch records (metrics.jsonl: losses, accuracies, learning rate, speed) and, where the run
kept them, the step records (steps.jsonl) are written against the optimizer step, with the
run's elapsed time as wall time (minivit/io/tensorboard.py).  Needs the ``tensorboard`` extra
(tensorboardX); TensorBoard itself is only needed to look at the files.  Converting a run
again replaces its event file.
"""

from __future__ import annotations

from pathlib import Path

from minivit.errors import UserError
from minivit.io.tensorboard import write_events

RUN_SUBDIR = "tensorboard"


def add_arguments(parser):
    parser.add_argument("runs", metavar="RUN", nargs="+", help="run directories of minivit train")
    parser.add_argument("--out", metavar="DIR",
                        help="write each run's events to DIR/<run name> (default: "
                             f"RUN/{RUN_SUBDIR})")


def destinations(runs, out) -> list[tuple[Path, Path]]:
    """[(run directory, its event folder)]; UserError for two runs of one name under --out."""
    runs = [Path(r) for r in runs]
    for run in runs:
        if not run.is_dir():
            raise FileNotFoundError(f"run directory {run} not found")
    if out is None:
        return [(run, run / RUN_SUBDIR) for run in runs]
    names = [run.resolve().name for run in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"several runs are named {twice[0]!r}: with --out each run's events "
                        "go to DIR/<run name>; convert them with separate --out folders")
    return [(run, Path(out) / name) for run, name in zip(runs, names)]


def run(args) -> int:
    for run_dir, dest in destinations(args.runs, args.out):
        n = write_events(run_dir, dest)
        print(f"wrote {dest} ({n} scalars)")
    logdir = args.out or (args.runs[0] if len(args.runs) == 1 else Path(args.runs[0]).parent)
    print(f"view them with: tensorboard --logdir {logdir}")
    return 0
