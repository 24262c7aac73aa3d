"""``minivit plot RUN_DIR``: curves.png (loss, accuracy, lr per epoch) and confusion.png.

A run of fewer than PER_STEP_EPOCHS epochs (or one stopped before its first) gets the loss and
learning rate of every step instead (RUN_DIR/steps.jsonl).

The confusion matrix comes from RUN_DIR/eval-val.json (written by ``minivit train`` after each
evaluation, and by ``minivit eval RUN_DIR --split val``), else RUN_DIR/eval-test.json.
"""

from __future__ import annotations

from pathlib import Path

from minivit.commands.outputs import check_output_dir
from minivit.console import plural
from minivit.errors import UserError
from minivit.io.rundir import CONFIG_FILE, METRICS_FILE, StepsLog, read_eval_report, read_metrics

PER_STEP_EPOCHS = 3          # runs with fewer epoch records are drawn step by step


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by minivit train")
    parser.add_argument("--out", metavar="DIR", help="where to write the PNGs (default RUN_DIR)")


def _records(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(epoch records, step records) of a run directory; one-line errors when it is not one
    or has nothing to draw yet."""
    has_metrics = (run_dir / METRICS_FILE).is_file()
    if not has_metrics and not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run directory ({CONFIG_FILE} "
                                f"and {METRICS_FILE} not found)")
    records = read_metrics(run_dir) if has_metrics else []
    steps = StepsLog.read(run_dir) if len(records) < PER_STEP_EPOCHS else []
    if not records and not steps:
        raise UserError(f"no step recorded yet in {run_dir}")
    return records, steps


def run(args) -> int:
    from minivit.analysis.plots import has_accuracy, plot_confusion, plot_curves, plot_steps
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    records, steps = _records(run_dir)
    out = check_output_dir(Path(args.out) if args.out else run_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if steps:
            plot_steps(steps, records, out / "curves.png", title=run_dir.name)
            print(f"wrote {out / 'curves.png'} (loss and lr per step: "
                  f"{plural(len(records), 'epoch')} recorded)")
        else:
            plot_curves(records, out / "curves.png", title=run_dir.name)
            print(f"wrote {out / 'curves.png'}")
        for split in ("val", "test"):
            path = run_dir / f"eval-{split}.json"
            if path.is_file():
                report = read_eval_report(path)
                plot_confusion(report["confusion"], report["label_names"], out / "confusion.png",
                               title=f"{run_dir.name}: {split}, accuracy "
                                     f"{100 * report['accuracy']:.2f}%")
                print(f"wrote {out / 'confusion.png'} ({split} split)")
                break
        else:
            if has_accuracy(records):
                print(f"no confusion matrix in {run_dir} "
                      f"(run minivit eval {run_dir} --split val)")
            else:                                   # pre-training: no classes to confuse
                print(f"no confusion matrix: {run_dir} is a pre-training run (no classes)")
    except ImportError as e:
        raise UserError(str(e)) from None
    return 0
