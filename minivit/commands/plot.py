"""``minivit plot RUN_DIR``: curves.png (loss, accuracy, lr per epoch) and confusion.png.

The confusion matrix comes from RUN_DIR/eval-val.json (written by ``minivit train`` after each
evaluation, and by ``minivit eval RUN_DIR --split val``), else RUN_DIR/eval-test.json.
"""

from __future__ import annotations

from pathlib import Path

from minivit.errors import UserError
from minivit.io.files import read_json
from minivit.io.rundir import read_metrics


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by minivit train")
    parser.add_argument("--out", metavar="DIR", help="where to write the PNGs (default RUN_DIR)")


def run(args) -> int:
    from minivit.plots import has_accuracy, plot_confusion, plot_curves
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    out = Path(args.out) if args.out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    try:
        records = read_metrics(run_dir)
        plot_curves(records, out / "curves.png", title=run_dir.name)
        print(f"wrote {out / 'curves.png'}")
        for split in ("val", "test"):
            path = run_dir / f"eval-{split}.json"
            if path.is_file():
                report = read_json(path)
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
